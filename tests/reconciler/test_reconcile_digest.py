"""Range digests (one MD5 of a key range's rows joined in key order) equal across MariaDB and
PostgreSQL for every kind of value: the in-sync compare's fast path, which only counts when the
canonical texts match byte for byte (otherwise every range falls back to bucket sums: slow, and
the benchmark's figure would be wrong)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from cdc.config import load_config
from cdc.config.models import SqlSinkConfig
from cdc.core.schemas import ArrowKind, TableRef
from cdc.devstack.connections import StackConnections
from reconciler.canonical import Engine
from reconciler.model import CompareColumn, KeyRange
from reconciler.stores import SqlRunner, Store
from reconciler.targets import open_source, source_runner, sql_copy
from tests.reconciler.recon_pipeline import ReconPipeline


@pytest.fixture
def pipeline(shared_pipeline: ReconPipeline) -> ReconPipeline:
    return shared_pipeline


def test_in_sync_digests_are_equal_in_mariadb_and_postgresql(pipeline: ReconPipeline) -> None:
    config = load_config(pipeline.config, pipeline.env())
    source = open_source(source_runner(config.source), TableRef(pipeline.db, "kinds"))
    ranges = [KeyRange(1, 20), KeyRange(20, 41), KeyRange(41, 100)]  # the last one empty
    try:
        expected = source.store.digests(ranges)
        assert all(d is not None for d in expected) and expected[2] == (0, ""), expected
        for sink in config.sinks:
            if not isinstance(sink, SqlSinkConfig) or sink.name not in ("pg", "maria"):
                continue
            copy = sql_copy(sink.name, sink, config.name, source)
            try:
                assert copy.store().digests(ranges) == expected, sink.name
            finally:
                copy.close()
    finally:
        source.runner.close()


def test_timestamp_digests_are_equal_at_the_edges(stack: StackConnections) -> None:
    """PostgreSQL's digest text of a timestamp is its ISO text padded to six fraction digits (cheaper
    than to_char): a zero fraction, trailing zeros, the first and last years, NULL, in both stores."""
    db = f"recspeed_{uuid.uuid4().hex[:8]}"
    values = ["0999-01-02 03:04:05", "2024-01-02 03:04:05", "2024-01-02 03:04:05.5",
              "2024-01-02 03:04:05.00001", "2024-01-02 03:04:05.12345",
              "9999-12-31 23:59:59.999999"]  # fmt: skip
    # c: a TIMESTAMP (1970 to 2038), NULL in the first row
    rows = [
        (i, v, v[:19], None if i == 0 else min(max(v, "1970-01-02"), "2038-01-01"))
        for i, v in enumerate(values)
    ]
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, a DATETIME(6) NOT NULL, b DATETIME, "
                    "c TIMESTAMP(6) NULL)")  # fmt: skip
        cur.execute("SET time_zone = '+00:00'")
        cur.executemany(f"INSERT INTO `{db}`.t VALUES (%s, %s, %s, %s)", rows)
    admin = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as pg_admin:
        pg_admin.execute(sa.text(f'CREATE DATABASE "{db}"'))
    pg = sa.create_engine(stack.postgres.sqlalchemy_url(db))
    m = stack.mariadb
    maria = sa.create_engine(sa.URL.create("mysql+pymysql", username=m.root_user,
                                           password=m.root_password or None, host=m.host, port=m.port,
                                           database=db))  # fmt: skip
    try:
        with pg.begin() as pg_conn:
            pg_conn.execute(
                sa.text("CREATE TABLE t (id INT PRIMARY KEY, a TIMESTAMP(6), b TIMESTAMP, c TIMESTAMPTZ)")
            )
            pg_conn.execute(
                sa.text("SET TIME ZONE 'Europe/Paris'")
            )  # the copy's session zone must not matter
            pg_conn.execute(
                sa.text(
                    "INSERT INTO t VALUES (:i, CAST(:a AS TIMESTAMP), CAST(:b AS TIMESTAMP), "
                    "CAST(:c AS TIMESTAMP) AT TIME ZONE 'UTC')"
                ),
                [{"i": i, "a": a, "b": b, "c": c} for i, a, b, c in rows],
            )
        columns = (
            CompareColumn("id", ArrowKind.INT32, nullable=False),
            CompareColumn("a", ArrowKind.TIMESTAMP, nullable=False),
            CompareColumn("b", ArrowKind.TIMESTAMP),
            CompareColumn("c", ArrowKind.TIMESTAMP_UTC),
        )
        source = Store(SqlRunner(maria, Engine.MARIADB, utc_session=True), "t", columns[:1], columns)
        copy = Store(SqlRunner(pg, Engine.POSTGRESQL), "t", columns[:1], columns)
        ranges = [KeyRange(0, len(rows))] + [KeyRange(i, i + 1) for i in range(len(rows))]
        expected = source.digests(ranges)
        assert None not in expected
        assert copy.digests(ranges) == expected
    finally:
        maria.dispose()
        pg.dispose()
        with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        with admin.connect() as pg_admin:
            pg_admin.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
