"""PostgreSQL fast path: COPY rows into a temporary staging table, then one set-based statement.

``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` for upserts and ``DELETE ... USING`` for deletes run
about twice as fast as executemany (benchmarks/sink_sql_bench.py). The staging tables live in the
batch's transaction, on the same connection, so atomicity is unchanged: made per call
(``ON COMMIT DROP``), or, given the connection's :class:`~sinks.sql.pg_stages.Stages`, made once per
session and emptied at each commit. Inserts of keys the table does not hold go faster still straight
into the table (:func:`copy_insert`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects import postgresql

from sinks.sql.names import quoted
from sinks.sql.pg_stages import KeysExist, Stages

__all__ = ["copy_delete", "copy_insert", "copy_upsert"]

_names = itertools.count()


def _copy(
    conn: sa.Connection,
    into: sql.Composable,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    # binary COPY: ~1.4x the rows/s of text COPY (psycopg dumps each value by the column's type name)
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        into, sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    )
    raw: Any = conn.connection.driver_connection  # the psycopg connection, inside our transaction
    with raw.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


def _stage(
    conn: sa.Connection,
    target: sa.Table,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
    stages: Stages | None,
    purpose: str,
) -> sa.Table:
    made = stages is None  # made here for this call, dropped after it
    name = f"_hw_stage_{next(_names)}" if stages is None else stages.stage(conn, target, purpose, columns)
    stage = sa.Table(
        name,
        sa.MetaData(),
        *(sa.Column(quoted(c), target.c[c].type) for c in columns),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    if made:
        stage.create(conn)
    _copy(conn, sql.Identifier(stage.name), columns, types, rows)
    return stage


def copy_insert(
    conn: sa.Connection,
    target: sa.Table,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """``rows`` COPYed straight into ``target``; :class:`KeysExist` if it holds one of their keys
    (the transaction is then aborted: the caller rolls it back and upserts instead)."""
    into = sql.Identifier(target.schema, target.name) if target.schema else sql.Identifier(target.name)
    try:
        _copy(conn, into, columns, types, rows)
    except psycopg.errors.UniqueViolation as exc:
        raise KeysExist(target.name) from exc


def copy_upsert(
    conn: sa.Connection,
    target: sa.Table,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
    primary_key: Sequence[str],
    stages: Stages | None = None,
) -> None:
    stage = _stage(conn, target, columns, types, rows, stages, "upsert")
    insert = postgresql.insert(target).from_select(list(columns), sa.select(*stage.c))
    updates = {name: insert.excluded[name] for name in columns if name not in primary_key}
    if updates:
        stmt = insert.on_conflict_do_update(index_elements=list(primary_key), set_=updates)
    else:
        stmt = insert.on_conflict_do_nothing(index_elements=list(primary_key))
    conn.execute(stmt)
    if stages is None:
        conn.execute(sa.schema.DropTable(stage))


def copy_delete(
    conn: sa.Connection,
    target: sa.Table,
    primary_key: Sequence[str],
    types: Sequence[str],
    keys: Sequence[Sequence[Any]],
    stages: Stages | None = None,
) -> None:
    stage = _stage(conn, target, primary_key, types, keys, stages, "delete")
    conn.execute(sa.delete(target).where(sa.and_(*(target.c[k] == stage.c[k] for k in primary_key))))
    if stages is None:
        conn.execute(sa.schema.DropTable(stage))
