"""The SQL sink from configuration: registry, naming, errors (SQLite: no services needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.config.models import SqlSinkConfig
from cdc.core.errors import ConfigError, SinkError, SinkUnavailable, TransientError
from cdc.core.schemas import TableRef
from sinks.registry import open_sink
from sinks.sql import SqlSink, SqlSinkSettings
from tests.sinks.builders import ITEMS, Writer, schema


def test_registry_builds_the_sql_sink_with_its_table_format(tmp_path: Path) -> None:
    config = SqlSinkConfig.model_validate(
        {"type": "sql", "url": f"sqlite:///{tmp_path / 's.db'}", "table": "{db}__{table}"}
    )
    sink = open_sink(config, "wiki")
    assert isinstance(sink, SqlSink)
    sink.open()
    try:
        sink.apply(Writer().insert(1, "a", 1).batch())
        assert sink.target_name(ITEMS.ref) == "shop__items"
        assert sink.read_rows(ITEMS.ref) == [{"id": 1, "name": "a", "qty": 1}]
    finally:
        sink.close()


def test_name_hides_the_password() -> None:
    sink = SqlSink(SqlSinkSettings("postgresql+psycopg://u:s3cret@h:1/db", "p"))
    assert "s3cret" not in sink.name and "h:1/db" in sink.name


def test_sqlite_refuses_a_schema(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="schema"):
        SqlSink(SqlSinkSettings(f"sqlite:///{tmp_path / 's.db'}", "p", schema="x"))


def test_two_source_tables_on_one_target_stop(tmp_path: Path) -> None:
    sink = SqlSink(SqlSinkSettings(f"sqlite:///{tmp_path / 's.db'}", "p"))
    sink.open()
    try:
        w = Writer()
        sink.apply(w.insert(1, "a", 1).batch())
        other = schema(*ITEMS.columns, ref=TableRef("other", "items"))
        with pytest.raises(SinkError, match=r"already holds shop\.items"):
            sink.apply(w.insert(1, "a", 1, table=other).batch())
    finally:
        sink.close()


def test_unreachable_database_is_transient() -> None:
    sink = SqlSink(SqlSinkSettings("postgresql+psycopg://u:p@127.0.0.1:9/db?connect_timeout=2", "p"))
    with pytest.raises(SinkUnavailable) as info:
        sink.open()
    assert isinstance(info.value, TransientError)


def test_using_a_sink_before_open_says_so(tmp_path: Path) -> None:
    sink = SqlSink(SqlSinkSettings(f"sqlite:///{tmp_path / 's.db'}", "p"))
    with pytest.raises(SinkError, match="open"):
        sink.applied()
