"""The GTID state as a binlog stream goes by, and where a resumed stream picks up again.

Every position the decoder emits carries, in memory, the GTID state at its transaction's start
(``ReadContext``), so that the restart points built from it say how another server holding the same
transactions (a promoted replica) can be asked to resume: by that state. The tracker is seeded with
the server's state where reading starts (``BINLOG_GTID_POS(file, offset)``, or the GTID state the
dump started from) and advanced on each GTID event.

A resumed stream skips the rows of a partly handled transaction. On the server that wrote the
restart point, that transaction is the first one sent, at the restart point's binlog coordinates.
On another server (a failover), coordinates mean nothing: the transaction is found by its GTID
alone, and transactions of other replication domains may come before it.
"""

from __future__ import annotations

from cdc.core.errors import TerminalError
from cdc.core.positions import Gtid, GtidState, Position, ReadContext, RestartPoint

__all__ = ["GtidTracker", "ResumeCheck"]


class GtidTracker:
    """The GTID state of the binlog at the event being decoded (None: unknown, no contexts)."""

    def __init__(self, server_id: int | None, state: GtidState | None) -> None:
        self._server_id = server_id
        self._state = state
        self._here: ReadContext | None = (
            ReadContext(server_id, state) if server_id is not None and state is not None else None
        )

    @property
    def here(self) -> ReadContext | None:
        """The context of the place between the last transaction and the next one."""
        return self._here

    def tracking(self) -> tuple[int, GtidState, ReadContext] | None:
        """(server_id, state, here) for the compiled event loop (None: no contexts)."""
        if self._server_id is None or self._state is None or self._here is None:
            return None
        return self._server_id, self._state, self._here

    def adopt(self, tracking: tuple[int, GtidState, ReadContext] | None) -> None:
        """The tracking after the transactions the compiled event loop took (as ``begin`` leaves it)."""
        if tracking is not None:
            _, self._state, self._here = tracking

    def begin(self, gtid: Gtid) -> ReadContext | None:
        """A transaction starts: its context (the state before it); the state then includes it."""
        before = self._here
        state = self._state
        if state is None or self._server_id is None:
            return None
        gtids = state.gtids
        # once per transaction: the frozen dataclasses are built without their checked __init__
        new, set_ = object.__new__, object.__setattr__
        if len(gtids) == 1 and gtids[0].domain == gtid.domain:
            after = new(GtidState)  # the common case, one domain: nothing to sort or check
            set_(after, "gtids", (gtid,))
        else:
            after = state.advanced(gtid)
        self._state = after
        here = new(ReadContext)
        set_(here, "server_id", self._server_id)
        set_(here, "gtid_state", after)
        self._here = here
        return before


class ResumeCheck:
    """Which rows of the first transactions of a resumed stream were already handled."""

    def __init__(self, resume: RestartPoint | None, *, by_gtid: bool) -> None:
        self._resume = resume
        self._by_gtid = by_gtid

    @property
    def pending(self) -> bool:
        return self._resume is not None

    def rows_to_skip(self, gtid: Gtid, tx_pos: Position) -> int:
        """Called at each transaction's start while pending: how many of its rows to drop."""
        resume = self._resume
        if resume is None:
            return 0
        expected = resume.transaction
        if resume.is_boundary:
            # Only a place in the binlog (a TransactionEnd's successor, a SourceProgress, an
            # anchor): the next transaction starts at or after it, whatever its GTID.
            self._resume = None
            return 0
        if self._by_gtid:
            if gtid.domain != expected.gtid.domain:
                return 0  # another domain's transaction, after the resumed GTID state: new
            if gtid != expected.gtid:
                raise TerminalError(
                    f"resume by GTID expected transaction {expected.gtid} first in domain "
                    f"{gtid.domain}, the server sent {gtid} at {tx_pos.file}:{tx_pos.offset}"
                )
        elif expected.gtid != gtid or expected.offset != tx_pos.offset:
            raise TerminalError(
                f"resume expected transaction {expected.gtid} at {expected.file}:{expected.offset}, "
                f"the server sent {gtid} at {tx_pos.file}:{tx_pos.offset}"
            )
        self._resume = None
        return resume.skip_rows
