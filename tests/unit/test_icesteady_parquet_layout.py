"""The history tables' Parquet layout (icesteady): new tables carry the layout properties, and the
rows a reader sees are the rows applied (the layout changes encodings, never values)."""

from __future__ import annotations

from pathlib import Path

from cdc.core.events import Op
from sinks.iceberg.history_schema import PARQUET_LAYOUT_PROPERTIES
from sinks.iceberg.table_writer import TableWriter
from tests.unit.test_iceberg_sink import batch, config, event, opened, schema


def test_new_history_tables_carry_the_parquet_layout_and_keep_every_row(tmp_path: Path) -> None:
    s = schema()
    sink = opened(config(tmp_path, commit_rows=100_000))
    n = 6_000  # past one 4,096-row write batch: the distinct columns' dictionary overflows 64 KiB
    sink.apply(batch(*(event(Op.CREATE, s, 1, (i, f"name-{i:06d}-" + "x" * 20), row=i) for i in range(n))))
    sink.flush()
    writer = sink._writers[s.ref]
    assert isinstance(writer, TableWriter)
    table = writer.table
    for key, value in PARQUET_LAYOUT_PROPERTIES.items():
        assert table.properties[key] == value
    rows = table.scan().to_arrow().sort_by("_position").to_pylist()
    assert [(r["id"], r["name"], r["_op"]) for r in rows] == [
        (i, f"name-{i:06d}-" + "x" * 20, "c") for i in range(n)
    ]
    sink.close()
