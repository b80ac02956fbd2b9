"""Whether a MariaDB table is transactional, read from information_schema when the decoder asks.

The decoder asks only for tables written inside a group that also wrote a non-transactional table
(see savepoints.py), so an InnoDB-only workload never queries this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["NON_TRANSACTIONAL_ENGINES", "transactional_lookup"]

# Engines whose changes survive a ROLLBACK (has_transactions() is false in the server).
NON_TRANSACTIONAL_ENGINES = frozenset(
    {"myisam", "aria", "memory", "heap", "csv", "archive", "mrg_myisam", "blackhole"}
)


def transactional_lookup(connect: Callable[[], Any]) -> Callable[[str, str], bool]:
    """``(db, table) -> transactional?`` over connections from ``connect`` (a pymysql connection
    factory). An unknown table (dropped since) counts as transactional: its rolled-back rows are
    then dropped, as they would be for InnoDB, the default engine."""

    def is_transactional(db: str, table: str) -> bool:
        with connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT engine FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                (db, table),
            )
            row = cur.fetchone()
        return row is None or row[0] is None or str(row[0]).lower() not in NON_TRANSACTIONAL_ENGINES

    return is_transactional
