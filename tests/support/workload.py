"""A known workload on the dev stack's MariaDB, and `cdc` daemons as real processes, for fault tests.

The workload remembers, per key, the exact (op, version) sequence of the transactions it committed,
so a test can check that every change arrived exactly once and in order.
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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from cdc.devstack.connections import StackConnections

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
        return m.connect_root(database=self.db, charset="utf8mb4", autocommit=False)

    def create(self) -> None:
        m = self.conns.mariadb
        with (
            m.connect_root(autocommit=True) as conn,
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

    def big_transaction(self, rows: int = BIG_ROWS) -> None:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO big SELECT seq, 1, CONCAT('row-', seq) FROM seq_1_to_{rows}")
            conn.commit()
        for key in range(1, rows + 1):
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
    """`cdc run` (or `cdc sink`) as a real process, with its log in a file."""

    def __init__(self, config: Path, log: Path, command: str = "run", password: str = "") -> None:
        self.config = config
        self.log = log
        self.command = command
        self._password = password
        self.proc: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        return {**os.environ, "CDC_SOURCE_PASSWORD": self._password}

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cdc.cli", self.command, "-c", str(self.config), *extra],
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
