"""One behaviour suite over every sink: the `sut` fixture builds a fresh SinkUnderTest per test.

sqlite runs anywhere; postgres and mariadb run on the dev stack (a fresh schema / database per test)
and carry the `integration` marker; iceberg comes from the Iceberg sink's own factory
(tests/sinks/iceberg_factory.py) and fails loudly if that is missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.core.schemas import TableRef
from sinks.sql import SqlSink, SqlSinkSettings
from tests.sinks.harness import SinkUnderTest

PIPELINE = "behaviour"
SINK_PARAMS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.integration),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.integration),
    pytest.param("iceberg", id="iceberg"),
]


def _stack() -> object:
    from cdc.devstack.connections import default_state_dir
    from cdc.devstack.settings import StackSettings
    from cdc.devstack.stack import DevStack

    return DevStack(StackSettings(state_dir=default_state_dir())).up().connections


@pytest.fixture(scope="session")
def sink_stack() -> object:
    """The dev stack (started if it is not running; left running)."""
    return _stack()


def sql_sink_under_test(
    settings_for: Callable[[], SqlSinkSettings], cleanup: Callable[[], None]
) -> SinkUnderTest:
    sink = SqlSink(settings_for())

    def current_rows(ref: TableRef) -> dict[tuple[object, ...], dict[str, object]]:
        reader = SqlSink(settings_for())
        reader.open()
        try:
            pk = reader.primary_key(ref)
            if pk is None:
                return {}
            return {tuple(row[k] for k in pk): row for row in reader.read_rows(ref)}
        finally:
            reader.close()

    def close_all() -> None:
        sink.close()
        cleanup()

    return SinkUnderTest(sink, current_rows, None, close_all, reopen=lambda: SqlSink(settings_for()))


def _sqlite(tmp_path: Path, on_bad_row: str) -> SinkUnderTest:
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    return sql_sink_under_test(lambda: SqlSinkSettings(url, PIPELINE, on_bad_row=on_bad_row), lambda: None)


def _postgres(stack: object, on_bad_row: str, copy_threshold: int | None) -> SinkUnderTest:
    url = stack.postgres.sqlalchemy_url()  # type: ignore[attr-defined]
    schema = f"hw_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    def cleanup() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return sql_sink_under_test(
        lambda: SqlSinkSettings(
            url, PIPELINE, schema=schema, on_bad_row=on_bad_row, copy_threshold_rows=copy_threshold
        ),
        cleanup,
    )


def mariadb_url(stack: object, database: str = "") -> str:
    m = stack.mariadb  # type: ignore[attr-defined]
    return f"mysql+pymysql://{m.root_user}:{m.root_password}@{m.host}:{m.port}/{database}?charset=utf8mb4"


def _mariadb(stack: object, on_bad_row: str) -> SinkUnderTest:
    database = f"hw_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(mariadb_url(stack))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))

    def cleanup() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE `{database}`"))
        admin.dispose()

    url = mariadb_url(stack, database)
    return sql_sink_under_test(lambda: SqlSinkSettings(url, PIPELINE, on_bad_row=on_bad_row), cleanup)


def make_sink_under_test(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    on_bad_row: str = "stop",
    copy_threshold: int | None = 1_000,
) -> SinkUnderTest:
    if kind == "sqlite":
        return _sqlite(tmp_path, on_bad_row)
    if kind == "postgres":
        return _postgres(request.getfixturevalue("sink_stack"), on_bad_row, copy_threshold)
    if kind == "mariadb":
        return _mariadb(request.getfixturevalue("sink_stack"), on_bad_row)
    if kind == "iceberg":
        # written by the Iceberg sink's engineer; an ImportError here is a failure, never a skip
        from tests.sinks.iceberg_factory import make_iceberg_sink_under_test

        sut: SinkUnderTest = make_iceberg_sink_under_test(tmp_path)
        return sut
    raise ValueError(kind)


@pytest.fixture(params=SINK_PARAMS)
def sut(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkUnderTest]:
    under_test = make_sink_under_test(request.param, request, tmp_path)
    try:
        yield under_test
    finally:
        under_test.cleanup()


@pytest.fixture(params=[p for p in SINK_PARAMS if p.id != "iceberg"])
def sql_kind(request: pytest.FixtureRequest) -> str:
    """The serving (SQL) sinks only, for policies that concern them (on_bad_row)."""
    kind: str = request.param
    return kind
