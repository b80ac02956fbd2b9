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
