"""Embedded mode across a failover: the GTID state of each position a sink may stand at.

A sink stores only the Position it has applied (its text form, which carries no GTID state). After
a failover to a promoted replica, that position's binlog coordinates mean nothing on the new server;
the daemon must resume from the GTID state at the start of the position's transaction, and each
sink must skip, by GTID, what it already holds (the sinks are not all at the same place after a
crash: the SQL sink commits each batch, Iceberg every N rows or seconds).

``embedded-gtids.json`` in the state directory maps each batch's last position (the only positions
a sink ever stores) to its ReadContext (the server it was read from, the GTID state at its
transaction's start), one JSON line each. An entry is appended (and fsynced) before the batch is
handed to any sink, so that whatever a sink holds after a crash has its entry; a torn last line is
a batch no sink got. Entries below every sink's durable position (asked of each sink after a flush
and every ``MARK_EVERY_S`` under load) are dropped by rewriting the file, so it stays small.

Each sink is wrapped (``JournaledSink``): ``applied()`` returns the position with its context, from
which the reader resumes by GTID on another server (cdc/sources/mariadb/failover.py), in the next
era; ``apply`` then drops the records of that era which the sink already holds (their GTID is in
the sink's state, or they are rows of its partly applied transaction up to its row). Within one era
the sink's own skip by position does it, as before. A sink whose tables may hold more than its
applied() position (an Iceberg history commits each table before its progress table) says where
each table stands (``table_positions()``), and each table's records are judged by that.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdc.core.errors import PositionFormatError, TerminalError
from cdc.core.events import ChangeEvent, SchemaChange
from cdc.core.positions import GtidState, Position, ReadContext
from cdc.core.schemas import TableRef
from cdc.daemon.embedded_resume import write_atomically
from sinks.contract import AppliedState, Sink, SinkBatch, WriterIdentity

__all__ = ["JOURNAL_FILE", "GtidJournal", "JournaledSink", "journaled"]

log = logging.getLogger("cdc.run")

JOURNAL_FILE = "embedded-gtids.json"
MARK_EVERY_S = 30.0  # under load the sinks are not flushed by the daemon: ask where they stand


class GtidJournal:
    """The ReadContext of each position a sink may stand at (see the module docstring)."""

    def __init__(self, state_dir: Path, server_id_of: Callable[[], int]) -> None:
        """``server_id_of``: the source's ``@@server_id`` now (asked only when a sink's position has
        no entry, to tell a harmless gap from a failover that cannot be resumed)."""
        self.path = state_dir / JOURNAL_FILE
        self._server_id_of = server_id_of
        self._entries: dict[Position, ReadContext] | None = None
        self._marks: dict[str, Position] = {}  # per sink: a position it durably holds
        self._last: Position | None = None
        self._server_id: int | None = None
        self._compacted = False  # entries were dropped: the file is rewritten at the next record

    def server_id(self) -> int:
        """The source's ``@@server_id`` (asked once per daemon attempt)."""
        if self._server_id is None:
            self._server_id = self._server_id_of()
        return self._server_id

    def _load(self) -> dict[Position, ReadContext]:
        if self._entries is None:
            entries: dict[Position, ReadContext] = {}
            try:
                lines = self.path.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            for number, line in enumerate(lines, 1):
                try:
                    raw: Any = json.loads(line)
                    position, server_id, gtids = raw
                    entries[Position.parse(position)] = ReadContext(int(server_id), GtidState.parse(gtids))
                except (ValueError, TypeError, PositionFormatError) as exc:
                    if number < len(lines):  # a torn last line is a batch no sink got
                        log.warning("%s line %d ignored (%s)", self.path, number, exc)
            self._entries = entries
            self._compacted = False
        return self._entries

    def context_of(self, position: Position) -> ReadContext | None:
        return self._load().get(position)

    def knows_era_before(self, era: int) -> bool:
        return any(p.era < era for p in self._load())

    def check_unknown(self, sink: str, position: Position) -> None:
        """``sink`` stands at ``position``, of which no GTID state was recorded: fine on the server
        it was read from; on another (an entry of its era names another server), a terminal error."""
        era_servers = {c.server_id for p, c in self._load().items() if p.era == position.era}
        if not era_servers:
            return  # nothing known of that era (a state directory from before GTID resume)
        now = self.server_id()
        if now not in era_servers:
            raise TerminalError(
                f"sink {sink} stands at {position.to_string()}, read on server_id "
                f"{', '.join(map(str, sorted(era_servers)))}; the source is now server_id {now}, and no "
                f"GTID state was recorded for that position ({self.path}), so it cannot be resumed "
                f"there. Bootstrap the sink again (`cdc bootstrap --sink`), or point source back at "
                "the server it was read from"
            )

    def check_later_eras(self, sink: str, position: Position) -> None:
        """``sink`` stands at ``position`` of another server than the source's now. The reader resumes
        it in the era after ``position``'s; if other sinks already hold positions of that era read on
        yet another server (a second failover while this sink lagged), the two would not compare."""
        now = self.server_id()
        later = {c.server_id for p, c in self._load().items() if p.era > position.era}
        if later - {now}:
            raise TerminalError(
                f"sink {sink} stands at {position.to_string()} (era {position.era}); since then the "
                f"pipeline read era {position.era + 1} from server_id "
                f"{', '.join(map(str, sorted(later)))}, and the source is now server_id {now}: a second "
                "failover while a sink lags behind the first is not supported. Point source at the "
                "server of the later era until the sink has caught up, or bootstrap the sink again "
                "(`cdc bootstrap --sink`)"
            )

    def mark(self, sink: str, position: Position) -> None:
        """``sink`` durably holds ``position``: entries below every sink's mark are not needed."""
        self._marks[sink] = position  # applied at the next record: every sink has told by then

    def record(self, position: Position) -> None:
        """Before a batch ending at ``position`` is handed to the sinks."""
        context = position.context
        if context is None or position == self._last:
            return
        entries = self._load()
        entries[position] = context
        if self._marks:
            lowest = min(self._marks.values())
            for old in [p for p in entries if p < lowest]:
                del entries[old]
                self._compacted = True
        if self._compacted:
            text = "".join(_line(p, c) for p, c in sorted(entries.items()))
            write_atomically(self.path, text)
            self._compacted = False
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as out:
                out.write(_line(position, context))
                out.flush()
                os.fsync(out.fileno())
        self._last = position


def _line(position: Position, context: ReadContext) -> str:
    return json.dumps([position.to_string(), context.server_id, str(context.gtid_state)]) + "\n"


Holds = tuple[Position, ReadContext]  # a position a sink (or one of its tables) holds, and its context


def _held(holds: Holds, record: ChangeEvent | SchemaChange) -> bool:
    """``record`` (read in a later era than the held position) is already in the sink."""
    return _position_held(holds, record.position)


def _position_held(holds: Holds, at: Position) -> bool:
    """``at`` (a record's position, or a batch's end, read in a later era than the held position)
    lies inside what the sink holds."""
    position, context = holds
    if at.era <= position.era or at.is_snapshot_anchor:
        return False
    if at.gtid == position.gtid:
        return at.row <= position.row
    return context.gtid_state.covers(at.gtid)


def _ahead_of(hold: Holds, position: Position) -> bool:
    """The table hold still holds more than a sink standing at ``position``."""
    return hold[0] > position or _position_held(hold, position)


def _table(record: ChangeEvent | SchemaChange) -> TableRef:
    return record.schema.ref if isinstance(record, ChangeEvent) else record.table


class JournaledSink:
    """A sink whose applied position carries its GTID state, and which skips by GTID what it holds
    when records come from another server (see the module docstring)."""

    def __init__(self, inner: Sink, journal: GtidJournal) -> None:
        self._inner = inner
        self._journal = journal
        self.name = inner.name
        self._holds: Holds | None = None
        # tables committed past applied() (an Iceberg history's table commits before its progress)
        self._table_holds: dict[TableRef, Holds] = {}
        self._applied: Position | None = None
        self._next_mark = time.monotonic() + MARK_EVERY_S

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def open(self) -> None:
        self._inner.open()

    def claim_writer(self, writer: WriterIdentity) -> None:
        self._inner.claim_writer(writer)

    def applied(self) -> AppliedState | None:
        state = self._inner.applied()
        self._holds = None
        self._table_holds = {}
        if state is None:
            return None
        position = state.position
        context = self._journal.context_of(position)
        if context is None:
            self._journal.mark(self.name, position)
            self._journal.check_unknown(self.name, position)
            return state
        position = position.with_context(context)
        self._holds = (position, context)
        if context.server_id != self._journal.server_id():
            self._journal.check_later_eras(self.name, position)
        self._table_holds = self._tables_ahead(position, context)
        self._mark(position)
        return AppliedState(position, state.offsets)

    def _tables_ahead(self, position: Position, context: ReadContext) -> dict[TableRef, Holds]:
        """The sink's tables that hold more than ``position`` and whose records come again from a
        later era. Two ways: committed past it in its era, when the source is now another server
        (a crash between a table's commit and the sink's progress, then a failover); or committed
        in an earlier era at a point the sink, resumed in the later one, has not yet passed (the
        same, then a restart on the new server before the sink caught up with that table)."""
        tables = getattr(self._inner, "table_positions", None)
        moved = context.server_id != self._journal.server_id()
        if not callable(tables) or not (moved or self._journal.knows_era_before(position.era)):
            return {}  # asking costs a catalog read per table; nothing of an earlier era is known
        out: dict[TableRef, Holds] = {}
        for ref, committed in tables().items():
            known = self._journal.context_of(committed)
            if known is None:
                continue
            hold = (committed, known)
            if (moved and committed > position) or _position_held(hold, position):
                out[ref] = hold
        return out

    def _mark(self, position: Position) -> None:
        """Tell the journal what the sink needs kept: its position, and each table hold it has
        not passed yet (the next attempt reads that table's GTID state from the journal)."""
        passed = [ref for ref, hold in self._table_holds.items() if not _ahead_of(hold, position)]
        for ref in passed:
            del self._table_holds[ref]
        self._journal.mark(self.name, min([position, *(h[0] for h in self._table_holds.values())]))

    def apply(self, batch: SinkBatch) -> None:
        self._journal.record(batch.state.position)
        holds, tables = self._holds, self._table_holds
        if holds is not None:
            records = tuple(r for r in batch.records if not _held(tables.get(_table(r), holds), r))
            if len(records) != len(batch.records):
                log.info(
                    "sink %s: %d changes it already holds (by GTID) skipped",
                    self.name,
                    len(batch.records) - len(records),
                )
            if not records and _position_held(holds, batch.state.position):
                # Everything in it is held, and so is its end: the sink is not told. Its position
                # would move into this era at a point below what it holds, and a restart on this
                # server resumes by coordinates there, without the skip by GTID: what it held
                # would come again. It stays at its old era's position until a batch passes it.
                return
            if len(records) != len(batch.records):
                batch = SinkBatch(records, batch.state)
        self._inner.apply(batch)
        self._applied = batch.state.position
        if time.monotonic() >= self._next_mark:
            self._next_mark = time.monotonic() + MARK_EVERY_S
            durable = self._inner.applied()
            if durable is not None:
                self._mark(durable.position)

    def flush(self) -> None:
        self._inner.flush()
        if self._applied is not None:
            self._mark(self._applied)

    def close(self) -> None:
        self._inner.close()


def journaled(
    open_sinks: Callable[[], list[Sink]], state_dir: Path, server_id_of: Callable[[], int]
) -> Callable[[], list[Sink]]:
    """``open_sinks`` with every sink wrapped, all sharing one journal per daemon attempt."""

    def open_journaled() -> list[Sink]:
        journal = GtidJournal(state_dir, server_id_of)
        return [JournaledSink(sink, journal) for sink in open_sinks()]

    return open_journaled
