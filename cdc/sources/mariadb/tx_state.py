"""The stream decoder's state between transactions, and the boundaries it labels (split from
stream_decoder.py)."""

from __future__ import annotations

from cdc.core.events import SourceProgress
from cdc.core.positions import Gtid, Position, ReadContext, RestartPoint
from cdc.sources.mariadb.savepoints import HeldGroup, Savepoints

__all__ = ["TxState", "boundary_label", "progress"]


class TxState:
    """The Python path's state between its calls (its locals while it runs): the transaction going
    on, if any, and what the next one needs."""

    __slots__ = (
        "file_pos",
        "gtid",
        "guarded",
        "held",
        "last",
        "resuming",
        "row",
        "savepoints",
        "skip",
        "standalone",
        "ts_ms",
        "tx_id",
        "tx_pos",
    )

    def __init__(self, gtid: Gtid | None, resuming: bool) -> None:
        self.gtid = gtid
        self.resuming = resuming
        self.tx_pos: Position | None = None  # None: between transactions
        self.file_pos: Position | None = None  # a Position in the current file (parsed once)
        self.tx_id = ""
        self.row = 0
        self.ts_ms = 0
        self.standalone = False
        self.guarded = False
        self.held: HeldGroup | None = None
        self.savepoints: Savepoints | None = None
        self.last: Position | None = None
        self.skip = 0


def progress(tx_pos: Position, next_offset: int, ts_ms: int, context: ReadContext | None) -> SourceProgress:
    return SourceProgress(RestartPoint(tx_pos.in_same_file(tx_pos.gtid, next_offset, 0, context)), ts_ms)


def boundary_label(resume: RestartPoint | None) -> Gtid | None:
    """The GTID that labels boundaries (heartbeats) before the stream's first GTID event.

    A restart point after snapshot rows names an anchor, whose GTID marks "no transaction"; a
    boundary labelled with it would pass for an anchor itself (read one byte too far, its rows
    numbered as the anchor's). Such boundaries get the "no GTID known" label instead.
    """
    if resume is None:
        return None
    gtid = resume.transaction.gtid
    return Gtid(gtid.domain, 0, 0) if resume.transaction.is_snapshot_anchor else gtid
