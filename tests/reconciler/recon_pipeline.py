"""An embedded pipeline into PostgreSQL, SQLite and Iceberg copies, made by the real `cdc run`, for the
reconciler's tests: a fresh source database (``recon_<suffix>``), the daemon as a real process, and
helpers that inject drift straight into each copy (behind the pipeline's back, as a bug would)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
import sqlalchemy as sa

from cdc.devstack.connections import StackConnections
from reconciler.report import Report

SERVER_IDS = (4500, 4599)  # this area's range (recon2)
PASSWORD_ENV = "RECON_SOURCE_PASSWORD"


@dataclass
class ReconPipeline:
    stack: StackConnections
    tmp: Path
    db: str
    name: str
    config: Path = Path()
    daemon: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def create(cls, stack: StackConnections, tmp: Path, extra_config: str = "") -> ReconPipeline:
        """``extra_config``: YAML sections appended to the config (say, ``policies:``)."""
        suffix = uuid.uuid4().hex[:8]
        p = cls(stack, tmp, f"recon_{suffix}", f"recon-{suffix}")
        with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{p.db}`")
            cur.execute(f"CREATE DATABASE `{p.db}_serving`")  # the MariaDB copy (not captured)
        engine = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as pg:
                pg.execute(sa.text(f'CREATE DATABASE "{p.db}"'))
        finally:
            engine.dispose()
        m = stack.mariadb
        p.config = tmp / "cdc.yaml"
        p.config.write_text(
            f"name: {p.name}\n"
            f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
            f" password: '${{{PASSWORD_ENV}}}',"
            f" server_id: {random.randint(*SERVER_IDS)}, tables: ['{p.db}.*'], heartbeat_seconds: 1}}\n"
            "sinks:\n"
            f"  - {{type: sql, name: pg, url: '{p.pg_url()}'}}\n"
            f"  - {{type: sql, name: maria, url: '{p.maria_url()}'}}\n"
            f"  - {{type: sql, name: lite, url: 'sqlite:///{tmp / 'serving.db'}'}}\n"
            f"  - {{type: iceberg, name: history, namespace: {p.db}, commit_seconds: 1,"
            f" catalog: {{type: sql, uri: 'sqlite:///{tmp / 'catalog.db'}',"
            f" warehouse: '{(tmp / 'wh').as_uri()}'}}}}\n"
            "batch: {idle_flush_seconds: 1}\n"
            f"state_dir: {tmp / 'state'}\n" + extra_config.replace("{db}", p.db)
        )
        return p

    def source(self) -> pymysql.Connection[pymysql.cursors.Cursor]:
        return self.stack.mariadb.connect_root(database=self.db, autocommit=True, charset="utf8mb4")

    def execute(self, *statements: str) -> None:
        with self.source() as conn, conn.cursor() as cur:
            for s in statements:
                cur.execute(s)

    def pg_url(self) -> str:
        url = sa.engine.make_url(self.stack.postgres.sqlalchemy_url(self.db))
        return url.render_as_string(hide_password=False)

    def maria_url(self) -> str:
        m = self.stack.mariadb
        url = sa.URL.create(
            "mysql+pymysql", username=m.root_user, password=m.root_password or None, host=m.host, port=m.port,
            database=f"{self.db}_serving",
        )  # fmt: skip
        return url.render_as_string(hide_password=False)

    def maria(self) -> sa.Engine:
        return sa.create_engine(self.maria_url())

    def pg(self) -> sa.Engine:
        return sa.create_engine(self.pg_url())

    def lite(self) -> sa.Engine:
        return sa.create_engine(f"sqlite:///{self.tmp / 'serving.db'}")

    def env(self) -> dict[str, str]:
        return {**os.environ, PASSWORD_ENV: self.stack.mariadb.password, **self.extra_env}

    def cdc(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "cdc.cli", args[0], "-c", str(self.config), *args[1:]]
        return subprocess.run(
            command, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )

    def run_until_caught_up(self) -> None:
        done = self.cdc("run", "--until-caught-up")
        assert done.returncode == 0, done.stdout + done.stderr

    def start_daemon(self) -> None:
        """`cdc run` in the background: the copies follow the source while the reconciler runs."""
        if self.daemon is not None and self.daemon.poll() is None:
            return  # (a pipeline shared by several tests) one daemon per pipeline
        log = (self.tmp / "daemon.log").open("ab")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "cdc.cli", "run", "-c", str(self.config)],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._procs.append(self.daemon)

    def stop_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        self.daemon = None

    def reconcile(self, *args: str) -> tuple[int, dict[str, Any], str]:
        report = self.tmp / f"report-{uuid.uuid4().hex[:6]}.json"
        done = self.cdc("reconcile", "--report", str(report), "--wait", "20", *args)
        output = done.stdout + done.stderr
        data = json.loads(report.read_text()) if report.exists() else {}
        return done.returncode, data, output

    def reconcile_here(self, *tables: str, sink: str | None = None, wait: float = 20.0) -> Report:
        """The comparison `cdc reconcile` runs, in this process (no interpreter start: ~0.3 s a run)."""
        from cdc.config import load_config
        from cdc.reconcile_pipeline import reconcile_pipeline

        config = load_config(self.config, self.env())
        saved = {k: os.environ.get(k) for k in self.extra_env}
        os.environ.update(self.extra_env)  # read from the environment, as in `cdc reconcile`
        try:
            return reconcile_pipeline(config, tables, sink, wait)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def iceberg_inject(self, table: str, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """Append history rows straight into the Iceberg table at the applied position: each (op, row)
        takes the existing row of its key (``row['id']``) as its base, or builds one from ``row``."""
        import pyarrow as pa

        from cdc.config import load_config
        from cdc.config.models import IcebergSinkConfig
        from cdc.core.schemas import TableRef
        from sinks.iceberg.catalogs import find_history_table, open_catalog
        from sinks.iceberg.snapshot_state import stored_state

        config = load_config(self.config, {PASSWORD_ENV: "x"}).sinks[3]
        assert isinstance(config, IcebergSinkConfig)
        _, iceberg = find_history_table(
            open_catalog(config.catalog), config.namespace, TableRef(self.db, table)
        )
        assert iceberg is not None
        state = stored_state(iceberg)
        assert state is not None
        existing = iceberg.scan().to_arrow().sort_by("_position").to_pylist()
        rows = []
        for op, values in changes:
            base = [r for r in existing if r["id"] == values["id"]]
            row = (
                dict(base[-1])
                if base
                else {**dict(existing[-1]), **{k: None for k in existing[-1] if not k.startswith("_")}}
            )
            row.update(values)
            row["_op"] = op
            row["_position"] = state.position.to_string()
            rows.append(row)
        schema = iceberg.schema().as_arrow()
        iceberg.append(pa.Table.from_pylist(rows, schema=schema))

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with self.stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.db}`")
            cur.execute(f"DROP DATABASE IF EXISTS `{self.db}_serving`")
        engine = sa.create_engine(self.stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as pg:
                pg.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))
        finally:
            engine.dispose()


def wait_until(check: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
