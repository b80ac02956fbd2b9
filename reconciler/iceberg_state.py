"""The Iceberg history's state as of a position, as a DuckDB view over the history's Parquet files.

The state is never held in memory: ``t`` is a view (per key, the last change at or before the
position, unless it is a delete; nothing before the last truncate), and every query the compare
pushes into it (a key range's bucket sums, a few rows) is run by DuckDB over the files, streaming,
with a memory limit and a spill directory. Peak memory then depends on DuckDB's limit, not on the
table's size (benchmarks/reconcile_bench.py measures it).

Only when the files cannot be read as they are does the copy fall back to rebuilding the state in
memory (sinks.iceberg.as_of): files not on the local filesystem, delete files, or a table whose
schema has evolved (Parquet columns are matched by field id, not by name, after a rename).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlparse

from cdc.core.positions import Position
from reconciler.canonical import Engine, quote

__all__ = ["IcebergStateRunner", "local_files"]

MEMORY_LIMIT = "64MB"  # DuckDB spills past it (the whole-table count and bounds, mostly)


def local_files(table: Any, up_to: Position | None) -> list[str] | None:
    """The local Parquet files holding ``table``'s history up to ``up_to``; None if they cannot be
    read as they are (see the module docstring)."""
    if len(table.schemas()) > 1:
        return None
    row_filter = "true" if up_to is None else f"_position <= '{up_to.to_string()}'"
    files = []
    for task in table.scan(row_filter=row_filter).plan_files():
        if task.delete_files:
            return None
        url = urlparse(task.file.file_path)
        if url.scheme not in ("", "file"):
            return None
        files.append(unquote(url.path))
    return files


class IcebergStateRunner:
    """SQL over the view ``t``: the history's state as of ``up_to`` (Runner, for reconciler.stores)."""

    engine = Engine.DUCKDB

    def __init__(self, files: Sequence[str], key: Sequence[str], up_to: Position | None) -> None:
        import duckdb

        self._lock = threading.Lock()
        self._spill = tempfile.TemporaryDirectory(prefix="headwater-reconcile-")
        self._con = duckdb.connect(
            config={"memory_limit": MEMORY_LIMIT, "temp_directory": self._spill.name, "threads": 2}
        )
        self._con.execute("SET TimeZone = 'UTC'")  # TIMESTAMP columns: their instant in UTC
        if not files:
            self._con.execute("CREATE VIEW t AS SELECT NULL AS _op WHERE false")
            return
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        history = f"read_parquet([{listed}])"
        upto = "" if up_to is None else f" AND _position <= '{up_to.to_string()}'"  # no quotes in it
        by = ", ".join(quote(Engine.DUCKDB, k) for k in key)
        self._con.execute(
            f"""CREATE VIEW t AS
            WITH cut AS (SELECT coalesce(max(_position), '') AS p FROM {history} WHERE _op = 't'{upto}),
            ranked AS (
                SELECT *, row_number() OVER (PARTITION BY {by} ORDER BY _position DESC) AS hw_rank
                FROM {history} WHERE _op <> 't' AND _position > (SELECT p FROM cut){upto}
            )
            SELECT * EXCLUDE (hw_rank) FROM ranked WHERE hw_rank = 1 AND _op <> 'd'"""
        )

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return [tuple(r) for r in self._con.execute(sql, list(params)).fetchall()]

    def close(self) -> None:
        self._con.close()
        self._spill.cleanup()
