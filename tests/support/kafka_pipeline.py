"""A small Kafka pipeline on the dev stack for the `cdc run` / `cdc sink` process tests.

Each test gets its own database (``kafka_<hex>``), pipeline name (so its own topics and consumer
group), replica server_id (63000-63999) and state directory.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from cdc.config import load_config
from cdc.config.models import PipelineConfig, SqlSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from sinks.sql import create_sql_sink
from tests.support.workload import Daemon


@dataclass
class KafkaPipeline:
    stack: StackConnections
    tmp: Path
    db: str
    name: str
    config: Path

    @classmethod
    def create(
        cls,
        stack: StackConnections,
        tmp: Path,
        *,
        partitions: int = 3,
        stream_extra: str = "",
        sinks: str | None = None,
        tables_sql: tuple[str, ...] = ("CREATE TABLE t (id INT PRIMARY KEY, ver INT NOT NULL)",),
    ) -> KafkaPipeline:
        suffix = uuid.uuid4().hex[:8]
        db, name = f"kafka_{suffix}", f"kafka-{suffix}"
        m = stack.mariadb
        with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {db}")
            for statement in tables_sql:
                cur.execute(f"USE {db}")
                cur.execute(statement)
        if sinks is None:
            sinks = (
                f"  - {{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}\n"
                f"  - {{type: iceberg, namespace: {db}, commit_rows: 1000, commit_seconds: 1,"
                f" catalog: {{type: sql, uri: 'sqlite:///{tmp / 'catalog.db'}',"
                f" warehouse: '{(tmp / 'wh').as_uri()}'}}}}\n"
            )
        config = tmp / "cdc.yaml"
        config.write_text(
            f"name: {name}\n"
            f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
            f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {random.randint(63_000, 63_999)},"
            f" tables: ['{db}.*'], heartbeat_seconds: 1}}\n"
            f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}',"
            f" partitions: {partitions}, flush_max_ms: 100{stream_extra}}}\n"
            f"sinks:\n{sinks}"
            "batch: {max_events: 200, max_ms: 100, idle_flush_seconds: 1}\n"
            f"state_dir: {tmp / 'state'}\n"
        )
        return cls(stack, tmp, db, name, config)

    def loaded(self) -> PipelineConfig:
        return load_config(self.config, {"CDC_SOURCE_PASSWORD": self.stack.mariadb.password})

    def daemon(self, command: str, log_name: str) -> Daemon:
        return Daemon(self.config, self.tmp / log_name, command, self.stack.mariadb.password)

    def execute(self, *statements: str) -> None:
        """Each statement in its own transaction."""
        with (
            self.stack.mariadb.connect_root(database=self.db, autocommit=True) as conn,
            conn.cursor() as cur,
        ):
            for statement in statements:
                cur.execute(statement)

    def execute_with(self, statement: str, args: list[tuple[object, ...]]) -> None:
        """One statement per argument tuple, each in its own transaction."""
        with (
            self.stack.mariadb.connect_root(database=self.db, autocommit=True) as conn,
            conn.cursor() as cur,
        ):
            for arg in args:
                cur.execute(statement, arg)

    def connect(self) -> pymysql.Connection:
        return self.stack.mariadb.connect_root(database=self.db, autocommit=True)

    def serving_rows(self) -> dict[int, int]:
        """``t``'s id -> ver in the config's first SQL sink."""
        config = next(s for s in self.loaded().sinks if isinstance(s, SqlSinkConfig))
        sink = create_sql_sink(config, self.name)
        sink.open()
        try:
            return {int(r["id"]): int(r["ver"]) for r in sink.read_rows(TableRef(self.db, "t"))}  # type: ignore[call-overload]
        finally:
            sink.close()

    def source_rows(self) -> dict[int, int]:
        """``t``'s id -> ver at the source."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT id, ver FROM t")
            return {int(i): int(v) for i, v in cur.fetchall()}

    def drop(self) -> None:
        with self.stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {self.db}")


def wait_for(what: str, check: Callable[[], bool], timeout: float, *logs: Daemon) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` with the daemons' log tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(d.log.read_text()[-2000:] for d in logs if d.log.exists())
    pytest.fail(f"timed out waiting for {what}\n{tails}")


def assigned(daemon: Daemon) -> bool:
    """The `cdc sink` process has logged a partition assignment."""
    return daemon.log.exists() and "assigned" in daemon.log.read_text()
