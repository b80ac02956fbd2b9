"""A PostgreSQL source table as the reconciler compares it, and its positions (WAL LSNs).

The columns are typed as the capture types them (``cdc.sources.postgresql.values.arrow_type`` over
the catalog's type oid and typmod), so the canonical form (reconciler/canonical.py) is chosen exactly
as for the values the copies received. A value the capture keeps as PostgreSQL's own text (enums,
arrays, json/jsonb, uuid, inet, interval, char(n), unconstrained numeric...) is read here through
the type's output function (``concat``), the one pgoutput uses: a cast to text is not always it
(``char(n)`` loses its padding, ``inet`` gains a netmask). The session runs with the replication
session's settings (DateStyle, IntervalStyle, TimeZone, extra_float_digits), which shape that text.

Lag is not drift: a re-check reads the source in a REPEATABLE READ snapshot and pairs it with
``pg_current_wal_insert_lsn()`` read inside it. Every transaction the snapshot sees wrote its commit
record before that position (the insert position, not ``pg_current_wal_lsn()``'s write position: with
``synchronous_commit = off`` a transaction is visible before its commit record is written out), so a
copy whose restart point is at or past it holds every change the snapshot saw.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cdc.config.models import PostgresSourceConfig
from cdc.core.errors import ConfigError
from cdc.core.positions import RestartPoint
from cdc.core.schemas import ArrowKind, TableRef
from cdc.core.table_filter import TableFilter
from cdc.sources.postgresql.values import arrow_type
from reconciler.canonical import Engine, quote
from reconciler.model import CompareColumn
from reconciler.settle import Point, Query
from reconciler.stores import SqlRunner, Store
from reconciler.targets import ColumnLookup, SourceTable, keyed_columns

__all__ = ["LsnPoint", "PgSide", "list_pg_tables", "open_pg_source", "pg_source_runner"]

# text types whose cast to text is their output: read as they are (and a key of them keeps its index)
_PLAIN_TEXT = frozenset({"text", "varchar"})


@dataclass(frozen=True, slots=True)
class LsnPoint:
    """A WAL position: every transaction a snapshot paired with it sees committed before it."""

    lsn: int

    def __str__(self) -> str:
        return f"{self.lsn >> 32:X}/{self.lsn & 0xFFFFFFFF:X}"  # PostgreSQL's own text form

    def covered_by(self, resume: RestartPoint | None) -> bool:
        if resume is None:
            return False
        at = resume.transaction.lsn
        if at is None:
            return False  # a MariaDB position: not this source's
        # a restart after snapshot rows placed at an anchor resumes at the boundary one byte later
        return at + (1 if resume.transaction.is_snapshot_anchor else 0) >= self.lsn


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def pg_source_runner(config: PostgresSourceConfig, session_options: str) -> SqlRunner:
    """``session_options``: the replication session's (cdc.sources.postgresql.reader.SESSION_OPTIONS),
    so that values read here have the text the capture received."""
    url = sa.URL.create(
        "postgresql+psycopg",
        username=config.user,
        password=config.password.get_secret_value() or None,
        host=config.host,
        port=config.port,
        database=config.database,
    )
    connect_args = {
        "options": session_options,
        "connect_timeout": max(1, int(config.connect_timeout_seconds)),
    }
    engine = sa.create_engine(url, pool_size=4, pool_pre_ping=True, connect_args=connect_args)
    return SqlRunner(engine, Engine.POSTGRESQL)


class PgSide:
    """The source's position now, and REPEATABLE READ snapshots named by the WAL position read in them."""

    engine = Engine.POSTGRESQL

    def __init__(self, runner: SqlRunner) -> None:
        self._runner = runner

    def current(self) -> LsnPoint | None:
        return LsnPoint(_lsn(str(self._runner.query("SELECT pg_current_wal_insert_lsn()::text", ())[0][0])))

    @contextmanager
    def snapshot(self) -> Iterator[tuple[Point, Query]]:
        with self._runner.sa_engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            try:
                # the first statement takes the snapshot; the function runs after it is taken
                lsn = _lsn(str(conn.exec_driver_sql("SELECT pg_current_wal_insert_lsn()::text").scalar_one()))

                def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                    return [
                        tuple(r) for r in conn.exec_driver_sql(self._runner.driver_sql(sql), tuple(params))
                    ]

                yield LsnPoint(lsn), run
            finally:
                conn.rollback()


def list_pg_tables(runner: SqlRunner, captured: TableFilter) -> list[TableRef]:
    """The source database's tables (schema.table) that the pipeline captures."""
    rows = runner.query(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
        (),
    )
    return [TableRef(str(s), str(t)) for s, t in rows if captured.accepts(str(s), str(t))]


def open_pg_source(runner: SqlRunner, ref: TableRef, lookup: ColumnLookup | None = None) -> SourceTable:
    """The source table's columns, typed as the capture types them, and its primary key; with
    ``lookup``, the columns as the column policies leave them."""
    rows = runner.query(
        "SELECT a.attname, a.atttypid, a.atttypmod, a.attnotnull, t.typname FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE n.nspname = ? AND c.relname = ? AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (ref.db, ref.table),
    )
    if not rows:
        raise ConfigError(f"source table {ref} does not exist (or the source user cannot see it)")
    columns: list[CompareColumn] = []
    type_names: dict[str, str] = {}
    for name, oid, typmod, not_null, type_name in rows:
        arrow = arrow_type(int(oid), int(typmod))
        columns.append(CompareColumn(str(name), arrow.kind, arrow.scale, arrow.precision, not bool(not_null)))
        type_names[str(name)] = str(type_name)
    key_names = [
        str(r[0])
        for r in runner.query(
            "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n) ON true"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            " WHERE n.nspname = ? AND c.relname = ? AND i.indisprimary ORDER BY k.n",
            (ref.db, ref.table),
        )
    ]
    key, compared = keyed_columns(ref, tuple(columns), key_names, lookup)
    table_sql = _table_sql(ref, columns, type_names)
    return SourceTable(ref, runner, Store(runner, table_sql, key, compared), PgSide(runner))


def _table_sql(ref: TableRef, columns: list[CompareColumn], type_names: dict[str, str]) -> str:
    """The table, or a view of it whose text-kept columns read as pgoutput sent them. PostgreSQL
    pulls such a subquery up into the query, so conditions on the key still use its index."""
    table = f"{quote(Engine.POSTGRESQL, ref.db)}.{quote(Engine.POSTGRESQL, ref.table)}"
    shown, plain = [], True
    for c in columns:
        name = quote(Engine.POSTGRESQL, c.name)
        if c.kind is ArrowKind.STRING and type_names[c.name] not in _PLAIN_TEXT:
            # concat() calls the type's output function; it turns NULL into '': keep NULL NULL
            shown.append(f"CASE WHEN {name} IS NULL THEN NULL ELSE concat({name}) END AS {name}")
            plain = False
        else:
            shown.append(name)
    return table if plain else f"(SELECT {', '.join(shown)} FROM {table}) AS hw_source"
