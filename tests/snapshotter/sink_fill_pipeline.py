"""A pipeline on the dev stack for the `cdc bootstrap --sink` tests: a source database of its own
(``sinkfill_<hex>``), a workload of inserts, updates and deletes over a fixed key space, sinks added
to the config later, and readers of every sink's rows and history.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
import sqlalchemy as sa

from cdc.config import load_config
from cdc.config.models import IcebergSinkConfig, PipelineConfig, SqlSinkConfig
from cdc.core.errors import ConfigError
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from sinks.iceberg import read_history
from sinks.iceberg.as_of import rebuild_state
from sinks.iceberg.history_schema import to_source_values
from sinks.sql import create_sql_sink
from tests.support.workload import Daemon

SERVER_IDS = (4500, 4599)  # this area's replica server_ids
TABLES = ("items", "pairs")
KEYS = 4_000  # the workload's key space per table
PREFILLED = 3_000  # rows written (through the pipeline) before the new sink exists

Rows = dict[tuple[Any, ...], tuple[Any, ...]]  # key -> the other columns


@dataclass
class SinkFillPipeline:
    stack: StackConnections
    tmp: Path
    db: str
    name: str
    kafka: bool
    config: Path = field(init=False)
    sinks: list[str] = field(default_factory=list)  # YAML lines of the sinks list
    _pg_databases: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config = self.tmp / "cdc.yaml"

    @classmethod
    def create(cls, stack: StackConnections, tmp: Path, *, kafka: bool = False) -> SinkFillPipeline:
        suffix = uuid.uuid4().hex[:8]
        p = cls(stack, tmp, f"sinkfill_{suffix}", f"sinkfill-{suffix}", kafka)
        with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {p.db}")
            cur.execute(
                f"CREATE TABLE {p.db}.items (id INT PRIMARY KEY, ver INT NOT NULL,"
                " v VARCHAR(40) CHARACTER SET utf8mb4)"
            )
            # a composite key with a case-insensitive string part
            cur.execute(
                f"CREATE TABLE {p.db}.pairs (a INT NOT NULL, b VARCHAR(20) CHARACTER SET utf8mb4 COLLATE"
                " utf8mb4_general_ci NOT NULL, ver INT NOT NULL, PRIMARY KEY (a, b))"
            )
        return p

    # -- config ---------------------------------------------------------------------------------
    def sqlite_sink(self, name: str) -> str:
        return f"  - {{name: {name}, type: sql, url: 'sqlite:///{self.tmp / (name + '.db')}'}}\n"

    def iceberg_sink(self, name: str) -> str:
        return (
            f"  - {{name: {name}, type: iceberg, namespace: {name.replace('-', '_')}, commit_rows: 2000,"
            f" commit_seconds: 1, catalog: {{type: sql, uri: 'sqlite:///{self.tmp / (name + '-catalog.db')}',"
            f" warehouse: '{(self.tmp / (name + '-wh')).as_uri()}'}}}}\n"
        )

    def postgres_sink(self, name: str) -> str:
        database = f"{self.db}_{name.replace('-', '_')}"
        engine = sa.create_engine(self.stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
        finally:
            engine.dispose()
        self._pg_databases.append(database)
        url = sa.engine.make_url(self.stack.postgres.sqlalchemy_url(database))
        return f"  - {{name: {name}, type: sql, url: '{url.render_as_string(hide_password=False)}'}}\n"

    def write_config(self, *sinks: str, server_id: int | None = None) -> Path:
        m = self.stack.mariadb
        self.sinks = list(sinks)
        sid = server_id or random.randint(*SERVER_IDS)
        stream = (
            f"stream: {{type: kafka, bootstrap_servers: '{self.stack.kafka.bootstrap_servers}',"
            " partitions: 3, flush_max_events: 2000, flush_max_ms: 100}\n"
            if self.kafka
            else ""
        )
        self.config.write_text(
            f"name: {self.name}\n"
            f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
            f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {sid}, tables: ['{self.db}.*'],"
            " heartbeat_seconds: 1}\n"
            f"{stream}"
            f"sinks:\n{''.join(sinks)}"
            "batch: {max_events: 2000, max_ms: 100, idle_flush_seconds: 1}\n"
            "bootstrap: {min_chunk_rows: 100, max_chunk_rows: 500, chunk_seconds: 0.02}\n"
            f"state_dir: {self.tmp / 'state'}\n"
        )
        return self.config

    def loaded(self) -> PipelineConfig:
        return load_config(self.config, {"CDC_SOURCE_PASSWORD": self.stack.mariadb.password})

    def daemon(self, command: str, log_name: str) -> Daemon:
        return Daemon(self.config, self.tmp / log_name, command, self.stack.mariadb.password)

    def env(self) -> dict[str, str]:
        return {**os.environ, "CDC_SOURCE_PASSWORD": self.stack.mariadb.password}

    def fill_process(self, sink: str, *extra: str) -> subprocess.Popen[bytes]:
        """The fill alone in a process (snapshotter.sink_fill_runner), its log appended to a file."""
        with (self.tmp / "fill.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "snapshotter.sink_fill_runner", "-c", str(self.config), "--sink", sink,
                 *extra, *(f"{self.db}.{t}" for t in TABLES)],
                stdout=log,
                stderr=log,
                env=self.env(),
            )  # fmt: skip

    def refs(self) -> list[TableRef]:
        return [TableRef(self.db, t) for t in TABLES]

    # -- the source ----------------------------------------------------------------------------------
    def connect(self) -> pymysql.Connection[pymysql.cursors.Cursor]:
        return self.stack.mariadb.connect_root(database=self.db, charset="utf8mb4", autocommit=False)

    def prefill(self, rows: int = PREFILLED) -> None:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO items SELECT seq, 1, CONCAT('row-', seq) FROM seq_1_to_{rows}")
            cur.execute(f"INSERT INTO pairs SELECT seq DIV 3, CONCAT('k', seq MOD 3), 1 FROM seq_1_to_{rows}")
            conn.commit()

    def source_rows(self, table: str) -> Rows:
        with self.connect() as conn, conn.cursor() as cur:
            if table == "items":
                cur.execute("SELECT id, ver, v FROM items")
                return {(int(r[0]),): (int(r[1]), r[2]) for r in cur.fetchall()}
            cur.execute("SELECT a, b, ver FROM pairs")
            return {(int(r[0]), str(r[1])): (int(r[2]),) for r in cur.fetchall()}

    # -- the sinks -----------------------------------------------------------------------------------
    def sink_config(self, name: str) -> SqlSinkConfig | IcebergSinkConfig:
        config = self.loaded()
        return config.sinks[config.sink_names.index(name)]

    def sink_rows(self, name: str, table: str) -> Rows:
        cfg = self.sink_config(name)
        ref = TableRef(self.db, table)
        if isinstance(cfg, SqlSinkConfig):
            sink = create_sql_sink(cfg, self.name)
            sink.open()
            try:
                rows = sink.read_rows(ref)
            finally:
                sink.close()
        else:
            try:
                found = read_history(cfg.catalog, cfg.namespace, ref)
            except ConfigError:
                return {}
            state = rebuild_state(found.rows, found.primary_key)
            rows = to_source_values(state, found.column_kinds)
        return {_key(table, r): _rest(table, r) for r in rows}

    def history(self, name: str, table: str) -> list[dict[str, Any]]:
        cfg = self.sink_config(name)
        assert isinstance(cfg, IcebergSinkConfig)
        try:
            found = read_history(cfg.catalog, cfg.namespace, TableRef(self.db, table))
        except ConfigError:
            return []
        return to_source_values(found.rows, found.column_kinds)

    def assert_equal(self, sink: str) -> None:
        for table in TABLES:
            want, got = self.source_rows(table), self.sink_rows(sink, table)
            missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
            assert not missing and not extra, f"sink {sink} {table}: missing {missing[:5]}, extra {extra[:5]}"
            bad = [k for k in want if want[k] != got[k]]
            assert not bad, f"sink {sink} {table}: {len(bad)} differ, e.g. {want[bad[0]]} vs {got[bad[0]]}"

    def assert_history_once(self, sink: str, *, snapshot_rows: bool) -> Counter[str]:
        """Each position once in the history; at most one snapshot row per key (none if not
        ``snapshot_rows``). Returns the ops counted."""
        ops: Counter[str] = Counter()
        for table in TABLES:
            rows = self.history(sink, table)
            per_position = Counter(str(r["_position"]) for r in rows)
            twice = [p for p, n in per_position.items() if n > 1]
            assert not twice, f"sink {sink} {table}: {len(twice)} positions twice, e.g. {twice[0]}"
            reads = Counter(_key(table, r) for r in rows if r["_op"] == "r")
            if not snapshot_rows:
                assert not reads, f"sink {sink} {table}: got {sum(reads.values())} snapshot rows from a fill"
            again = [k for k, n in reads.items() if n > 1]
            assert not again, f"sink {sink} {table}: key {again[0]} read twice by the fill"
            ops.update(str(r["_op"]) for r in rows)
        return ops

    def drop(self) -> None:
        with self.stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {self.db}")
        if self._pg_databases:
            engine = sa.create_engine(self.stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as pg:
                    for database in self._pg_databases:
                        pg.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            finally:
                engine.dispose()


def _key(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
    return (int(row["id"]),) if table == "items" else (int(row["a"]), str(row["b"]))


def _rest(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
    return (int(row["ver"]), row["v"]) if table == "items" else (int(row["ver"]),)


@dataclass
class Writes:
    """Inserts, updates and deletes over both tables' key spaces, in a thread, until stopped."""

    pipeline: SinkFillPipeline
    seed: int
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    transactions: int = 0
    thread: threading.Thread | None = None

    def start(self) -> Writes:
        self.thread = threading.Thread(target=self._run, name="sinkfill-writes", daemon=True)
        self.thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(60)
        assert self.error is None, self.error

    def _run(self) -> None:
        rng = random.Random(self.seed)
        try:
            with self.pipeline.connect() as conn:
                while not self.stop.is_set():
                    with conn.cursor() as cur:
                        for _ in range(rng.randint(1, 6)):
                            self._change(cur, rng)
                    conn.commit()
                    self.transactions += 1
                    time.sleep(rng.random() * 0.004)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    @staticmethod
    def _change(cur: Any, rng: random.Random) -> None:
        choice = rng.random()
        if rng.random() < 0.6:
            key = rng.randint(1, KEYS)
            if choice < 0.45:
                cur.execute(
                    "INSERT INTO items VALUES (%s, 1, 'new') ON DUPLICATE KEY UPDATE ver = ver + 1, v = 'u'",
                    (key,),
                )
            elif choice < 0.85:
                cur.execute("UPDATE items SET ver = ver + 1, v = 'upd' WHERE id = %s", (key,))
            else:
                cur.execute("DELETE FROM items WHERE id = %s", (key,))
            return
        # 'k1' and 'K1' are one key under the case-insensitive collation
        a, b = rng.randint(0, KEYS // 3), f"{'kK'[rng.randint(0, 1)]}{rng.randint(0, 3)}"
        if choice < 0.5:
            cur.execute("INSERT INTO pairs VALUES (%s, %s, 1) ON DUPLICATE KEY UPDATE ver = ver + 1", (a, b))
        else:
            cur.execute("DELETE FROM pairs WHERE a = %s AND b = %s", (a, b))
