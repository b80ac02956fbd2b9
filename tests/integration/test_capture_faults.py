"""Fault tests for `cdc run` against the real services.

A workload of known changes runs on several tables while the daemon is killed with SIGKILL at random
moments (including during a 1M-row transaction), or while MariaDB or the Kafka broker restarts. Then a
final `cdc run --until-caught-up` finishes, and a read_committed consumer checks that:
- every committed source change is in Kafka exactly once (unique positions; per key, the exact
  sequence of versions the workload committed), and in per-key order within its partition;
- replaying the topics gives exactly the source's current rows, compared row by row.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.devstack.settings import ServiceName, StackSettings
from cdc.devstack.stack import DevStack
from tests.support.kafka_replay import Consumed, consume_all, pipeline_topics, replay

pytestmark = pytest.mark.slow

BIG_ROWS = 1_000_000


@dataclass
class Workload:
    """Writes known changes; remembers, per key, the (op, ver) sequence of committed transactions."""

    conns: StackConnections
    db: str
    seed: int
    expected: dict[tuple[str, int], list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    stop: threading.Event = field(default_factory=threading.Event)
    transactions: int = 0
    error: BaseException | None = None

    def connect(self) -> pymysql.Connection:  # type: ignore[type-arg]
        m = self.conns.mariadb
        return pymysql.connect(
            host=m.host,
            port=m.port,
            user=m.root_user,
            password=m.root_password,
            database=self.db,
            charset="utf8mb4",
            autocommit=False,
        )

    def create(self) -> None:
        m = self.conns.mariadb
        with (
            pymysql.connect(
                host=m.host, port=m.port, user=m.root_user, password=m.root_password, autocommit=True
            ) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(f"DROP DATABASE IF EXISTS {self.db}")
            cur.execute(f"CREATE DATABASE {self.db}")
            cur.execute(
                f"CREATE TABLE {self.db}.accounts (id INT PRIMARY KEY, ver INT NOT NULL, "
                "balance DECIMAL(12,2) NOT NULL, note VARCHAR(50) CHARACTER SET utf8mb4)"
            )
            cur.execute(
                f"CREATE TABLE {self.db}.events (id INT PRIMARY KEY, ver INT NOT NULL, "
                "account INT NOT NULL, payload TEXT CHARACTER SET utf8mb4)"
            )
            cur.execute(f"CREATE TABLE {self.db}.big (id INT PRIMARY KEY, ver INT NOT NULL, v VARCHAR(20))")

    def run(self, seconds: float) -> None:
        rng = random.Random(self.seed)
        live: list[int] = []
        next_account = 1
        next_event = 1
        versions: dict[int, int] = {}
        deadline = time.monotonic() + seconds
        conn = None
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                if conn is None:
                    try:
                        conn = self.connect()
                    except pymysql.OperationalError:
                        time.sleep(0.2)  # the source is restarting
                        continue
                changes: list[tuple[str, int, str, int]] = []
                try:
                    with conn.cursor() as cur:
                        kind = rng.random()
                        if kind < 0.35 or len(live) < 5:
                            rows = [
                                (next_account + i, 1, f"{rng.randint(0, 10_000)}.25", "n\N{SNOWMAN}")
                                for i in range(rng.randint(1, 20))
                            ]
                            cur.executemany("INSERT INTO accounts VALUES (%s, %s, %s, %s)", rows)
                            changes += [("accounts", r[0], "c", 1) for r in rows]
                        elif kind < 0.75:
                            for acc in rng.sample(live, min(len(live), rng.randint(1, 5))):
                                ver = versions[acc] + 1
                                cur.execute(
                                    "UPDATE accounts SET ver = %s, balance = balance + 1 WHERE id = %s",
                                    (ver, acc),
                                )
                                cur.execute(
                                    "INSERT INTO events VALUES (%s, 1, %s, %s)",
                                    (next_event, acc, "x" * rng.randint(0, 300)),
                                )
                                changes += [("accounts", acc, "u", ver), ("events", next_event, "c", 1)]
                                next_event += 1
                        elif kind < 0.9:
                            acc = rng.choice(live)
                            cur.execute("DELETE FROM accounts WHERE id = %s", (acc,))
                            changes.append(("accounts", acc, "d", versions[acc]))
                        else:
                            cur.execute("UPDATE accounts SET ver = ver + 1000")
                            conn.rollback()  # rolled back: emits nothing
                            continue
                    conn.commit()
                except pymysql.OperationalError:
                    conn = None  # lost mid-transaction: unknown outcome is avoided by re-reading below
                    if changes:
                        self._reconcile_unknown(changes)
                        for table, key, op, ver in changes:
                            if self._committed(table, key, op, ver):
                                self._record(table, key, op, ver, live, versions)
                        next_account = max(
                            [next_account, *[k + 1 for t, k, o, _ in changes if t == "accounts"]]
                        )
                        next_event = max([next_event, *[k + 1 for t, k, _, _ in changes if t == "events"]])
                    continue
                for table, key, op, ver in changes:
                    self._record(table, key, op, ver, live, versions)
                next_account = max(
                    [next_account, *[k + 1 for t, k, o, _ in changes if t == "accounts" and o == "c"]]
                )
                self.transactions += 1
                time.sleep(rng.random() * 0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc
        finally:
            if conn is not None:
                conn.close()

    def _record(
        self, table: str, key: int, op: str, ver: int, live: list[int], versions: dict[int, int]
    ) -> None:
        self.expected[(table, key)].append((op, ver))
        if table == "accounts":
            if op == "c":
                live.append(key)
                versions[key] = ver
            elif op == "u":
                versions[key] = ver
            else:
                live.remove(key)
                del versions[key]

    _state: dict[tuple[str, int], int | None] = field(default_factory=dict)

    def _reconcile_unknown(self, changes: list[tuple[str, int, str, int]]) -> None:
        """After a lost connection the commit may or may not have happened: ask the source."""
        while True:
            try:
                with self.connect() as conn, conn.cursor() as cur:
                    for table, key, _, _ in changes:
                        cur.execute(f"SELECT ver FROM {table} WHERE id = %s", (key,))
                        row = cur.fetchone()
                        self._state[(table, key)] = None if row is None else int(row[0])
                return
            except pymysql.OperationalError:
                time.sleep(0.5)

    def _committed(self, table: str, key: int, op: str, ver: int) -> bool:
        now = self._state.get((table, key))
        return now is None if op == "d" else now == ver

    def big_transaction(self) -> None:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO big SELECT seq, 1, CONCAT('row-', seq) FROM seq_1_to_{BIG_ROWS}")
            conn.commit()
        for key in range(1, BIG_ROWS + 1):
            self.expected[("big", key)].append(("c", 1))

    def source_rows(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        with self.connect() as conn, conn.cursor(pymysql.cursors.SSDictCursor) as cur:
            for table in ("accounts", "events", "big"):
                cur.execute(f"SELECT * FROM {table}")
                rows = out.setdefault(f"{self.db}.{table}", {})
                for row in cur:
                    encoded = {k: (str(v) if k == "balance" else v) for k, v in row.items()}
                    rows[json.dumps({"id": row["id"]}, sort_keys=True)] = encoded
        return out


class Daemon:
    """`cdc run` as a real process, with its log in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        return {**os.environ, "CDC_SOURCE_PASSWORD": self._password}

    _password = ""

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cdc.cli", "run", "-c", str(self.config), *extra],
                stdout=log,
                stderr=log,
                env=self._env(),
            )
        return self.proc

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def catch_up(self, timeout: float = 600) -> None:
        proc = self.start("--until-caught-up")
        assert proc.wait(timeout) == 0, self.log.read_text()[-3000:]


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
    daemon = Daemon(config, tmp_path / "daemon.log")
    daemon._password = stack.mariadb.password
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
        pymysql.connect(
            host=m.host, port=m.port, user=m.root_user, password=m.root_password, autocommit=True
        ) as conn,
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
