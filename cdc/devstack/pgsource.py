"""The PostgreSQL *source* cluster: a second PostgreSQL 15 on its own port, ``wal_level=logical``.

The serving cluster (cdc/devstack/postgres.py) stays as the sinks' target; captured tables live here,
read through logical replication (pgoutput) by a least-privilege ``source`` role that has REPLICATION
and LOGIN and nothing else. Tests create their own databases (as the superuser) and grant the role
what the PostgreSQL source needs there (docs/postgresql.md).
"""

from __future__ import annotations

from psycopg import sql

from cdc.devstack.connections import PgSourceConnection
from cdc.devstack.postgres import Postgres
from cdc.devstack.settings import (
    LOOPBACK,
    PGSOURCE_DATABASE,
    PGSOURCE_PASSWORD,
    PGSOURCE_USER,
    POSTGRES_PASSWORD,
    POSTGRES_USER,
    ServiceName,
)

# Logical decoding, and room for the slots and walsenders of several engineers' tests at once.
PGSOURCE_SETTINGS: dict[str, str] = {
    "wal_level": "logical",
    "max_replication_slots": "64",
    "max_wal_senders": "64",
    "max_connections": "200",
    # a slot that falls this far behind is invalidated rather than filling the disk (tests for it)
    "max_slot_wal_keep_size": "4GB",
}


class PgSource(Postgres):
    name = ServiceName.PGSOURCE

    @property
    def port(self) -> int:
        return self.settings.pgsource_port

    def server_settings(self) -> dict[str, str]:
        return PGSOURCE_SETTINGS

    def connection(self) -> PgSourceConnection:  # type: ignore[override]
        return PgSourceConnection(
            host=LOOPBACK,
            port=self.port,
            user=PGSOURCE_USER,
            password=PGSOURCE_PASSWORD,
            database=PGSOURCE_DATABASE,
            admin_user=POSTGRES_USER,
            admin_password=POSTGRES_PASSWORD,
        )

    def after_ready(self) -> None:
        with self._connect("postgres") as conn:
            role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PGSOURCE_USER,)).fetchone()
            if role is None:
                conn.execute(
                    sql.SQL("CREATE ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(
                        sql.Identifier(PGSOURCE_USER), sql.Literal(PGSOURCE_PASSWORD)
                    )
                )
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (PGSOURCE_DATABASE,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PGSOURCE_DATABASE)))
