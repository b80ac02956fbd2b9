"""Whether a MariaDB table is transactional, read from information_schema when the decoder asks.

The decoder asks only for tables written inside a group that also wrote a non-transactional table
(see savepoints.py), so an InnoDB-only workload never queries this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ENGINE_QUERY", "NON_TRANSACTIONAL_ENGINES", "engine_is_transactional", "transactional_lookup"]

# Engines whose changes survive a ROLLBACK (has_transactions() is false in the server).
NON_TRANSACTIONAL_ENGINES = frozenset(
    {"myisam", "aria", "memory", "heap", "csv", "archive", "mrg_myisam", "blackhole"}
)


ENGINE_QUERY = "SELECT engine FROM information_schema.tables WHERE table_schema = %s AND table_name = %s"


def engine_is_transactional(engine: object) -> bool:
    """An unknown table (dropped since) counts as transactional: its rolled-back rows are then
    dropped, as they would be for InnoDB, the default engine. (The engine is the table's engine now,
    not when the binlog was written: a table whose engine changed since is judged by its new one.)"""
    return engine is None or str(engine).lower() not in NON_TRANSACTIONAL_ENGINES


def transactional_lookup(connect: Callable[[], Any]) -> Callable[[str, str], bool]:
    """``(db, table) -> transactional?`` over connections from ``connect`` (a pymysql connection
    factory)."""

    def is_transactional(db: str, table: str) -> bool:
        with connect() as conn, conn.cursor() as cur:
            cur.execute(ENGINE_QUERY, (db, table))
            row = cur.fetchone()
        return engine_is_transactional(row[0] if row else None)

    return is_transactional
