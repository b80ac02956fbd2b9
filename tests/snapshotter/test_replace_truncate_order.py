"""`cdc bootstrap --replace` (and bootstrap.mode when_needed's re-bootstrap): where the TRUNCATE goes.

A chunk is emitted once the stream has passed its view; the stream's changes between the view and
that moment went out first, and the chunk drops the rows of the keys they changed (the stream's
value is newer). The TRUNCATE that empties the copies must therefore go out before the first
chunk's view, not with the first chunk: else it wipes those changes, and their keys, dropped from
the chunk, are lost. (A CI-like run of tests/integration/test_bootstrap_replace.py lost one key in
about one run in six this way.)
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


class _Reader:
    """Key 1 is updated to ver 2 at LSN 2500: a view at 2000 holds ver 1, one at 3000 ver 2."""

    calls = 0

    def read_chunk(self, ref: TableRef, after: object, limit: int) -> PgChunk:
        _Reader.calls += 1
        lsn, rows = (2000, ((1, 1), (2, 1))) if _Reader.calls == 1 else (3000, ((1, 2), (2, 1)))
        return PgChunk(
            SCHEMA, rows, (2,), RestartPoint(lsn_position(lsn, 0, 0)), True, 0.0, ViewXids(95, frozenset())
        )

    def read_keys(self, ref: TableRef, keys: object) -> PgChunk:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _replayed(records: list[SourceRecord]) -> dict[object, tuple[object, ...]]:
    state: dict[object, tuple[object, ...]] = {}
    for r in records:
        if isinstance(r, ChangeEvent):
            if r.op is Op.TRUNCATE:
                state.clear()
            elif r.op is Op.DELETE:
                state.pop(r.key, None)
            else:
                assert r.after is not None
                state[r.key] = r.after
    return state


def test_the_truncate_goes_out_before_the_first_chunks_view() -> None:
    update = ChangeEvent(Op.UPDATE, SCHEMA, (1,), None, (1, 2), lsn_position(2500, 0, 90), 0, "0-0-90")
    _Reader.calls = 0
    stream = ScriptedStream(
        [
            [],
            [],
            [update, TransactionEnd("0-0-90", update.position, 1, 0)],
            [SourceProgress(RestartPoint(lsn_position(3000, 0, 0)), 0)],
        ]
    )
    state = SnapshotState.parse(None).queued("req", [REF], replace=True)
    pump = MergingPump(stream, ChunkFeed(_Reader), state, RestartPoint(lsn_position(1000, 0, 0)))
    out: list[SourceRecord] = []
    deadline = time.monotonic() + 5
    while not any(isinstance(r, SnapshotProgress) and r.rows for r in out) and time.monotonic() < deadline:
        got = pump.get(0.05)
        assert isinstance(got, list | None)
        out.extend(got or [])
    pump.stop()
    ops = [r.op for r in out if isinstance(r, ChangeEvent)]
    assert ops.count(Op.TRUNCATE) == 1
    assert _replayed(out) == {(1,): (1, 2), (2,): (2, 1)}
    assert pump.state.current is None or not pump.state.current.replace  # not emitted again on resume
