"""Fault tests for `cdc run` against the real services.

A workload of known changes runs on several tables while the daemon is killed with SIGKILL at random
moments (including during a 1M-row transaction), or while MariaDB or the Kafka broker restarts. Then a
final `cdc run --until-caught-up` finishes, and a read_committed consumer checks that:
- every committed source change is in Kafka exactly once (unique positions; per key, the exact
  sequence of versions the workload committed), and in per-key order within its partition;
- replaying the topics gives exactly the source's current rows, compared row by row.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.devstack.settings import ServiceName, StackSettings
from cdc.devstack.stack import DevStack
from tests.support.kafka_replay import Consumed, consume_all, pipeline_topics, replay
from tests.support.workload import BIG_ROWS, Daemon, Workload

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # restarts the shared servers, purges binlogs


def write_config(tmp: Path, conns: StackConnections, pipeline: str, db: str, server_id: int) -> Path:
    m = conns.mariadb
    path = tmp / "cdc.yaml"
    path.write_text(
        f"name: {pipeline}\n"
        f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
        f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {server_id}, tables: ['{db}.*'],"
        " heartbeat_seconds: 1}\n"
        f"stream: {{type: kafka, bootstrap_servers: '{conns.kafka.bootstrap_servers}', partitions: 3,"
        " flush_max_events: 5000, flush_max_ms: 100}\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return path


def verify(conns: StackConnections, pipeline: str, workload: Workload) -> int:
    topics = [
        t
        for t in pipeline_topics(conns.kafka.bootstrap_servers, pipeline)
        if not t.endswith(("__checkpoints", "__schema", "__transactions"))
    ]
    records = [
        r for r in consume_all(conns.kafka.bootstrap_servers, topics, timeout_s=300) if r.value is not None
    ]
    positions = [r.position for r in records]
    assert len(positions) == len(set(positions)), "a change was written twice"
    seen: dict[tuple[str, int], list[Consumed]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.position):
        seen[(r.value["source"]["table"], int(r.key["id"]))].append(r)
    missing = [k for k in workload.expected if k not in seen]
    assert not missing, f"{len(missing)} keys never reached Kafka, e.g. {missing[:5]}"
    extra = [k for k in seen if k not in workload.expected]
    assert not extra, f"{len(extra)} keys in Kafka the workload never committed, e.g. {extra[:5]}"
    for key, want in workload.expected.items():
        got = seen[key]
        versions = [(r.value["op"], int((r.value["after"] or r.value["before"])["ver"])) for r in got]
        assert versions == want, f"{key}: expected {want}, Kafka has {versions}"
        offsets = [r.offset for r in got]
        assert offsets == sorted(offsets) and len({r.partition for r in got}) == 1, f"{key}: out of order"
    state = replay(records)
    source = workload.source_rows()
    for table, rows in source.items():
        assert state.get(table, {}) == rows, f"{table}: replayed topics differ from the source"
    return len(records)


@pytest.fixture()
def fault_env(stack: StackConnections, tmp_path: Path) -> tuple[Workload, Daemon, str]:
    name = uuid.uuid4().hex[:8]
    pipeline, db = f"fault-{name}", f"fault_{name}"
    seed = int(os.environ.get("HEADWATER_FAULT_SEED", random.randrange(1 << 30)))
    print(f"fault test seed {seed} (set HEADWATER_FAULT_SEED to replay)")
    workload = Workload(stack, db, seed)
    workload.create()
    config = write_config(tmp_path, stack, pipeline, db, random.randint(10_000, 4_000_000))
    daemon = Daemon(config, tmp_path / "daemon.log", password=stack.mariadb.password)
    return workload, daemon, pipeline


def test_sigkill_at_random_moments(stack: StackConnections, fault_env: tuple[Workload, Daemon, str]) -> None:
    workload, daemon, pipeline = fault_env
    rng = random.Random(workload.seed)
    daemon.catch_up()  # first start: the checkpoint is the source's position before the workload
    writer = threading.Thread(target=workload.run, args=(300,))
    writer.start()
    big = threading.Thread(target=workload.big_transaction)
    kills = 0
    try:
        while kills < 12:
            daemon.start()
            time.sleep(rng.uniform(0.3, 4.0) if kills % 4 else rng.uniform(4.0, 10.0))
            daemon.kill()
            kills += 1
            if kills == 3:
                big.start()
    finally:
        workload.stop.set()
        writer.join()
        if big.is_alive() or kills >= 3:
            big.join()
    assert workload.error is None, workload.error
    daemon.catch_up()
    count = verify(stack, pipeline, workload)
    assert count >= BIG_ROWS and workload.transactions > 50
    assert "resuming from checkpoint" in daemon.log.read_text()


def _restart(service: ServiceName) -> None:
    stack = DevStack(StackSettings(state_dir=default_state_dir(), services=(service,)))
    stack.down()
    time.sleep(1.0)
    stack.up()


@pytest.mark.parametrize("service", [ServiceName.MARIADB, ServiceName.KAFKA], ids=lambda s: s.value)
def test_service_restart_mid_stream(
    stack: StackConnections, fault_env: tuple[Workload, Daemon, str], service: ServiceName
) -> None:
    workload, daemon, pipeline = fault_env
    daemon.catch_up()
    writer = threading.Thread(target=workload.run, args=(60,))
    proc = daemon.start()
    writer.start()
    try:
        time.sleep(4)
        _restart(service)
        time.sleep(6)
        assert proc.poll() is None, (
            "the daemon exited when a service restarted:\n" + daemon.log.read_text()[-3000:]
        )
    finally:
        workload.stop.set()
        writer.join()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, daemon.log.read_text()[-3000:]
    assert workload.error is None, workload.error
    daemon.catch_up()
    verify(stack, pipeline, workload)
    if service is ServiceName.MARIADB:
        # the binlog connection drops: the daemon resumes from its checkpoint. (A broker restart is
        # usually ridden out inside librdkafka, which reconnects, so no retry need show in the log.)
        assert "retrying from the last checkpoint" in daemon.log.read_text()


def test_silent_source_is_detected_and_reopened(
    stack: StackConnections, fault_env: tuple[Workload, Daemon, str]
) -> None:
    """A frozen server (SIGSTOP) sends no heartbeat: the daemon notices, reconnects, loses nothing."""
    workload, daemon, pipeline = fault_env
    daemon.catch_up()
    mariadb = DevStack(StackSettings(state_dir=default_state_dir(), services=(ServiceName.MARIADB,)))
    pid = mariadb.status()[0].pid
    assert pid is not None
    writer = threading.Thread(target=workload.run, args=(30,))
    proc = daemon.start()
    writer.start()
    try:
        time.sleep(3)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(6)  # heartbeat_seconds is 1 in the test config: silence for 3 periods is noticed
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(3)
    workload.stop.set()
    writer.join()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, daemon.log.read_text()[-3000:]
    assert workload.error is None, workload.error
    daemon.catch_up()
    verify(stack, pipeline, workload)
    assert "retrying from the last checkpoint" in daemon.log.read_text()


def test_purged_binlog_stops_with_position_and_recovery(
    stack: StackConnections, fault_env: tuple[Workload, Daemon, str]
) -> None:
    workload, daemon, _pipeline = fault_env
    daemon.catch_up()  # the checkpoint now sits in the current binlog file
    m = stack.mariadb
    with (
        m.connect_root(autocommit=True) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(f"INSERT INTO {workload.db}.accounts VALUES (1, 1, 1.00, 'x')")
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW MASTER STATUS")
        current = cur.fetchone()[0]
        checkpoint_file = None
        for _ in range(20):
            cur.execute(f"PURGE BINARY LOGS TO '{current}'")
            cur.execute("SHOW BINARY LOGS")
            files = [row[0] for row in cur.fetchall()]
            if files == [current]:
                break
            checkpoint_file = files[0]
            # A log a replica is reading is not purged: drop the other dump connections (replicas
            # reconnect by themselves) and try again.
            cur.execute("SELECT id FROM information_schema.processlist WHERE command LIKE 'Binlog Dump%'")
            for (thread,) in cur.fetchall():
                cur.execute(f"KILL {int(thread)}")
            time.sleep(0.5)
        else:
            raise AssertionError(f"could not purge {checkpoint_file}")
    proc = daemon.start("--until-caught-up")
    assert proc.wait(60) == 2
    log = daemon.log.read_text()
    assert "has been purged" in log and "cdc bootstrap" in log
    assert "mdb1:" in log  # the checkpoint's position is named
