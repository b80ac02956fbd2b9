"""A snapshot chunk whose columns, chunk-log form and Arrow arrays the reader's thread made ahead
(``ReadBatch.prepared``, snapshotter/chunk_columns.py) lands exactly as the same rows handed as
events, in every sink, and the chunk log gives it back exactly (issue 9, bootstrap speed)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from sinks.contract import AppliedState, SinkBatch
from sinks.read_batch import ReadBatch
from snapshotter.chunk_columns import prepare_columns
from snapshotter.chunk_log import ChunkLog, LoggedChunk
from tests.sinks.conftest import SINK_PARAMS, make_sink_under_test
from tests.sinks.test_speedboot_read_batch import HELD, ROWS, WIDE, _chunk, _row, _streamed


def _prepared(rows: int) -> ReadBatch:
    chunk = _chunk(tuple(_row(i) for i in range(rows)))
    made = prepare_columns(chunk.schema, chunk.rows)
    return chunk.prepared(made.columns, made.packed, made.arrays)


def test_prepared_arrays_are_the_columns_as_the_sinks_build_them() -> None:
    chunk = _prepared(20)
    for i, column in enumerate(WIDE.columns):
        want = pa.array(chunk.columns()[i][5:], column.arrow_type.to_pyarrow())
        got = chunk.source_array(i, 5)
        assert got is not None and got.equals(want), column.name


@pytest.mark.parametrize("kind", SINK_PARAMS)
def test_prepared_chunk_lands_like_its_events(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    chunk = _prepared(ROWS)
    events = tuple(chunk)
    state = AppliedState(chunk.position)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = make_sink_under_test(kind, request, tmp_path / "a")
    b = make_sink_under_test(kind, request, tmp_path / "b")
    try:
        for sut in (a, b):
            sut.sink.open()
            sut.sink.apply(_streamed())
        held = events[: HELD + 1]  # copy A holds the chunk's first rows already (a resumed chunk)
        a.sink.apply(SinkBatch(held, AppliedState(held[-1].position)))
        a.sink.apply(SinkBatch(chunk, state))
        a.sink.flush()
        b.sink.apply(SinkBatch(events, state))
        b.sink.flush()
        expected = {(i,): _row(i) for i in range(ROWS)}
        for sut in (a, b):
            got = sut.current_rows(WIDE.ref)
            assert {k: tuple(r[c] for c in WIDE.column_names) for k, r in got.items()} == expected
        if a.history is not None and b.history is not None:
            assert a.history(WIDE.ref) == b.history(WIDE.ref)
    finally:
        a.cleanup()
        b.cleanup()


def test_chunk_log_keeps_a_prepared_read_batch_exactly(tmp_path: Path) -> None:
    chunk = _prepared(50)
    log = ChunkLog(tmp_path, "bootspeed")
    log.write(LoggedChunk(chunk, "state-text"))
    back = log.read()
    assert back is not None and back.records == tuple(chunk)
