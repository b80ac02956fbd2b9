"""An embedded pipeline on the dev stack for the SQL sink's integration tests: a fresh source database,
a config with the sinks a test names, and `cdc run --until-caught-up` as a real process."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pymysql.cursors
import sqlalchemy as sa

from cdc.devstack.connections import StackConnections

SERVER_IDS = (64000, 64999)  # this area's replica server_ids (other tests run at the same time)
PASSWORD_ENV = "SQLSINK_SOURCE_PASSWORD"


@dataclass(frozen=True)
class RunResult:
    code: int
    output: str  # stdout and stderr
    seconds: float


@dataclass
class SqlPipeline:
    stack: StackConnections
    tmp: Path
    db: str  # the source database (also the PostgreSQL schema of the sink)
    name: str
    _pg_databases: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, stack: StackConnections, tmp: Path) -> SqlPipeline:
        suffix = uuid.uuid4().hex[:8]
        pipeline = cls(stack, tmp, f"sqlsink_{suffix}", f"sqlsink-{suffix}")
        with pipeline.source() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{pipeline.db}`")
        return pipeline

    def source(self, database: str = "") -> pymysql.Connection[pymysql.cursors.Cursor]:
        return self.stack.mariadb.connect_root(database=database or None, autocommit=True)

    def pg_url(self, password: str | None = None, database: str | None = None) -> str:
        url = sa.engine.make_url(self.stack.postgres.sqlalchemy_url(database))
        if password is not None:
            url = url.set(password=password)
        return url.render_as_string(hide_password=False)

    def pg_database(self) -> str:
        """A fresh PostgreSQL database named like the source one (tables unqualified, in public)."""
        self._pg_databases.append(self.db)
        engine = sa.create_engine(self.pg_url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{self.db}"'))
        finally:
            engine.dispose()
        return self.pg_url(database=self.db)

    def write_config(self, sinks_yaml: str, partitions: int = 0) -> Path:
        """Embedded mode; with ``partitions``, a Kafka stream of that many partitions per topic."""
        m = self.stack.mariadb
        path = self.tmp / "cdc.yaml"
        kafka = self.stack.kafka.bootstrap_servers
        stream = f"stream: {{bootstrap_servers: '{kafka}', partitions: {partitions}}}\n" if partitions else ""
        path.write_text(
            f"name: {self.name}\n"
            f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{{PASSWORD_ENV}}}',"
            f" server_id: {random.randint(*SERVER_IDS)}, tables: ['{self.db}.*'], heartbeat_seconds: 1}}\n"
            f"{stream}"
            f"sinks:\n{sinks_yaml}"
            f"state_dir: {self.tmp / 'state'}\n"
        )
        return path

    def cdc(self, config: Path, *args: str, timeout: float = 300) -> RunResult:
        env = {**os.environ, PASSWORD_ENV: self.stack.mariadb.password}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "cdc.cli", *args, "-c", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return RunResult(done.returncode, done.stdout + done.stderr, time.monotonic() - started)

    def run_until_caught_up(self, config: Path) -> RunResult:
        result = self.cdc(config, "run", "--until-caught-up")
        assert result.code == 0, result.output[-3000:]
        return result

    def drop(self) -> None:
        with self.source() as source, source.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.db}`")
        engine = sa.create_engine(self.pg_url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.db}" CASCADE'))
                for database in self._pg_databases:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        finally:
            engine.dispose()
