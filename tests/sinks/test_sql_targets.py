"""Target placement on the dev stack: a PostgreSQL schema or a MariaDB database named by `schema`."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from sinks.sql import SqlSink, SqlSinkSettings
from tests.sinks.builders import ITEMS, Writer
from tests.sinks.conftest import mariadb_url

pytestmark = pytest.mark.integration


def test_postgres_schema_is_created_and_holds_everything(sink_stack: object) -> None:
    url = sink_stack.postgres.sqlalchemy_url()  # type: ignore[attr-defined]
    schema = f"hw_test_{uuid.uuid4().hex[:12]}"
    sink = SqlSink(SqlSinkSettings(url, "p", schema=schema, table_format="{db}_{table}"))
    engine = sa.create_engine(url)
    try:
        sink.open()
        sink.apply(Writer().insert(1, "a", 1).batch())
        names = set(sa.inspect(engine).get_table_names(schema=schema))
        assert {"shop_items", "_headwater_positions", "_headwater_tables", "_headwater_dead_letters"} <= names
    finally:
        sink.close()
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def test_mariadb_schema_is_a_database(sink_stack: object) -> None:
    database = f"hw_test_{uuid.uuid4().hex[:12]}"
    sink = SqlSink(SqlSinkSettings(mariadb_url(sink_stack), "p", schema=database))
    engine = sa.create_engine(mariadb_url(sink_stack))
    try:
        sink.open()
        sink.apply(Writer().insert(1, "a", 1).batch())
        assert sink.read_rows(ITEMS.ref) == [{"id": 1, "name": "a", "qty": 1}]
        assert "items" in sa.inspect(engine).get_table_names(schema=database)
    finally:
        sink.close()
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{database}`"))
        engine.dispose()
