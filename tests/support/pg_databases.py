"""A throwaway database on the dev stack's PostgreSQL source cluster, with its slot dropped after."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import psycopg

from cdc.devstack.connections import PgSourceConnection

__all__ = ["pg_source_database"]


@contextlib.contextmanager
def pg_source_database(conn: PgSourceConnection, prefix: str) -> Iterator[str]:
    """A new database ``<prefix>_<random>``; afterwards its replication slot (named like the
    database, as the tests name it) and the database are dropped, whoever still uses them."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(conn.admin_conninfo("postgres"), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with psycopg.connect(conn.admin_conninfo("postgres"), autocommit=True) as c:
            c.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s"
                " AND active_pid IS NOT NULL",
                (name,),
            )
            c.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (name,),
            )
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")
