"""icemem: what a history commit holds and loads.

- the day partition is computed without pyiceberg_core (a 39 MB library, 9.5 MiB of RSS, loaded only
  for that transform): the days are pyiceberg_core's own, and a sink's commits of one day and of
  several days never import it;
- a commit's rows are handed to pyiceberg in pieces of at least MIN_CHUNK_ROWS rows (never one
  copy of the whole commit), in their order, and pyiceberg's partitioning passes such a table on
  without combining it, while a table of small chunks is still combined.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import LongType, NestedField, TimestampType, TimestamptzType

from sinks.iceberg.pyiceberg_partitions import _ORIGINAL, MIN_CHUNK_ROWS, _days, determine_partitions
from sinks.iceberg.table_writer import _in_pieces

_DAY_US = 86_400_000_000
_EDGES = [
    -_DAY_US - 1, -_DAY_US, -_DAY_US + 1, -1, 0, 1, _DAY_US - 1, _DAY_US,
    1_764_547_199_999_999, 1_764_547_200_000_000, 253_402_300_799_999_999, None,
]  # fmt: skip


def _micros(values: list[int | None], tz: str | None) -> pa.ChunkedArray:
    array = pa.array(values, pa.int64()).cast(pa.timestamp("us", tz=tz))
    return pa.chunked_array([array[:5], array[5:]])


def test_days_are_pyiceberg_cores() -> None:
    for tz, source in (("UTC", TimestamptzType()), (None, TimestampType())):
        column = _micros(_EDGES, tz)
        theirs = DayTransform().pyarrow_transform(source)(column)
        assert _days(column).to_pylist() == theirs.to_pylist()
        assert _days(column).type == theirs.type == pa.int32()


def _table(micros: list[int | None], chunks: int = 1) -> pa.Table:
    whole = pa.table(
        {
            "id": pa.array(range(len(micros)), pa.int64()),
            "ts": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )
    size = max(len(micros) // chunks, 1)
    return pa.concat_tables([whole.slice(i, size) for i in range(0, len(micros), size)])


SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "ts", TimestamptzType(), required=False),
)
BY_DAY = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="day"))


def _parts(table: pa.Table, function: object) -> list[tuple[object, list[dict[str, object]]]]:
    found = function(BY_DAY, SCHEMA, table)  # type: ignore[operator]
    # in the order of the day: pyiceberg's group_by (threaded) gives the partitions in any order
    parts = [(p.partition_key.partition, p.arrow_table_partition.to_pylist()) for p in found]
    return sorted(parts, key=lambda part: repr(part[0]))


def test_partitions_by_day_are_pyicebergs() -> None:
    day = 1_764_547_200_000_000
    for micros in (
        [day + i for i in range(40)],  # one day
        [day - 1, day, day + 1, day - 2, None, day],  # two days and a null
        [-1, 0, -_DAY_US - 1, 5, -1],  # before 1970
        [None, None],
    ):
        for chunks in (1, 3):
            table = _table(micros, chunks)
            assert _parts(table, determine_partitions) == _parts(table, _ORIGINAL), micros


def test_pieces_keep_rows_in_order_and_are_not_combined_again() -> None:
    target = pa.schema([("id", pa.int64()), ("name", pa.string()), ("extra", pa.int32())])
    sizes = [3_000, 5_000, 100, MIN_CHUNK_ROWS * 2, 7, 4_000, 1]
    chunks, start = [], 0
    for n in sizes:
        ids = list(range(start, start + n))
        chunks.append(pa.table({"id": pa.array(ids, pa.int64()), "name": [f"n{i}" for i in ids]}))
        start += n
    merged = _in_pieces(chunks, target)
    assert chunks == []  # let go as copied
    assert merged.schema == target
    assert merged.column("id").to_pylist() == list(range(start))
    assert merged.column("extra").null_count == start
    lengths = [len(c) for c in merged.column("id").chunks]
    assert all(n >= MIN_CHUNK_ROWS for n in lengths[:-1]) and sum(lengths) == start
    # such a table goes on to the Parquet writer as it is; one of small chunks is combined
    one_day = pa.table({"id": merged.column("id"), "ts": pa.chunked_array(
        [pa.array([1_764_547_200_000_000] * len(c), pa.int64()).cast(pa.timestamp("us", tz="UTC"))
         for c in merged.column("id").chunks])})  # fmt: skip
    [part] = determine_partitions(BY_DAY, SCHEMA, one_day)
    assert part.arrow_table_partition.column("id").num_chunks == len(lengths) > 1
    small = _table([1_764_547_200_000_000] * 100, chunks=10)
    [part] = determine_partitions(BY_DAY, SCHEMA, small)
    assert part.arrow_table_partition.column("id").num_chunks == 1


_COMMITS = """
import sys
from pathlib import Path
from cdc.core.events import Op
from tests.unit.test_iceberg_sink import T0_MS, batch, config, event, opened, schema
s = schema()
sink = opened(config(Path(sys.argv[1])))
sink.apply(batch(*(event(Op.CREATE, s, 1 + i, (i, "a")) for i in range(20))))
sink.flush()
day = 86_400_000
sink.apply(batch(*(event(Op.CREATE, s, 100 + i, (100 + i, "b"), ts_ms=T0_MS + i * day) for i in range(3))))
sink.flush()
rows = sink._writers[s.ref].table.scan().to_arrow().num_rows
print(rows, "pyiceberg_core" in sys.modules)
sink.close()
"""


def test_a_sinks_commits_never_load_pyiceberg_core(tmp_path: Path) -> None:
    """A fresh interpreter: in this one another test may have loaded it."""
    done = subprocess.run(
        [sys.executable, "-c", _COMMITS, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert done.stdout.split() == ["23", "False"], done.stdout
