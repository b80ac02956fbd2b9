"""sinks/iceberg/catalogs.open_catalog: a SQLite catalog's file is put in WAL mode (a commit syncs
the log, not a rollback journal and the database), a catalog from before is converted with its
tables intact, and commits still sync (synchronous FULL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

from sinks.iceberg.catalogs import open_catalog


def _mode(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        return str(connection.execute("PRAGMA journal_mode").fetchone()[0])


def test_a_new_sqlite_catalog_is_in_wal_mode(tmp_path: Path) -> None:
    catalog = open_catalog({"type": "sql", "uri": "sqlite:///c.db", "warehouse": "wh"}, tmp_path)
    assert _mode(tmp_path / "c.db") == "wal"
    with catalog.engine.connect() as connection:  # type: ignore[attr-defined]
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_a_catalog_from_before_is_converted_and_keeps_its_tables(tmp_path: Path) -> None:
    old = SqlCatalog("headwater", uri=f"sqlite:///{tmp_path}/c.db", warehouse=(tmp_path / "wh").as_uri())
    old.create_namespace("n")
    table = old.create_table("n.t", schema=pa.schema([("id", pa.int64())]))
    table.append(pa.table({"id": pa.array([1, 2], pa.int64())}))
    old.engine.dispose()
    assert _mode(tmp_path / "c.db") == "delete"
    catalog = open_catalog({"type": "sql", "uri": "sqlite:///c.db", "warehouse": "wh"}, tmp_path)
    assert _mode(tmp_path / "c.db") == "wal"
    reopened = catalog.load_table("n.t")
    reopened.append(pa.table({"id": pa.array([3], pa.int64())}))
    other = SqlCatalog("headwater", uri=f"sqlite:///{tmp_path}/c.db", warehouse=(tmp_path / "wh").as_uri())
    assert sorted(other.load_table("n.t").scan().to_arrow().column("id").to_pylist()) == [1, 2, 3]


def test_an_in_memory_catalog_is_left_alone(tmp_path: Path) -> None:
    catalog = open_catalog({"type": "sql", "uri": "sqlite:///:memory:", "warehouse": "wh"}, tmp_path)
    with catalog.engine.connect() as connection:  # type: ignore[attr-defined]
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "memory"
