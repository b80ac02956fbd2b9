"""Kafka mode, a quiet table: its copy's applied position stands still while another table of the
source database, not captured, is busy (the source's binlog moves on; only idle checkpoints go to
Kafka). Drift injected into the quiet copy is reported
as DRIFT, after the re-checks, not as BEHIND: the copy has consumed everything its table's topic
holds up to the capture's checkpoint, which idle checkpoints and heartbeats keep moving."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka.admin import AdminClient

from cdc.devstack.connections import StackConnections
from tests.reconciler.recon_pipeline import PASSWORD_ENV, SERVER_IDS, wait_until


@dataclass
class KafkaQuiet:
    stack: StackConnections
    tmp: Path
    db: str
    config: Path
    procs: list[subprocess.Popen[bytes]]

    def env(self) -> dict[str, str]:
        return {**os.environ, PASSWORD_ENV: self.stack.mariadb.password}

    def start(self, command: str) -> None:
        log = (self.tmp / f"{command}.log").open("ab")
        line = [sys.executable, "-m", "cdc.cli", command, "-c", str(self.config)]
        self.procs.append(subprocess.Popen(line, env=self.env(), stdout=log, stderr=subprocess.STDOUT))

    def execute(self, *statements: str) -> None:
        with self.stack.mariadb.connect_root(database=self.db, autocommit=True) as conn, conn.cursor() as cur:
            for s in statements:
                cur.execute(s)


@pytest.fixture
def kafka_quiet(stack: StackConnections, tmp_path: Path) -> Iterator[KafkaQuiet]:
    suffix = uuid.uuid4().hex[:8]
    db = f"recon2_{suffix}"
    m = stack.mariadb
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
    config = tmp_path / "cdc.yaml"
    config.write_text(
        f"name: recon2-{suffix}\n"
        f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
        f" password: '${{{PASSWORD_ENV}}}', server_id: {random.randint(*SERVER_IDS)},"
        f" tables: ['{db}.quiet'], heartbeat_seconds: 1}}\n"
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}', partitions: 2,"
        " flush_max_ms: 100}\n"
        "sinks:\n"
        f"  - {{type: sql, name: lite, url: 'sqlite:///{tmp_path / 'serving.db'}'}}\n"
        "batch: {max_events: 200, max_ms: 100, idle_flush_seconds: 1}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    p = KafkaQuiet(stack, tmp_path, db, config, [])
    try:
        p.execute(
            "CREATE TABLE quiet (id INT PRIMARY KEY, v INT NOT NULL)",
            "CREATE TABLE busy (id INT PRIMARY KEY, ver INT NOT NULL)",
        )
        p.start("run")
        log = tmp_path / "run.log"
        # the pipeline's start: changes after the binlog dump began are captured
        wait_until(lambda: log.exists() and "binlog dump started" in log.read_text(), 60)
        p.execute(
            "INSERT INTO quiet SELECT seq, seq * 10 FROM seq_1_to_20",
            "INSERT INTO busy SELECT seq, 0 FROM seq_1_to_200",
        )
        topic = f"recon2-{suffix}.{db}.quiet"
        admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers})
        # the sink subscribes by pattern: the topic must exist when it starts
        wait_until(lambda: topic in admin.list_topics(timeout=5).topics, 60)
        p.start("sink")
        lite = sa.create_engine(f"sqlite:///{tmp_path / 'serving.db'}")

        def copied() -> bool:
            try:
                with lite.connect() as conn:
                    return conn.execute(sa.text("SELECT COUNT(*) FROM quiet")).scalar() == 20
            except sa.exc.OperationalError:
                return False  # not created yet

        wait_until(copied, 90)
        lite.dispose()
        yield p
    finally:
        for proc in p.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in p.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")


def test_quiet_table_drift_is_drift_not_behind(kafka_quiet: KafkaQuiet) -> None:
    from cdc.config import load_config
    from cdc.reconcile_pipeline import reconcile_pipeline
    from reconciler.report import summary

    lite = sa.create_engine(f"sqlite:///{kafka_quiet.tmp / 'serving.db'}")
    with lite.begin() as conn:
        conn.execute(sa.text("UPDATE quiet SET v = -1 WHERE id = 3"))
    lite.dispose()
    stop = threading.Event()

    def busy() -> None:
        source = kafka_quiet.stack.mariadb.connect_root(database=kafka_quiet.db, autocommit=True)
        with source as conn, conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("UPDATE busy SET ver = ver + 1 WHERE id = %s", (random.randint(1, 200),))
                time.sleep(0.01)

    writer = threading.Thread(target=busy, daemon=True)
    writer.start()
    try:
        config = load_config(kafka_quiet.config, kafka_quiet.env())
        report = reconcile_pipeline(config, (f"{kafka_quiet.db}.quiet",), "lite", 6.0)
    finally:
        stop.set()
        writer.join(10)
    (result,) = report.results
    assert result.verdict.value == "drift", summary(report)  # before: BEHIND, "is the pipeline running?"
    assert [(d.kind.value, d.key, d.columns) for d in result.drift] == [("different", ("3",), ("v",))]
