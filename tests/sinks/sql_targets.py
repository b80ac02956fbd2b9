"""SQL sink targets for the trust tests: a fresh SQLite file, PostgreSQL schema or MariaDB database.

Unlike the behaviour suite's fixture, a target here hands out any number of sink objects on the same
database (two writers, a restart), each with its own settings (key_columns, schema_changes).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sinks.sql import SqlSink, SqlSinkSettings
from tests.sinks.conftest import mariadb_url
from tests.support.at_once import at_once

PIPELINE = "trust"
KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.integration),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.integration),
]


@dataclass
class SqlTarget:
    kind: str
    settings: SqlSinkSettings
    engine: sa.Engine  # an admin connection to the same database, for looking at what the sink did
    opened: list[SqlSink]

    def sink(self, **changes: Any) -> SqlSink:
        """A new, opened sink object on this target (a second writer, or the same one restarted)."""
        sink = SqlSink(replace(self.settings, **changes))
        sink.open()
        self.opened.append(sink)
        return sink

    def tables(self) -> set[str]:
        return set(sa.inspect(self.engine).get_table_names(schema=self.settings.schema))

    def columns(self, table: str) -> list[str]:
        inspector = sa.inspect(self.engine)
        return [c["name"] for c in inspector.get_columns(table, schema=self.settings.schema)]


def _make(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[SqlTarget, Callable[[], None]]:
    name = f"sqlsink_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'serving.db'}"
        engine = sa.create_engine(url)
        return SqlTarget(kind, SqlSinkSettings(url, PIPELINE), engine, []), lambda: None
    stack: Any = request.getfixturevalue("sink_stack")
    if kind == "postgres":
        url = stack.postgres.sqlalchemy_url()
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))

        def drop_pg() -> None:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))

        return SqlTarget(kind, SqlSinkSettings(url, PIPELINE, schema=name), engine, []), drop_pg
    admin = sa.create_engine(mariadb_url(stack))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = mariadb_url(stack, name)
    engine = sa.create_engine(url)

    def drop_mariadb() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE `{name}`"))
        admin.dispose()

    return SqlTarget(kind, SqlSinkSettings(url, PIPELINE), engine, []), drop_mariadb


def make_target(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Generator[SqlTarget]:
    """For a fixture: ``yield from make_target(...)``; closes every sink and drops the database."""
    made, cleanup = _make(kind, tmp_path, request)
    try:
        yield made
    finally:
        for sink in made.opened:
            sink.close()
        made.engine.dispose()
        cleanup()


def make_pair(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Generator[tuple[SqlTarget, SqlTarget]]:
    """For a fixture: ``yield from make_pair(...)``; two targets of ``kind`` (the column-wise path's
    and the per-change path's, compared with each other), each cleaned up as ``make_target`` does."""
    columns = make_target(kind, tmp_path / "a", request)
    per_change = make_target(kind, tmp_path / "b", request)
    yield next(columns), next(per_change)
    for done in (columns, per_change):
        next(done, None)


def open_at_once(sinks: list[SqlSink]) -> list[BaseException]:
    """Open every sink in its own thread, all released at the same moment (daemons started
    together on one target); what each open raised."""
    return at_once(sinks, SqlSink.open)
