"""A primary and its GTID replica (private MariaDB servers), a workload that records every change
it commits, and a pipeline config that can be pointed at either server: the failover tests' rig.

The workload writes ``t (id, ver)``: inserts take fresh ids (ver 1), updates raise ``ver`` by one,
deletes remove a row; so each change is named by (op, id, ver) and the history must hold each one
exactly once, in the order the workload made them per key.
"""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from cdc.config import load_config
from cdc.config.models import PipelineConfig, SqlSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.private_mariadb import PrivateMariaDb
from cdc.devstack.process import port_open
from sinks.iceberg import read_history
from sinks.sql import create_sql_sink
from tests.support.workload import Daemon

Change = tuple[str, int, int]  # (op, id, ver)


_claimed_base: int | None = None
_claim_fd: int | None = None


def _port_base() -> int:
    """This test process's pair of ports in the failover range (3340-3359), claimed for its life.

    Test files run in parallel workers: two failover tests that drew the same ports at random
    collided (one's stop found the other's server still listening, the next start found the port
    taken). Each process takes a pair nobody has locked (an flock on a file per pair, released when
    the process exits) and keeps it: its own tests run one after another.
    """
    global _claimed_base, _claim_fd
    if _claimed_base is not None:
        return _claimed_base
    bases = [3340 + 2 * i for i in range(10)]
    random.shuffle(bases)
    for base in bases:
        fd = os.open(f"/tmp/headwater-failover-ports-{base}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if port_open(base) or port_open(base + 1):  # something outside the tests holds them
            os.close(fd)
            continue
        _claimed_base, _claim_fd = base, fd
        return base
    raise RuntimeError("every port pair of the failover range (3340-3359) is in use")


def server_pair(tmp: Path) -> tuple[PrivateMariaDb, PrivateMariaDb]:
    """Two private servers on this process's ports of the failover range (3340-3359); the replica's
    server_id is drawn from 4300-4349 (a replica must have its own; the pipeline's reader takes
    4350-4399)."""
    base = _port_base()
    replica_id = random.randint(4300, 4349)  # the pipelines take 4350-4399
    return (
        PrivateMariaDb(tmp / "primary", port=base),
        PrivateMariaDb(tmp / "replica", [f"--server-id={replica_id}"], port=base + 1),
    )


@dataclass
class Workload:
    """Random small transactions (1-4 changes each) on one server, on a thread."""

    server: PrivateMariaDb
    db: str
    changes: list[Change] = field(default_factory=list)
    next_id: int = 1
    alive: dict[int, int] = field(default_factory=dict)  # id -> ver
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, server: PrivateMariaDb | None = None) -> None:
        if server is not None:
            self.server = server
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        assert self.error is None, self.error

    def _run(self) -> None:
        rng = random.Random()
        try:
            with self.server.connection().connect_root(database=self.db, autocommit=False) as conn:
                while not self._stop.is_set():
                    self._transaction(conn, rng)
                    time.sleep(rng.uniform(0.0, 0.01))
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def _transaction(self, conn: pymysql.Connection, rng: random.Random) -> None:  # type: ignore[type-arg]
        done: list[Change] = []
        alive = dict(self.alive)
        next_id = self.next_id
        with conn.cursor() as cur:
            for _ in range(rng.choice((1, 1, 2, 4))):
                kind = rng.random()
                if kind < 0.45 or len(alive) < 5:
                    cur.execute("INSERT INTO t (id, ver) VALUES (%s, 1)", (next_id,))
                    done.append(("c", next_id, 1))
                    alive[next_id] = 1
                    next_id += 1
                elif kind < 0.85:
                    key = rng.choice(sorted(alive))
                    alive[key] += 1
                    cur.execute("UPDATE t SET ver = %s WHERE id = %s", (alive[key], key))
                    done.append(("u", key, alive[key]))
                else:
                    key = rng.choice(sorted(alive))
                    cur.execute("DELETE FROM t WHERE id = %s", (key,))
                    done.append(("d", key, alive.pop(key)))
        conn.commit()
        self.changes.extend(done)
        self.alive, self.next_id = alive, next_id


@dataclass
class FailoverRig:
    tmp: Path
    primary: PrivateMariaDb
    replica: PrivateMariaDb
    db: str
    name: str
    server_id: int
    kafka: str | None  # bootstrap servers (Kafka mode) or None (embedded)
    config: Path = field(init=False)
    daemons: list[Daemon] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config = self.tmp / "cdc.yaml"

    def __enter__(self) -> FailoverRig:
        return self

    def __exit__(self, *exc: object) -> None:
        """Whatever happened, no daemon of the test outlives it."""
        for daemon in self.daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(30)

    @classmethod
    def create(
        cls, tmp: Path, primary: PrivateMariaDb, replica: PrivateMariaDb, kafka: str | None
    ) -> FailoverRig:
        suffix = uuid.uuid4().hex[:8]
        rig = cls(
            tmp,
            primary,
            replica,
            f"failover_{suffix}",
            f"failover-{suffix}",
            random.randint(4350, 4399),
            kafka,
        )
        replica.replicate_from(primary)
        with primary.connection().connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {rig.db}")
            cur.execute(f"CREATE TABLE {rig.db}.t (id INT PRIMARY KEY, ver INT NOT NULL)")
        rig.point_at(primary)
        return rig

    @property
    def password(self) -> str:
        return self.primary.connection().password

    def point_at(self, server: PrivateMariaDb) -> None:
        c = server.connection()
        stream = (
            f"stream: {{type: kafka, bootstrap_servers: '{self.kafka}', partitions: 3, flush_max_ms: 100}}\n"
            if self.kafka
            else ""
        )
        self.config.write_text(
            f"name: {self.name}\n"
            f"source: {{type: mariadb, host: {c.host}, port: {c.port}, user: {c.user},"
            f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {self.server_id},"
            f" tables: ['{self.db}.*'], heartbeat_seconds: 1}}\n"
            f"{stream}"
            "sinks:\n"
            f"  - {{type: sql, url: 'sqlite:///{self.tmp / 'serving.db'}'}}\n"
            f"  - {{type: iceberg, namespace: {self.db}, commit_rows: 1000, commit_seconds: 1,"
            f" catalog: {{type: sql, uri: 'sqlite:///{self.tmp / 'catalog.db'}',"
            f" warehouse: '{(self.tmp / 'wh').as_uri()}'}}}}\n"
            # a second history that commits far more often: after a SIGKILL it is ahead of the
            # first, so the resume skips, by GTID, what one history holds and the other lacks
            f"  - {{type: iceberg, namespace: {self.db}_eager, commit_rows: 50, commit_seconds: 0.2,"
            f" catalog: {{type: sql, uri: 'sqlite:///{self.tmp / 'catalog.db'}',"
            f" warehouse: '{(self.tmp / 'wh').as_uri()}'}}}}\n"
            "batch: {max_events: 200, max_ms: 100, idle_flush_seconds: 1}\n"
            f"state_dir: {self.tmp / 'state'}\n"
        )

    def loaded(self) -> PipelineConfig:
        return load_config(self.config, {"CDC_SOURCE_PASSWORD": self.password})

    def daemon(self, command: str, log_name: str) -> Daemon:
        daemon = Daemon(self.config, self.tmp / log_name, command, self.password)
        self.daemons.append(daemon)
        return daemon

    def source_rows(self, server: PrivateMariaDb) -> dict[int, int]:
        with server.connection().connect_root(database=self.db) as conn, conn.cursor() as cur:
            cur.execute("SELECT id, ver FROM t")
            return {int(i): int(v) for i, v in cur.fetchall()}

    def serving_rows(self) -> dict[int, int]:
        config = next(s for s in self.loaded().sinks if isinstance(s, SqlSinkConfig))
        sink = create_sql_sink(config, self.name)
        sink.open()
        try:
            return {int(r["id"]): int(r["ver"]) for r in sink.read_rows(TableRef(self.db, "t"))}  # type: ignore[call-overload]
        finally:
            sink.close()

    def history(self, sink: int = 1) -> list[tuple[str, Change]]:
        """(position, (op, id, ver)) of each history row of the config's ``sink``, in position order."""
        iceberg = self.loaded().sinks[sink]
        history = read_history(iceberg.catalog, iceberg.namespace, TableRef(self.db, "t"))  # type: ignore[union-attr]
        rows = history.rows.to_pylist()
        return [(str(r["_position"]), (str(r["_op"]), int(r["id"]), int(r["ver"]))) for r in rows]


def check_exactly_once(history: list[tuple[str, Change]], expected: list[Change]) -> None:
    """Every change exactly once, and per key in the order the workload made them."""
    got = Counter(change for _, change in history)
    want = Counter(expected)
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"history: {sum(missing.values())} changes missing (e.g. {sorted(missing)[:3]}), "
        f"{sum(extra.values())} too many (e.g. {sorted(extra)[:3]})"
    )
    per_key: dict[int, list[Change]] = {}
    for change in expected:
        per_key.setdefault(change[1], []).append(change)
    seen: dict[int, list[Change]] = {}
    for _, change in history:
        seen.setdefault(change[1], []).append(change)
    bad = [k for k in per_key if seen.get(k) != per_key[k]]
    assert not bad, f"key {bad[0]}: history order {seen.get(bad[0])}, source order {per_key[bad[0]]}"
