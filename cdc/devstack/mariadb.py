"""MariaDB from Debian's mariadb-server package: a private datadir with the binlog as CDC needs it.

Runs as root with ``--user=root`` when `cdc dev up` runs as root (containers, CI): the state
directory lives in the user's tree (``.devstack/`` in the checkout), which the ``mysql`` system user
often cannot even traverse, and the server listens on 127.0.0.1 only, so nothing but local
processes can reach it. Run as a normal user, it simply runs as that user.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pymysql

from cdc.devstack.connections import MariaDbConnection
from cdc.devstack.process import find_binary, run_logged
from cdc.devstack.service import Service
from cdc.devstack.settings import (
    LOOPBACK,
    MARIADB_CDC_PASSWORD,
    MARIADB_CDC_USER,
    MARIADB_ROOT_PASSWORD,
    MARIADB_SERVER_ID,
    ServiceName,
)

DEBIAN_PACKAGE = "mariadb-server"
MARIADBD_CANDIDATES: tuple[str, ...] = ("/usr/sbin/mariadbd",)
INSTALL_DB_CANDIDATES: tuple[str, ...] = ("/usr/bin/mariadb-install-db",)

# The binlog as the capture needs it (see DESIGN.md): row events with full images and full
# metadata (column names, signedness, primary key in the TableMap), GTIDs in domain 0.
# docker-compose.yml passes the same flags; tests/unit/test_docker_compose.py keeps them in step.
BINLOG_SETTINGS: dict[str, str] = {
    "log-bin": "mariadb-bin",
    "binlog-format": "ROW",
    "binlog-row-image": "FULL",
    "binlog-row-metadata": "FULL",
    "server-id": str(MARIADB_SERVER_ID),
    "gtid-domain-id": "0",
    # A dev server is never a replica, but a promoted replica must carry the same GTIDs and refuse
    # out-of-order ones: this is how production should be configured, so the tests see it.
    "log-slave-updates": "ON",
    "gtid-strict-mode": "ON",
    # Binlogs older than a day are removed when the server rotates its binlog (at 1 GiB or a
    # restart): a dev server's tests and benchmarks otherwise grow it without bound (39 GiB after
    # ten sessions). A production server keeps them at least as long as a pipeline may be stopped.
    "binlog-expire-logs-seconds": "86400",
}

# What the capture daemon and the consistent snapshotter need, and nothing more:
# - REPLICATION SLAVE: COM_BINLOG_DUMP; BINLOG MONITOR (10.5+ name of REPLICATION CLIENT, granted
#   under both names so older servers accept the list): SHOW MASTER STATUS / SHOW BINARY LOGS;
# - SELECT, SHOW VIEW, SHOW DATABASES: read tables and schemas for snapshots and reconciliation;
# - RELOAD, LOCK TABLES: the short FLUSH TABLES ... WITH READ LOCK / LOCK TABLES a consistent
#   snapshot takes to pin its binlog position.
CDC_PRIVILEGES: tuple[str, ...] = (
    "SELECT",
    "RELOAD",
    "SHOW DATABASES",
    "LOCK TABLES",
    "SHOW VIEW",
    "REPLICATION SLAVE",
    "REPLICATION CLIENT",
    "BINLOG MONITOR",
)

ACCOUNT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")


def sql_string(value: str) -> str:
    """A SQL string literal (the init file cannot take bound parameters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render_init_sql(cdc_user: str, cdc_password: str, root_password: str) -> str:
    """Idempotent account setup, run by the server itself at every start (``--init-file``)."""
    lines = [
        # mariadbd reads the init file one statement per line: no trailing comments.
        "-- Written by cdc dev up; run by mariadbd at every start (--init-file).",
        "-- Account setup stays out of the binlog that the capture reads.",
        "SET SESSION sql_log_bin = 0;",
    ]
    privileges = ", ".join(CDC_PRIVILEGES)
    for host in ACCOUNT_HOSTS:
        root = f"'root'@{sql_string(host)}"
        cdc = f"{sql_string(cdc_user)}@{sql_string(host)}"
        lines += [
            f"CREATE USER IF NOT EXISTS {root};",
            f"ALTER USER {root} IDENTIFIED BY {sql_string(root_password)};",
            f"GRANT ALL PRIVILEGES ON *.* TO {root} WITH GRANT OPTION;",
            f"CREATE USER IF NOT EXISTS {cdc};",
            f"ALTER USER {cdc} IDENTIFIED BY {sql_string(cdc_password)};",
            f"GRANT {privileges} ON *.* TO {cdc};",
        ]
    return "\n".join(lines) + "\n"


class MariaDb(Service):
    name = ServiceName.MARIADB

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.mariadb_port,)

    @property
    def socket_path(self) -> Path:
        return self.home / "mariadb.sock"

    @property
    def init_file(self) -> Path:
        return self.home / "init.sql"

    def cmdline_markers(self) -> tuple[str, ...]:
        return ("mariadbd", f"--datadir={self.data_dir}")

    def mariadbd(self) -> Path:
        return find_binary("mariadbd", DEBIAN_PACKAGE, MARIADBD_CANDIDATES)

    def _user_args(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def prepare(self) -> None:
        self.mariadbd()  # fail early, naming the package, before touching the state dir
        self.home.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "mysql").is_dir():
            self._install_db()
        self.init_file.write_text(
            render_init_sql(MARIADB_CDC_USER, MARIADB_CDC_PASSWORD, MARIADB_ROOT_PASSWORD)
        )
        self.init_file.chmod(0o600)

    def _install_db(self) -> None:
        install = find_binary("mariadb-install-db", DEBIAN_PACKAGE, INSTALL_DB_CANDIDATES)
        # Into a scratch directory first: a half-initialized datadir must never look installed.
        scratch = self.home / "data.installing"
        shutil.rmtree(scratch, ignore_errors=True)
        run_logged(
            [
                str(install),
                "--no-defaults",
                f"--datadir={scratch}",
                # the bootstrap's temporary Aria tables: in a shared /tmp, parallel installs
                # dropped each other's and one crashed now and then (signal 11, ha_maria::drop_table)
                f"--tmpdir={self._tmpdir()}",
                *self._user_args(),
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ],
            self.log_file,
            "mariadb-install-db",
        )
        scratch.rename(self.data_dir)

    def _tmpdir(self) -> Path:
        """The instance's own temporary directory: a shared /tmp that something cleans up under the
        server (seen: "Error on delete of '/tmp/#sql-temptable-...MAI'" in an information_schema
        query), or that another instance's bootstrap uses at the same moment."""
        tmpdir = self.home / "tmp"
        tmpdir.mkdir(parents=True, exist_ok=True)
        return tmpdir

    def argv(self) -> list[str]:
        return [
            str(self.mariadbd()),
            "--no-defaults",  # first option, as mariadbd requires: ignore /etc/mysql entirely
            f"--datadir={self.data_dir}",
            f"--tmpdir={self._tmpdir()}",
            *self._user_args(),
            f"--port={self.settings.mariadb_port}",
            f"--bind-address={LOOPBACK}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.home / 'mariadbd.pid'}",
            "--skip-name-resolve",
            f"--init-file={self.init_file}",
            *[f"--{key}={value}" for key, value in BINLOG_SETTINGS.items()],
        ]

    def connection(self) -> MariaDbConnection:
        return MariaDbConnection(
            host=LOOPBACK,
            port=self.settings.mariadb_port,
            user=MARIADB_CDC_USER,
            password=MARIADB_CDC_PASSWORD,
            root_user="root",
            root_password=MARIADB_ROOT_PASSWORD,
            server_id=MARIADB_SERVER_ID,
        )

    def probe(self) -> None:
        conn = pymysql.connect(
            host=LOOPBACK,
            port=self.settings.mariadb_port,
            user=MARIADB_CDC_USER,
            password=MARIADB_CDC_PASSWORD,
            connect_timeout=2,
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
        finally:
            conn.close()
