"""A PostgreSQL chunk merged into the stream (snapshotter/pg_reader.py, merge.py), without services.

A transaction writes its commit record (its place in the stream) a little before it turns visible to
new snapshots. A chunk view taken in between misses it although it committed before the chunk's
high watermark: the row of the key it changed must be dropped from the chunk (the stream's newer
value wins), not sent after that change as if it were newer.
"""

from __future__ import annotations

import time

from cdc.core.events import ChangeEvent, Op, SnapshotProgress, SourceProgress, SourceRecord, TransactionEnd
from cdc.core.positions import RestartPoint, lsn_position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from snapshotter.chunk_feed import ChunkFeed
from snapshotter.merge import MergingPump
from snapshotter.pg_reader import PgChunk, ViewXids
from snapshotter.state import SnapshotState
from tests.support.scripted_stream import ScriptedStream

REF = TableRef("public", "t")
SCHEMA = TableSchema.build(
    REF,
    (
        Column("id", "integer", ArrowType(ArrowKind.INT32), False),
        Column("ver", "integer", ArrowType(ArrowKind.INT32)),
    ),
    ("id",),
)


def test_view_xids_in_progress_and_after_xmax_are_unseen() -> None:
    view = ViewXids.parse("100:105:100,102")
    assert [x for x in range(98, 108) if view.sees(x)] == [98, 99, 101, 103, 104]
    wrapped = ViewXids.parse(f"{(1 << 32) + 5}:{(1 << 32) + 10}:")  # epoch 1: 32-bit xids 5..9 are old
    assert wrapped.sees(9) and not wrapped.sees(10) and wrapped.sees((1 << 32) - 3)


class _Reader:
    def read_chunk(self, ref: TableRef, after: object, limit: int) -> PgChunk:
        rows = ((1, 1), (2, 1))  # key 1 as before transaction 77, which the view does not see
        at = RestartPoint(lsn_position(2000, 0, 0))
        return PgChunk(SCHEMA, rows, (2,), at, True, 0.0, ViewXids(80, frozenset({77})))

    def read_keys(self, ref: TableRef, keys: object) -> PgChunk:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_a_row_changed_by_a_transaction_the_view_missed_is_dropped() -> None:
    update = ChangeEvent(Op.UPDATE, SCHEMA, (1,), None, (1, 2), lsn_position(1500, 0, 77), 0, "0-0-77")
    stream = ScriptedStream(
        [
            [],
            [update, TransactionEnd("0-0-77", update.position, 1, 0)],
            [SourceProgress(RestartPoint(lsn_position(3000, 0, 0)), 0)],
        ]
    )
    state = SnapshotState.parse(None).queued("req", [REF])
    pump = MergingPump(stream, ChunkFeed(_Reader), state, RestartPoint(lsn_position(1000, 0, 0)))
    out: list[SourceRecord] = []
    deadline = time.monotonic() + 5
    while not any(isinstance(r, SnapshotProgress) for r in out) and time.monotonic() < deadline:
        got = pump.get(0.05)
        assert isinstance(got, list | None)
        out.extend(got or [])
    pump.stop()
    reads = [r for r in out if isinstance(r, ChangeEvent) and r.op is Op.READ]
    assert [r.after for r in reads] == [(2, 1)]  # (1, 1) would undo the update to ver 2
    # placed after the update, before anything that committed after the watermark
    assert all(update.position < r.position < lsn_position(3000, 0, 0) for r in reads)
