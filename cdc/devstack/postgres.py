"""PostgreSQL 15 from Debian's postgresql package: a private cluster on loopback with password auth.

PostgreSQL refuses to run as root, so when `cdc dev up` runs as root the cluster belongs to the
``postgres`` system user (data and socket directories chowned to it, the server started with that
uid directly, no wrapper process). That user must be able to reach the state directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from cdc.devstack.connections import PostgresConnection
from cdc.devstack.process import DevStackError, cmdline_matches, find_binary, pid_alive, run_logged
from cdc.devstack.service import Service
from cdc.devstack.settings import (
    LOOPBACK,
    POSTGRES_DATABASE,
    POSTGRES_PASSWORD,
    POSTGRES_USER,
    ServiceName,
)

DEBIAN_PACKAGE = "postgresql"
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)
SYSTEM_USER = "postgres"

# Server settings beyond port and addresses; docker-compose.yml passes the same.
SERVER_SETTINGS: dict[str, str] = {
    "wal_level": "logical",  # a PostgreSQL source is next on the roadmap
}


class Postgres(Service):
    name = ServiceName.POSTGRES
    # SIGTERM is "smart" shutdown, which waits for every client to disconnect; SIGINT is "fast".
    graceful_signal = signal.SIGINT

    @property
    def port(self) -> int:
        return self.settings.postgres_port

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    def cmdline_markers(self) -> tuple[str, ...]:
        return ("postgres", str(self.data_dir))

    def binary(self, program: str) -> Path:
        return find_binary(program, DEBIAN_PACKAGE, [f"{d}/{program}" for d in PG_BIN_DIRS])

    def run_as(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _chown(self, path: Path) -> None:
        user = self.run_as()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_reachable(self) -> None:
        user = self.run_as()
        if user is None:
            return
        result = subprocess.run(
            ["test", "-w", str(self.socket_dir)], user=user, group=pwd.getpwnam(user).pw_gid, check=False
        )
        if result.returncode != 0:
            raise DevStackError(
                f"the {user} system user cannot reach {self.socket_dir}: PostgreSQL cannot run as root, "
                f"so every parent of the state dir must be traversable by {user} (chmod o+x), or use "
                f"--dir / HEADWATER_DEVSTACK_DIR with a path such as /srv/headwater-devstack"
            )

    def prepare(self) -> None:
        self.binary("postgres")
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o755)
        self.socket_dir.mkdir(exist_ok=True)
        self._chown(self.socket_dir)
        self._check_reachable()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._remove_stale_lock()

    def _remove_stale_lock(self) -> None:
        """PostgreSQL refuses to start while the PID in postmaster.pid exists, and a postmaster
        killed with SIGKILL stays a zombie until its parent (often init) reaps it. We only get here
        when our pidfile says the server is down and its port is free, so a lock whose PID is gone,
        a zombie, or another program is stale."""
        lock = self.data_dir / "postmaster.pid"
        try:
            first_line = lock.read_text().split("\n", 1)[0].strip()
        except FileNotFoundError:
            return
        pid = int(first_line) if first_line.isdigit() else None
        if pid is None or not (pid_alive(pid) and cmdline_matches(pid, self.cmdline_markers())):
            lock.unlink(missing_ok=True)

    def _initdb(self) -> None:
        initdb = self.binary("initdb")
        scratch = self.home / "data.initializing"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        self._chown(scratch)
        pwfile = self.home / "initdb.pw"
        pwfile.write_text(POSTGRES_PASSWORD + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        user = self.run_as()
        try:
            run_logged(
                [
                    str(initdb),
                    "-D",
                    str(scratch),
                    "-U",
                    POSTGRES_USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                self.log_file,
                "initdb",
                cwd=self.home,
                user=user,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        scratch.rename(self.data_dir)

    def argv(self) -> list[str]:
        settings = {
            "listen_addresses": LOOPBACK,
            "unix_socket_directories": str(self.socket_dir),
            **self.server_settings(),
        }
        port = str(self.port)
        argv = [str(self.binary("postgres")), "-D", str(self.data_dir), "-p", port]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def server_settings(self) -> dict[str, str]:
        return SERVER_SETTINGS

    def env(self) -> dict[str, str] | None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        user = self.run_as()
        if user is not None:
            env["HOME"] = pwd.getpwnam(user).pw_dir
        return env

    def connection(self) -> PostgresConnection:
        return PostgresConnection(
            host=LOOPBACK,
            port=self.port,
            user=POSTGRES_USER,
            password=POSTGRES_PASSWORD,
            database=POSTGRES_DATABASE,
        )

    def _connect(self, dbname: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=LOOPBACK,
            port=self.port,
            user=POSTGRES_USER,
            password=POSTGRES_PASSWORD,
            dbname=dbname,
            connect_timeout=2,
            autocommit=True,
        )

    def probe(self) -> None:
        with self._connect("postgres") as conn:
            conn.execute("SELECT 1").fetchone()

    def after_ready(self) -> None:
        with self._connect("postgres") as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (POSTGRES_DATABASE,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(POSTGRES_DATABASE)))
