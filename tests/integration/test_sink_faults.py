"""Fault tests for the sinks: SIGKILL at random moments during sink writes, embedded and Kafka mode.

A known workload runs on several tables (including a 200k-row transaction, which embedded mode
applies in several batches) while the process that writes the sinks is killed with SIGKILL at least
ten times. Afterwards:
- each serving table (SQLite and PostgreSQL) equals the source, row by row;
- the Iceberg history holds each source change exactly once (unique positions; per key, the exact
  sequence the workload committed, in position order).
"""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pymysql
import pytest

from cdc.config import load_config
from cdc.config.models import IcebergSinkConfig, SqlSinkConfig
from cdc.core.errors import ConfigError
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from sinks.iceberg import read_history
from sinks.iceberg.history_schema import to_source_values
from sinks.sql import create_sql_sink
from tests.support.workload import Daemon, Workload

pytestmark = pytest.mark.slow

TABLES = ("accounts", "events", "big")
BIG = 200_000
KILLS = 10


def write_config(tmp: Path, stack: StackConnections, name: str, db: str, *, kafka: bool) -> Path:
    m, pg = stack.mariadb, stack.postgres
    stream = (
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}', partitions: 3,"
        " flush_max_events: 5000, flush_max_ms: 100}\n"
        if kafka
        else ""
    )
    path = tmp / "cdc.yaml"
    path.write_text(
        f"name: {name}\n"
        f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
        f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {random.randint(10_000, 4_000_000)},"
        f" tables: ['{db}.*'], heartbeat_seconds: 1}}\n"
        f"{stream}"
        "sinks:\n"
        f"  - {{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}\n"
        f"  - {{type: sql, url: '{pg.sqlalchemy_url()}', schema: {db}}}\n"
        f"  - {{type: iceberg, namespace: {db}, commit_rows: 20000, commit_seconds: 2,"
        f" catalog: {{type: sql, uri: 'sqlite:///{tmp / 'catalog.db'}',"
        f" warehouse: '{(tmp / 'wh').as_uri()}'}}}}\n"
        "batch: {max_events: 5000, max_ms: 200, idle_flush_seconds: 2}\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return path


def source_rows(workload: Workload, table: str) -> dict[int, dict[str, Any]]:
    with workload.connect() as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM {table}")
        return {int(row["id"]): dict(row) for row in cur.fetchall()}


def verify(config_path: Path, workload: Workload) -> None:
    config = load_config(config_path, {"CDC_SOURCE_PASSWORD": workload.conns.mariadb.password})
    for sink_config in config.sinks:
        if isinstance(sink_config, SqlSinkConfig):
            sink = create_sql_sink(sink_config, config.name)
            sink.open()
            try:
                for table in TABLES:
                    got = {int(r["id"]): r for r in sink.read_rows(TableRef(workload.db, table))}  # type: ignore[call-overload]
                    want = source_rows(workload, table)
                    assert got.keys() == want.keys(), f"{sink.name} {table}: keys differ"
                    bad = [k for k in want if got[k] != want[k]]
                    assert not bad, f"{sink.name} {table}: rows differ, e.g. {want[bad[0]]} vs {got[bad[0]]}"
            finally:
                sink.close()
        else:
            assert isinstance(sink_config, IcebergSinkConfig)
            verify_history(sink_config, workload)


def verify_history(config: IcebergSinkConfig, workload: Workload) -> None:
    seen: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for table in TABLES:
        try:
            found = read_history(config.catalog, config.namespace, TableRef(workload.db, table))
        except ConfigError:
            continue
        rows = to_source_values(found.rows, found.column_kinds)
        positions = [str(r["_position"]) for r in rows]
        assert len(positions) == len(set(positions)), f"{table}: a change is in the history twice"
        for row in sorted(rows, key=lambda r: str(r["_position"])):
            seen[(table, int(row["id"]))].append((str(row["_op"]), int(row["ver"])))  # type: ignore[call-overload]
    for key, want in workload.expected.items():
        assert seen.get(key) == want, f"history of {key}: expected {want}, got {seen.get(key)}"
    extra = set(seen) - set(workload.expected)
    assert not extra, f"history has keys the workload never committed: {sorted(extra)[:5]}"


def kill_repeatedly(
    daemon: Daemon, rng: random.Random, workload: Workload, big_after: int, ready: str
) -> int:
    """Start the daemon and SIGKILL it, KILLS times; each kill comes at a random moment after the
    process logged ``ready`` (it is writing to its sinks by then). Returns the kills that came while
    the daemon was past that point."""
    big = threading.Thread(target=workload.big_transaction, args=(BIG,))
    while_writing = 0
    for kill in range(KILLS):
        seen = daemon.log.read_text().count(ready) if daemon.log.exists() else 0
        daemon.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and daemon.log.read_text().count(ready) <= seen:
            time.sleep(0.1)
        while_writing += daemon.log.read_text().count(ready) > seen
        time.sleep(rng.uniform(0.2, 3.0) if kill % 3 else rng.uniform(3.0, 8.0))
        daemon.kill()
        if kill == big_after:
            big.start()
    big.join()
    return while_writing


@pytest.fixture()
def sink_env(stack: StackConnections, tmp_path: Path) -> tuple[Workload, str, Path]:
    name = uuid.uuid4().hex[:8]
    seed = random.randrange(1 << 30)
    print(f"sink fault test seed {seed}")
    workload = Workload(stack, f"sinkf_{name}", seed)
    workload.create()
    return workload, f"sinkf-{name}", tmp_path


def test_sigkill_during_embedded_sink_writes(
    stack: StackConnections, sink_env: tuple[Workload, str, Path]
) -> None:
    workload, name, tmp = sink_env
    config = write_config(tmp, stack, name, workload.db, kafka=False)
    daemon = Daemon(config, tmp / "run.log", "run", stack.mariadb.password)
    daemon.catch_up()  # first start: records where the pipeline begins
    writer = threading.Thread(target=workload.run, args=(600,))
    writer.start()
    try:
        kills = kill_repeatedly(daemon, random.Random(workload.seed), workload, 2, "applying")
    finally:
        workload.stop.set()
        writer.join()
    assert workload.error is None, workload.error
    assert kills == KILLS
    daemon.catch_up()
    verify(config, workload)


def test_sigkill_during_kafka_sink_writes(
    stack: StackConnections, sink_env: tuple[Workload, str, Path]
) -> None:
    workload, name, tmp = sink_env
    config = write_config(tmp, stack, name, workload.db, kafka=True)
    capture = Daemon(config, tmp / "run.log", "run", stack.mariadb.password)
    sink = Daemon(config, tmp / "sink.log", "sink", stack.mariadb.password)
    capture.catch_up()
    running = capture.start()
    writer = threading.Thread(target=workload.run, args=(600,))
    writer.start()
    try:
        kills = kill_repeatedly(sink, random.Random(workload.seed), workload, 2, "assigned")
    finally:
        workload.stop.set()
        writer.join()
    running.send_signal(signal.SIGTERM)
    assert running.wait(120) == 0, capture.log.read_text()[-3000:]
    assert workload.error is None, workload.error
    assert kills == KILLS
    capture.catch_up()
    sink.catch_up()
    verify(config, workload)


# -- MariaDB as the `cdc sink` target ------------------------------------------------------------

AUDITED = ("accounts", "events")
MARIADB_KILLS = 3


def write_mariadb_config(tmp: Path, stack: StackConnections, name: str, db: str, group: str) -> Path:
    """One MariaDB serving sink from Kafka; copy_threshold_rows 50 puts the busier batches through
    the column-wise apply and the small ones through the per-change path."""
    m = stack.mariadb
    url = f"mysql+pymysql://{m.root_user}:{m.root_password}@{m.host}:{m.port}/{db}_sink?charset=utf8mb4"
    path = tmp / "cdc.yaml"
    path.write_text(
        f"name: {name}\n"
        f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
        f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {random.randint(8600, 8699)},"
        f" tables: ['{db}.*'], heartbeat_seconds: 1}}\n"
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}', partitions: 3,"
        f" flush_max_events: 5000, flush_max_ms: 100, consumer_group: {group}}}\n"
        "sinks:\n"
        f"  - {{type: sql, url: '{url}', copy_threshold_rows: 50}}\n"
        "batch: {max_events: 5000, max_ms: 200, idle_flush_seconds: 2}\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return path


def add_audit_triggers(stack: StackConnections, sink_db: str) -> None:
    """Every row the sink writes into (or deletes from) AUDITED is logged in the same transaction,
    so a rolled-back batch logs nothing and a batch applied twice logs its versions twice. An
    upsert of an unchanged row still fires AFTER UPDATE (checked on MariaDB 11)."""
    with stack.mariadb.connect_root(database=sink_db, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE audit (seq BIGINT AUTO_INCREMENT PRIMARY KEY, tbl VARCHAR(16) NOT NULL,"
            " id INT NOT NULL, ver INT NOT NULL, op CHAR(1) NOT NULL)"
        )
        for table in AUDITED:
            for event, image, op in (("INSERT", "NEW", "w"), ("UPDATE", "NEW", "w"), ("DELETE", "OLD", "d")):
                cur.execute(
                    f"CREATE TRIGGER audit_{table}_{event.lower()} AFTER {event} ON {table} FOR EACH ROW"
                    " INSERT INTO audit (tbl, id, ver, op)"
                    f" VALUES ('{table}', {image}.id, {image}.ver, '{op}')"
                )


def sink_tables_exist(stack: StackConnections, sink_db: str) -> bool:
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND table_name IN %s",
            (sink_db, AUDITED),
        )
        row = cur.fetchone()
    return row is not None and int(row[0]) == len(AUDITED)


def verify_audit(stack: StackConnections, sink_db: str, workload: Workload) -> int:
    """Per key, the states the sink wrote (a version written, or the row deleted) are a
    subsequence of the states the source committed, each at most once: nothing applied twice, none
    out of order (a batch collapses a key's changes, so states may be skipped). Returns the rows
    audited."""
    with stack.mariadb.connect_root(database=sink_db, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tbl, id, ver, op FROM audit ORDER BY seq"
        )  # seq: the order written (one sink at a time)
        logged = cur.fetchall()
    written: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for table, key, ver, op in logged:
        # a delete logs the version it removed, which need not be the last one the source wrote
        # (the last update and the delete can be collapsed into one batch): the deletion is the state
        written[(str(table), int(key))].append((str(op), 0 if op == "d" else int(ver)))
    for key, states in written.items():
        want = [("d", 0) if op == "d" else ("w", ver) for op, ver in workload.expected.get(key, [])]
        assert len(states) == len(set(states)), f"{key}: a change applied twice: {states} (source {want})"
        at = 0
        for state in states:
            assert state in want[at:], f"{key}: sink wrote {states}, source committed {want}"
            at = want.index(state, at) + 1
    return len(logged)


def test_sigkill_during_kafka_sink_writes_into_mariadb(stack: StackConnections, tmp_path: Path) -> None:
    """`cdc sink` into MariaDB SIGKILLed while it writes (column-wise and per change): each table
    ends equal to the source, and the audit triggers show no change applied twice. Each run joins a
    consumer group of its own, so that no restart waits out the killed member's session: the sink's
    offsets come from its positions table, never from the group."""
    name = f"sqliteapply_{uuid.uuid4().hex[:8]}"
    seed = random.randrange(1 << 30)
    print(f"mariadb sink fault test seed {seed}")
    rng = random.Random(seed)
    workload = Workload(stack, name, seed)
    workload.create()
    sink_db = f"{name}_sink"
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {sink_db}")
    config = write_mariadb_config(tmp_path, stack, name, name, f"{name}-0")
    capture = Daemon(config, tmp_path / "run.log", "run", stack.mariadb.password)
    sink = Daemon(config, tmp_path / "sink.log", "sink", stack.mariadb.password)
    big = threading.Thread(target=workload.big_transaction, args=(10_000,))
    try:
        running = capture.start()
        # the workload writes once the capture reads the binlog (its first run starts at the
        # source's position then)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "binlog dump started" not in capture.log.read_text():
            assert running.poll() is None, capture.log.read_text()[-3000:]
            time.sleep(0.1)
        writer = threading.Thread(target=workload.run, args=(120,))
        writer.start()
        # the first sink starts once both topics exist (else it finds them at its next metadata
        # refresh, 5 s later)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and capture.log.read_text().count("table topic:") < len(AUDITED):
            time.sleep(0.1)
        try:
            for kill in range(MARIADB_KILLS):
                write_mariadb_config(tmp_path, stack, name, name, f"{name}-{kill}")
                seen = sink.log.read_text().count("assigned") if sink.log.exists() else 0
                sink.start()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and sink.log.read_text().count("assigned") <= seen:
                    assert running.poll() is None, capture.log.read_text()[-3000:]
                    time.sleep(0.1)
                assert sink.log.read_text().count("assigned") > seen, sink.log.read_text()[-3000:]
                if kill == 0:  # the sink makes the tables with its first batch: audit from there on
                    while time.monotonic() < deadline and not sink_tables_exist(stack, sink_db):
                        time.sleep(0.1)
                    add_audit_triggers(stack, sink_db)
                time.sleep(rng.uniform(0.2, 1.0))
                sink.kill()
                if kill == 1:
                    big.start()
        finally:
            workload.stop.set()
            writer.join()
            if big.is_alive() or kill >= 1:
                big.join()
        running.send_signal(signal.SIGTERM)
        assert running.wait(120) == 0, capture.log.read_text()[-3000:]
        assert workload.error is None, workload.error
        capture.catch_up()
        write_mariadb_config(tmp_path, stack, name, name, f"{name}-end")
        sink.catch_up()
        verify(config, workload)
        assert verify_audit(stack, sink_db, workload) > 0
    finally:
        with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {sink_db}")
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
