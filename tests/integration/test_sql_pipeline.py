"""The SQL sink through the real embedded pipeline (`cdc run --until-caught-up`, PostgreSQL sink):
schema changes under `apply` with and without a restart between the ALTER and the next rows, `stop`
with `cdc schema pending|accept`, a TRUNCATE as a table's first event after a restart, and a keyless
table that one sink refuses while the pipeline goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.config import load_config
from cdc.config.models import SqlSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from sinks.sql import create_sql_sink
from tests.support.sqlsink_pipeline import SqlPipeline


@pytest.fixture
def pipeline(stack: StackConnections, tmp_path: Path) -> Iterator[SqlPipeline]:
    made = SqlPipeline.create(stack, tmp_path)
    try:
        yield made
    finally:
        made.drop()


def pg_sink(pipeline: SqlPipeline, extra: str = "") -> str:
    return f"  - {{type: sql, url: '{pipeline.pg_url()}', schema: {pipeline.db}{extra}}}\n"


def serving_rows(
    pipeline: SqlPipeline, config: Path, table: str, index: int = 0
) -> dict[object, dict[str, object]]:
    loaded = load_config(config, {"SQLSINK_SOURCE_PASSWORD": pipeline.stack.mariadb.password})
    sink_config = loaded.sinks[index]
    assert isinstance(sink_config, SqlSinkConfig)
    sink = create_sql_sink(sink_config, loaded.name)
    sink.open()
    try:
        return {row["id"]: row for row in sink.read_rows(TableRef(pipeline.db, table))}
    finally:
        sink.close()


def source_rows(pipeline: SqlPipeline, table: str) -> dict[object, dict[str, object]]:
    import pymysql.cursors

    with pipeline.source(pipeline.db) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM `{table}`")
        return {row["id"]: dict(row) for row in cur.fetchall()}


def sql(pipeline: SqlPipeline, *statements: str) -> None:
    with pipeline.source(pipeline.db) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


# note is TEXT, not VARCHAR: dropping the last column and adding one of the same type in one ALTER
# reads as a rename (cdc.core.schema_evolution's documented ambiguity)
ALTER = (
    "ALTER TABLE page RENAME COLUMN title TO name, DROP COLUMN old, MODIFY len BIGINT, ADD COLUMN note TEXT"
)


@pytest.mark.parametrize("restart", [False, True], ids=["one_run", "restart_between"])
def test_apply_follows_an_alter_with_or_without_a_restart_between(
    pipeline: SqlPipeline, restart: bool
) -> None:
    sql(pipeline, "CREATE TABLE page (id INT PRIMARY KEY, title VARCHAR(20), len INT, old VARCHAR(10))")
    config = pipeline.write_config(pg_sink(pipeline))
    pipeline.run_until_caught_up(config)  # the pipeline starts here
    sql(pipeline, "INSERT INTO page VALUES (1, 'one', 1, 'x'), (2, 'two', 2, 'y')", ALTER)
    if restart:
        pipeline.run_until_caught_up(config)  # the next rows come after a restart: new version only
    sql(
        pipeline,
        "INSERT INTO page VALUES (3, 'three', 1099511627776, 'hello')",
        "UPDATE page SET name = 'uno', note = 'n' WHERE id = 1",
    )
    pipeline.run_until_caught_up(config)
    assert serving_rows(pipeline, config, "page") == source_rows(pipeline, "page")


def test_kafka_rows_of_both_versions_over_three_partitions_land(pipeline: SqlPipeline) -> None:
    """Through Kafka with 3 partitions: keys of the old and the new version sit in different
    partitions, so `cdc sink` may read older rows after the new version was applied; every one
    lands by the rename chain, whichever order the partitions are read in."""
    sql(pipeline, "CREATE TABLE page (id INT PRIMARY KEY, title VARCHAR(20), len INT, old VARCHAR(10))")
    config = pipeline.write_config(pg_sink(pipeline), partitions=3)
    pipeline.run_until_caught_up(config)
    old_rows = ", ".join(f"({i}, 't{i}', {i}, 'o{i}')" for i in range(1, 31))
    sql(pipeline, f"INSERT INTO page VALUES {old_rows}")
    pipeline.run_until_caught_up(config)
    sql(pipeline, ALTER, "UPDATE page SET name = CONCAT(name, '+'), note = 'new' WHERE id % 3 = 0")
    new_rows = ", ".join(f"({i}, 't{i}', {i * 2**33}, 'n{i}')" for i in range(31, 61))
    sql(pipeline, f"INSERT INTO page VALUES {new_rows}")
    pipeline.run_until_caught_up(config)
    sink = pipeline.cdc(config, "sink", "--until-caught-up")
    assert sink.code == 0, sink.output[-3000:]
    assert serving_rows(pipeline, config, "page") == source_rows(pipeline, "page")


def test_stop_holds_a_change_until_cdc_schema_accept(pipeline: SqlPipeline) -> None:
    sql(pipeline, "CREATE TABLE page (id INT PRIMARY KEY, title VARCHAR(20), len INT, old VARCHAR(10))")
    config = pipeline.write_config(pg_sink(pipeline, ", schema_changes: stop"))
    pipeline.run_until_caught_up(config)
    sql(
        pipeline,
        "INSERT INTO page VALUES (1, 'one', 1, 'x')",
        ALTER,
        "INSERT INTO page VALUES (2, 'two', 2, 'n')",
    )
    stopped = pipeline.cdc(config, "run", "--until-caught-up")
    assert stopped.code == 2, stopped.output[-2000:]
    assert f"{pipeline.db}.page" in stopped.output and "rename title to name" in stopped.output
    assert "cdc schema accept" in stopped.output
    assert serving_rows(pipeline, config, "page") == {}  # nothing of the batch that held the change
    listed = pipeline.cdc(config, "schema", "pending")
    assert listed.code == 1 and f"{pipeline.db}.page" in listed.output and "drop old" in listed.output
    accepted = pipeline.cdc(config, "schema", "accept", f"{pipeline.db}.page", "--sink", "0")
    assert accepted.code == 0, accepted.output
    assert pipeline.cdc(config, "schema", "accept", f"{pipeline.db}.page").code == 1  # nothing left
    pipeline.run_until_caught_up(config)
    assert serving_rows(pipeline, config, "page") == source_rows(pipeline, "page")
    assert pipeline.cdc(config, "schema", "pending").code == 0


def test_a_truncate_after_a_restart_empties_the_serving_table(pipeline: SqlPipeline) -> None:
    sql(pipeline, "CREATE TABLE `order` (id INT PRIMARY KEY, `group` VARCHAR(10))")
    config = pipeline.write_config(pg_sink(pipeline))
    pipeline.run_until_caught_up(config)
    sql(pipeline, "INSERT INTO `order` VALUES (1, 'a'), (2, 'b')")
    pipeline.run_until_caught_up(config)
    assert serving_rows(pipeline, config, "order").keys() == {1, 2}
    sql(pipeline, "TRUNCATE TABLE `order`")  # the table's first event in the next run: no TABLE_MAP
    pipeline.run_until_caught_up(config)
    assert serving_rows(pipeline, config, "order") == {}
    sql(pipeline, "INSERT INTO `order` VALUES (3, 'c')")
    pipeline.run_until_caught_up(config)
    assert serving_rows(pipeline, config, "order") == source_rows(pipeline, "order")


def test_a_keyless_table_is_refused_by_one_sink_and_kept_by_another(pipeline: SqlPipeline) -> None:
    sql(
        pipeline,
        "CREATE TABLE user_newtalk (user_id INT NOT NULL, ts VARCHAR(14))",
        "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
    )
    keyed = f", key_columns: {{'{pipeline.db}.user_newtalk': [user_id]}}"
    sqlite_url = f"sqlite:///{pipeline.tmp / 'excluded.db'}"
    config = pipeline.write_config(
        pg_sink(pipeline)
        + f"  - {{type: sql, url: '{sqlite_url}', table: 'k_{{table}}'{keyed}}}\n"
        + f"  - {{type: sql, url: 'sqlite:///{pipeline.tmp / 'x.db'}',"
        f" exclude_tables: ['{pipeline.db}.user_*']}}\n"
    )
    pipeline.run_until_caught_up(config)
    sql(pipeline, "INSERT INTO user_newtalk VALUES (1, 'a'), (2, 'b')", "INSERT INTO t VALUES (1, 1), (2, 2)")
    result = pipeline.run_until_caught_up(config)
    assert f"{pipeline.db}.user_newtalk" in result.output and "key_columns" in result.output
    assert serving_rows(pipeline, config, "t") == source_rows(pipeline, "t")  # the refusing sink goes on
    assert serving_rows(pipeline, config, "t", 2) == source_rows(pipeline, "t")  # the excluding one too
    loaded = load_config(config, {"SQLSINK_SOURCE_PASSWORD": ""})
    sink_config = loaded.sinks[1]
    assert isinstance(sink_config, SqlSinkConfig)
    sink = create_sql_sink(sink_config, loaded.name)
    sink.open()
    try:
        rows = sink.read_rows(TableRef(pipeline.db, "user_newtalk"))
    finally:
        sink.close()
    assert sorted((r["user_id"], r["ts"]) for r in rows) == [(1, "a"), (2, "b")]
