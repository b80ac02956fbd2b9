"""A sink that refuses us (wrong password, missing database, unwritable file) stops the pipeline at
once (exit 2) naming the sink and the fix, never retried forever, never showing the password."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.core.errors import SinkAccessDenied, TerminalError
from cdc.devstack.connections import StackConnections
from sinks.sql import SqlSink, SqlSinkSettings
from tests.support.sqlsink_pipeline import SqlPipeline

WRONG = "wrong-s3cret-pw"


@pytest.fixture
def pipeline(stack: StackConnections, tmp_path: Path) -> Iterator[SqlPipeline]:
    made = SqlPipeline.create(stack, tmp_path)
    try:
        yield made
    finally:
        made.drop()


def test_cdc_run_with_a_wrong_postgres_password_exits_2_naming_the_sink(pipeline: SqlPipeline) -> None:
    with pipeline.source(pipeline.db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    config = pipeline.write_config(
        f"  - {{type: sql, url: '{pipeline.pg_url(WRONG)}', schema: {pipeline.db}}}\n"
    )
    try:
        result = pipeline.cdc(config, "run", "--until-caught-up", timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("cdc run kept retrying a sink that refused its password")
    assert result.code == 2, result.output[-2000:]
    assert result.seconds < 30
    assert WRONG not in result.output
    masked = pipeline.pg_url(WRONG).replace(WRONG, "***")
    assert f"sql:{masked}" in result.output and "password" in result.output, result.output[-2000:]


def test_a_wrong_mariadb_password_or_a_missing_database_is_terminal(stack: StackConnections) -> None:
    m = stack.mariadb
    for url in (
        f"mysql+pymysql://{m.root_user}:{WRONG}@{m.host}:{m.port}/mysql",
        f"mysql+pymysql://{m.root_user}:{m.root_password}@{m.host}:{m.port}/sqlsink_no_such_db",
        stack.postgres.sqlalchemy_url("sqlsink_no_such_db"),
    ):
        sink = SqlSink(SqlSinkSettings(url, "p"))
        with pytest.raises(SinkAccessDenied) as info:
            sink.open()
        assert isinstance(info.value, TerminalError)
        assert (
            sink.name in str(info.value)
            and WRONG not in str(info.value)
            and m.root_password not in str(info.value)
        )


def test_an_unwritable_sqlite_path_is_terminal() -> None:
    sink = SqlSink(SqlSinkSettings("sqlite:////proc/sqlsink/serving.db", "p"))
    with pytest.raises(SinkAccessDenied, match="writable"):
        sink.open()
