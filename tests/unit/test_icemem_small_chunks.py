"""icemem: small chunks (a Kafka poll's columns, ~2,500 changes) are combined as they are buffered,
once they make MIN_CHUNK_ROWS rows, so a commit hands the buffer to pyiceberg without copying it
(peak RSS of `cdc sink` into Iceberg: benchmarks/iceberg_memory_ab.py, see table_writer.add_chunk);
rows stay in their order, and a schema change in between leaves the chunks as they are."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from cdc.core.events import Op
from sinks.iceberg.pyiceberg_partitions import MIN_CHUNK_ROWS
from sinks.iceberg.table_writer import TableWriter
from tests.unit.test_iceberg_sink import batch, config, event, opened, schema

_SMALL = 2_500


def test_small_chunks_are_combined_as_they_come_and_keep_their_order(tmp_path: Path) -> None:
    s = schema()
    sink = opened(config(tmp_path, commit_rows=1_000_000))
    for k in range(5):
        rows = range(k * _SMALL, (k + 1) * _SMALL)
        sink.apply(batch(*(event(Op.CREATE, s, 1 + i // 1000, (i, f"n{i}"), row=i) for i in rows)))
        writer = sink._writers[s.ref]
        assert isinstance(writer, TableWriter)
        writer.seal()  # a chunk of _SMALL rows, as a Kafka poll's columns are
    assert 4 * _SMALL >= MIN_CHUNK_ROWS > 3 * _SMALL
    assert [chunk.num_rows for chunk in writer.chunks] == [4 * _SMALL, _SMALL]
    assert writer.buffered == 5 * _SMALL
    sink.flush()
    table = writer.table.scan().to_arrow().sort_by("_position")
    assert table.column("id").to_pylist() == list(range(5 * _SMALL))
    assert table.column("name").to_pylist() == [f"n{i}" for i in range(5 * _SMALL)]
    sink.close()


def test_chunks_of_another_shape_are_not_combined(tmp_path: Path) -> None:
    s = schema()
    sink = opened(config(tmp_path, commit_rows=1_000_000))
    sink.apply(batch(event(Op.CREATE, s, 1, (1, "a"))))
    writer = sink._writers[s.ref]
    writer.seal()
    first = writer.chunks[0]
    other = pa.table({"x": pa.array(range(MIN_CHUNK_ROWS - 1), pa.int64())})
    writer.add_chunk(other)  # together MIN_CHUNK_ROWS, but of another shape
    assert writer.chunks == [first, other]
    writer.discard()
    sink.close()
