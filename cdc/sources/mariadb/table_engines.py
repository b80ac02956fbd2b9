"""Whether a MariaDB table is transactional, read from information_schema when the decoder asks.

The decoder asks only for tables written inside a group that also wrote a non-transactional table
(see savepoints.py), so an InnoDB-only workload never queries this.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NON_TRANSACTIONAL_ENGINES", "is_transactional"]

# Engines whose changes survive a ROLLBACK (has_transactions() is false in the server).
NON_TRANSACTIONAL_ENGINES = frozenset(
    {"myisam", "aria", "memory", "heap", "csv", "archive", "mrg_myisam", "blackhole"}
)


_ENGINE_QUERY = "SELECT engine FROM information_schema.tables WHERE table_schema = %s AND table_name = %s"


def is_transactional(cur: Any, db: str, table: str) -> bool:
    """Whether ``db.table`` is transactional, asked on the cursor ``cur``.

    An unknown table (dropped since) counts as transactional: its rolled-back rows are then dropped,
    as they would be for InnoDB, the default engine. (The engine is the table's engine now, not when
    the binlog was written: a table whose engine changed since is judged by its new one.)
    """
    cur.execute(_ENGINE_QUERY, (db, table))
    row = cur.fetchone()
    engine = row[0] if row else None
    return engine is None or str(engine).lower() not in NON_TRANSACTIONAL_ENGINES
