"""icesteady: the history tables' Parquet layout (new tables carry the layout properties, and the rows
a reader sees are the rows applied: the layout changes encodings, never values), and the first
commit's lazy imports done in open()."""

from __future__ import annotations

import subprocess
import sys
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


_FIRST_COMMIT = """
import sys
from pathlib import Path
from cdc.core.events import Op
from tests.unit.test_iceberg_sink import batch, config, event, opened, schema
s = schema()
sink = opened(config(Path(sys.argv[1])))
before = set(sys.modules)
sink.apply(batch(event(Op.CREATE, s, 1, (1, "a"))))
sink.flush()
print(" ".join(sorted(set(sys.modules) - before)))
sink.close()
"""


def test_the_first_commit_imports_nothing_open_could_have(tmp_path: Path) -> None:
    """pyiceberg imports rich and pyiceberg_core on a process's first append (~28 ms of CPU inside the
    first commit); the sink's open() imports them, before changes flow. A fresh interpreter: in this
    one another test may have imported them already."""
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_COMMIT, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    imported = done.stdout.split()
    assert not [m for m in imported if m.split(".")[0] in ("rich", "pyiceberg_core")], imported
