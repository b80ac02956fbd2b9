"""`cdc bootstrap` handed over to the stream, under a concurrent workload (issue 9).

The source tables already hold rows (written before the pipeline existed) and a workload keeps
inserting, updating and deleting rows of the same tables while the bootstrap runs, in chunks small
enough that the stream and the chunks interleave many times. Afterwards:
- every serving table equals the source, row by row;
- the Iceberg history holds no position twice, each key's changes after its snapshot row in the
  order the workload committed them, and its last entry equal to the source row;
- in Kafka mode, the topics replayed give the source's rows.
"""

from __future__ import annotations

import os
import random
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
import pymysql.cursors
import pytest

from cdc.config import load_config
from cdc.config.models import IcebergSinkConfig, SqlSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from sinks.iceberg import read_history
from sinks.iceberg.history_schema import to_source_values
from sinks.sql import create_sql_sink
from tests.support.workload import Daemon

pytestmark = pytest.mark.slow

TABLES = ("accounts", "events", "big")
PREFILLED = 3_000


def write_config(
    tmp: Path, stack: StackConnections, name: str, db: str, *, kafka: bool, mode: str, chunk_rows: int = 400
) -> Path:
    m = stack.mariadb
    stream = (
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}', partitions: 3,"
        " flush_max_events: 2000, flush_max_ms: 100}\n"
        if kafka
        else ""
    )
    path = tmp / "cdc.yaml"
    path.write_text(
        f"name: {name}\n"
        f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
        f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {random.randint(5_000_000, 5_900_000)},"
        f" tables: ['{db}.*'], heartbeat_seconds: 1}}\n"
        f"{stream}"
        "sinks:\n"
        f"  - {{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}\n"
        f"  - {{type: iceberg, namespace: {db}, commit_rows: 5000, commit_seconds: 1,"
        f" catalog: {{type: sql, uri: 'sqlite:///{tmp / 'catalog.db'}',"
        f" warehouse: '{(tmp / 'wh').as_uri()}'}}}}\n"
        "batch: {max_events: 2000, max_ms: 100, idle_flush_seconds: 1}\n"
        f"bootstrap: {{mode: {mode}, min_chunk_rows: 50, max_chunk_rows: {chunk_rows},"
        " chunk_seconds: 0.02}\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return path


@dataclass
class ItemsWorkload:
    """Inserts, updates and deletes over a fixed key space, so that the rows a bootstrap reads are
    the ones the workload changes; remembers each key's committed (op, ver) sequence."""

    conns: StackConnections
    db: str
    seed: int
    expected: dict[tuple[str, int], list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    versions: dict[int, int] = field(default_factory=dict)
    error: BaseException | None = None
    transactions: int = 0

    def connect(self) -> pymysql.Connection:  # type: ignore[type-arg]
        return self.conns.mariadb.connect_root(database=self.db, charset="utf8mb4", autocommit=False)

    def create(self) -> None:
        with self.conns.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.db}")
            for table in TABLES:
                cur.execute(
                    f"CREATE TABLE {self.db}.{table} (id INT PRIMARY KEY, ver INT NOT NULL, "
                    "v VARCHAR(40) CHARACTER SET utf8mb4)"
                )
        with self.connect() as conn, conn.cursor() as cur:
            for table in TABLES:
                cur.execute(
                    f"INSERT INTO {table} SELECT seq, 1, CONCAT('row-', seq) FROM seq_1_to_{PREFILLED}"
                )
            conn.commit()
        for key in range(1, PREFILLED + 1):
            self.versions[key] = 1  # the prefilled rows are not changes the pipeline will see

    def run(self, seconds: float) -> None:
        rng = random.Random(self.seed)
        versions = {(t, k): v for t in TABLES for k, v in self.versions.items()}
        deadline = time.monotonic() + seconds
        try:
            with self.connect() as conn:
                while time.monotonic() < deadline:
                    changes: list[tuple[str, int, str, int]] = []
                    with conn.cursor() as cur:
                        for _ in range(rng.randint(1, 6)):
                            table = rng.choice(TABLES)
                            key = rng.randint(1, PREFILLED + 2_000)
                            if any(c[0] == table and c[1] == key for c in changes):
                                continue
                            ver = versions.get((table, key))
                            if ver is None:
                                cur.execute(f"INSERT INTO {table} VALUES (%s, 1, 'new')", (key,))
                                changes.append((table, key, "c", 1))
                            elif rng.random() < 0.8:
                                cur.execute(
                                    f"UPDATE {table} SET ver = %s, v = 'upd' WHERE id = %s", (ver + 1, key)
                                )
                                changes.append((table, key, "u", ver + 1))
                            else:
                                cur.execute(f"DELETE FROM {table} WHERE id = %s", (key,))
                                changes.append((table, key, "d", ver))
                    conn.commit()
                    self.transactions += 1
                    for table, key, op, ver in changes:
                        self.expected[(table, key)].append((op, ver))
                        if op == "d":
                            del versions[(table, key)]
                        else:
                            versions[(table, key)] = ver
                    time.sleep(rng.random() * 0.004)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc


def source_rows(workload: ItemsWorkload, table: str) -> dict[int, dict[str, Any]]:
    with workload.connect() as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM {table}")
        return {int(row["id"]): dict(row) for row in cur.fetchall()}


def verify_serving(config_path: Path, workload: ItemsWorkload) -> None:
    config = load_config(config_path, {"CDC_SOURCE_PASSWORD": workload.conns.mariadb.password})
    for sink_config in config.sinks:
        if not isinstance(sink_config, SqlSinkConfig):
            continue
        sink = create_sql_sink(sink_config, config.name)
        sink.open()
        try:
            for table in TABLES:
                got = {int(r["id"]): r for r in sink.read_rows(TableRef(workload.db, table))}  # type: ignore[call-overload]
                want = source_rows(workload, table)
                assert got.keys() == want.keys(), (
                    f"{table}: missing {sorted(want.keys() - got.keys())[:5]}, "
                    f"extra {sorted(got.keys() - want.keys())[:5]}"
                )
                bad = [k for k in want if got[k] != want[k]]
                assert not bad, f"{table}: rows differ, e.g. {want[bad[0]]} vs {got[bad[0]]}"
        finally:
            sink.close()


def verify_history(config_path: Path, workload: ItemsWorkload) -> None:
    config = load_config(config_path, {"CDC_SOURCE_PASSWORD": workload.conns.mariadb.password})
    iceberg = next(s for s in config.sinks if isinstance(s, IcebergSinkConfig))
    for table in TABLES:
        found = read_history(iceberg.catalog, iceberg.namespace, TableRef(workload.db, table))
        rows = to_source_values(found.rows, found.column_kinds)
        positions = [str(r["_position"]) for r in rows]
        assert len(positions) == len(set(positions)), f"{table}: a change is in the history twice"
        per_key: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in sorted(rows, key=lambda r: str(r["_position"])):
            per_key[int(row["id"])].append(row)
        want = source_rows(workload, table)
        for key, entries in per_key.items():
            ops = [str(e["_op"]) for e in entries]
            assert ops.count("r") <= 1, f"{table} {key}: read twice by the bootstrap: {ops}"
            last = entries[-1]
            if last["_op"] == "d":
                assert key not in want, f"{table} {key}: deleted in the history, present in the source"
            else:
                assert key in want, f"{table} {key}: present in the history ({ops}), deleted in the source"
                assert int(last["ver"]) == int(want[key]["ver"]), f"{table} {key}: {ops} ends at another ver"
            # the stream's changes after the snapshot row follow the workload's order exactly
            after = [(str(e["_op"]), int(e["ver"])) for e in entries if e["_op"] != "r"]
            expected = workload.expected.get((table, key), [])
            assert after == expected[len(expected) - len(after) :], f"{table} {key}: {after} vs {expected}"
        missing = set(want) - set(per_key)
        assert not missing, f"{table}: rows the history never got: {sorted(missing)[:5]}"


def bootstrap(config: Path, password: str, *tables: str) -> subprocess.CompletedProcess[str]:
    """`cdc bootstrap -c CONFIG ...` (table patterns and options)."""
    return subprocess.run(
        [sys.executable, "-m", "cdc.cli", "bootstrap", "-c", str(config), *tables],
        env={**os.environ, "CDC_SOURCE_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("kafka", [False, True], ids=["embedded", "kafka"])
def test_direct_bootstrap_under_writes_hands_over_exactly(
    stack: StackConnections, tmp_path: Path, kafka: bool
) -> None:
    suffix = uuid.uuid4().hex[:8]
    workload = ItemsWorkload(stack, f"boot_direct_{suffix}", random.randrange(1 << 30))
    workload.create()
    config = write_config(tmp_path, stack, f"boot-{suffix}", workload.db, kafka=kafka, mode="never")
    daemon = Daemon(config, tmp_path / "run.log", "run", stack.mariadb.password)
    daemon.catch_up()  # the first start: the pipeline begins here, with none of the rows above
    writer = threading.Thread(target=workload.run, args=(12,))
    writer.start()
    try:
        done = bootstrap(config, stack.mariadb.password, f"{workload.db}.*")
    finally:
        writer.join()
    assert workload.error is None, workload.error
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert f"{workload.db}.big: " in done.stderr, done.stderr[-2000:]
    (tmp_path / "bootstrap.log").write_text(done.stdout + done.stderr)
    daemon.catch_up()
    if kafka:
        Daemon(config, tmp_path / "sink.log", "sink", stack.mariadb.password).catch_up()
    verify_serving(config, workload)
    verify_history(config, workload)
