"""Connection settings of a running dev stack, written by `cdc dev up` and read by tests and the demo.

The file is ``<state dir>/connections.json``; this module is the only reader and writer of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pymysql
    import pymysql.cursors

CONNECTIONS_FILE = "connections.json"


@dataclass(frozen=True)
class MariaDbConnection:
    host: str
    port: int
    user: str  # least-privilege replication user the daemon connects as
    password: str
    root_user: str  # for tests and the demo workload
    root_password: str
    server_id: int  # the server's own id (a replica must use another one)

    def __repr__(self) -> str:  # never show passwords
        return f"MariaDbConnection(host={self.host!r}, port={self.port}, user={self.user!r})"

    def connect_root(self, **options: Any) -> pymysql.Connection[pymysql.cursors.Cursor]:
        """A root connection to this MariaDB, for tests, the demo and workloads (pymysql options)."""
        import pymysql  # only callers that connect pay for the driver

        return pymysql.connect(
            host=self.host, port=self.port, user=self.root_user, password=self.root_password, **options
        )


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap_servers: str


@dataclass(frozen=True)
class PostgresConnection:
    host: str
    port: int
    user: str
    password: str
    database: str

    def __repr__(self) -> str:
        return f"PostgresConnection(host={self.host!r}, port={self.port}, user={self.user!r})"

    def sqlalchemy_url(self, database: str | None = None) -> str:
        return (
            f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/"
            f"{database or self.database}"
        )


@dataclass(frozen=True)
class PgSourceConnection:
    """The PostgreSQL source cluster (logical decoding): the daemon's REPLICATION role, and the
    superuser that tests and the demo use to create databases, tables and workloads."""

    host: str
    port: int
    user: str  # LOGIN REPLICATION, nothing else
    password: str
    database: str
    admin_user: str
    admin_password: str

    def __repr__(self) -> str:
        return f"PgSourceConnection(host={self.host!r}, port={self.port}, user={self.user!r})"

    def admin_conninfo(self, database: str | None = None) -> str:
        """A libpq connection string for the superuser (psycopg 3 or psycopg2)."""
        return (
            f"host={self.host} port={self.port} user={self.admin_user} "
            f"password={self.admin_password} dbname={database or self.database}"
        )


@dataclass(frozen=True)
class StackConnections:
    mariadb: MariaDbConnection
    kafka: KafkaConnection
    postgres: PostgresConnection
    # absent in a connections file written before the source cluster existed
    pgsource: PgSourceConnection | None = None

    def write(self, state_dir: Path) -> Path:
        path = state_dir / CONNECTIONS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, state_dir: Path) -> StackConnections:
        path = state_dir / CONNECTIONS_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path} not found: the dev stack is not up; run `cdc dev up` first"
            ) from None
        return cls(
            mariadb=MariaDbConnection(**raw["mariadb"]),
            kafka=KafkaConnection(**raw["kafka"]),
            postgres=PostgresConnection(**raw["postgres"]),
            pgsource=PgSourceConnection(**raw["pgsource"]) if raw.get("pgsource") else None,
        )


def default_state_dir() -> Path:
    """`.devstack/` in the current directory unless HEADWATER_DEVSTACK_DIR says otherwise."""
    return Path(os.environ.get("HEADWATER_DEVSTACK_DIR", ".devstack")).resolve()
