"""A SQLite serving database's journal mode (sinks/sql/sqlite_file.py): WAL for a file the sink
creates, an existing file's mode kept unless the config says ``wal``, never touched with ``keep``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cdc.config.models import SqlSinkConfig
from sinks.sql.sql_sink import SqlSink, SqlSinkSettings
from tests.sinks.sql_targets import open_at_once


def _journal(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()


def _open(path: Path, journal: str) -> None:
    sink = SqlSink(SqlSinkSettings(f"sqlite:///{path}", "journal", sqlite_journal=journal))
    sink.open()
    sink.close()


def _existing(path: Path) -> Path:
    sqlite3.connect(path).close()  # an empty database in the default rollback journal
    assert _journal(path) == "delete"
    return path


def test_a_database_the_sink_creates_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "new" / "serving.db"
    _open(path, "auto")
    assert _journal(path) == "wal"


@pytest.mark.parametrize(("journal", "expected"), [("auto", "delete"), ("keep", "delete"), ("wal", "wal")])
def test_an_existing_database_keeps_its_mode_unless_told(tmp_path: Path, journal: str, expected: str) -> None:
    path = _existing(tmp_path / "serving.db")
    _open(path, journal)
    assert _journal(path) == expected


def test_keep_leaves_a_new_database_in_the_rollback_journal(tmp_path: Path) -> None:
    path = tmp_path / "serving.db"
    _open(path, "keep")
    assert _journal(path) == "delete"


def test_the_config_refuses_an_unknown_journal_setting() -> None:
    with pytest.raises(ValueError, match="sqlite_journal"):
        SqlSinkConfig(url="sqlite:///x.db", sqlite_journal="truncate")  # type: ignore[arg-type]


def test_sinks_opening_one_new_database_at_the_same_moment_all_open_in_wal(tmp_path: Path) -> None:
    """Two daemons started together on a new file both ask for WAL. The switch needs the file's
    exclusive lock, and SQLite answers the second asker `database is locked` at once, without
    waiting (its deadlock rule): the loser must wait for the winner, not stop (CI failed on this)."""
    for round_ in range(40):
        path = tmp_path / f"race{round_}.db"
        sinks = [SqlSink(SqlSinkSettings(f"sqlite:///{path}", "journal")) for _ in range(3)]
        errors = open_at_once(sinks)
        for sink in sinks:
            sink.close()
        assert not errors, errors
        assert _journal(path) == "wal"
