"""sinks/iceberg/pyiceberg_partitions.py: an append whose rows are all in one partition skips
pyiceberg's per-partition filter, with the same partitions (keys, rows, order) pyiceberg gives; any
other table goes to pyiceberg's own function."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.io import pyarrow as pyiceberg_arrow
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

import sinks.iceberg.table_writer  # noqa: F401 - installs the shortcut
from sinks.iceberg.pyiceberg_partitions import _ORIGINAL, determine_partitions

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "name", StringType(), required=False),
    NestedField(3, "ts", TimestamptzType(), required=False),
)
BY_DAY = PartitionSpec(PartitionField(source_id=3, field_id=1000, transform=DayTransform(), name="day"))
BY_NAME = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="n"))


def _table(days: list[int | None], chunks: int = 1) -> pa.Table:
    ts = [None if d is None else datetime(2026, 11, d, 12, i % 60, tzinfo=UTC) for i, d in enumerate(days)]
    whole = pa.table(
        {
            "id": pa.array(range(len(days)), pa.int64()),
            "name": pa.array([f"n{i % 3}" for i in range(len(days))], pa.string()),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        }
    )
    if chunks == 1:
        return whole
    size = max(len(days) // chunks, 1)
    return pa.concat_tables([whole.slice(i, size) for i in range(0, len(days), size)])


def _parts(
    spec: PartitionSpec, table: pa.Table, function: object
) -> list[tuple[object, list[dict[str, object]]]]:
    found = function(spec, SCHEMA, table)  # type: ignore[operator]
    return [(p.partition_key.partition, p.arrow_table_partition.to_pylist()) for p in found]


def test_one_partition_skips_the_filter_with_the_same_key_rows_and_order() -> None:
    assert pyiceberg_arrow._determine_partitions is determine_partitions
    for table in (_table([30] * 50), _table([30] * 50, chunks=4), _table([None] * 5)):
        got = _parts(BY_DAY, table, determine_partitions)
        assert got == _parts(BY_DAY, table, _ORIGINAL)
        assert len(got) == 1 and got[0][1] == table.to_pylist()


def test_anything_else_goes_to_pyiceberg() -> None:
    for spec, table in (
        (BY_DAY, _table([29, 30, 30, 29])),
        (BY_DAY, _table([30, None, 30])),
        (BY_NAME, _table([30] * 9)),
        (BY_DAY, _table([])),
    ):
        assert _parts(spec, table, determine_partitions) == _parts(spec, table, _ORIGINAL)


def test_an_append_through_a_catalog_lands_in_its_day(tmp_path: Path) -> None:
    catalog = SqlCatalog("c", uri=f"sqlite:///{tmp_path}/c.db", warehouse=(tmp_path / "wh").as_uri())
    catalog.create_namespace("n")
    table = catalog.create_table("n.t", schema=SCHEMA, partition_spec=BY_DAY)
    table.append(_table([30] * 20))
    table.append(_table([29, 30]))
    files = {(f.file.partition[0], f.file.record_count) for f in table.scan().plan_files()}
    day = (datetime(2026, 11, 30, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days
    assert files == {(day, 20), (day - 1, 1), (day, 1)}
    assert sorted(r["id"] for r in table.scan().to_arrow().to_pylist()) == sorted([*range(20), 0, 1])
