"""The first start's bootstrap: every captured table read in the snapshot the slot was created with.

``CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT`` makes the slot and exports the snapshot at its
consistent point C: a transaction that imports it (``SET TRANSACTION SNAPSHOT``) sees exactly what
committed before C, and the slot streams exactly what commits from C on. The rows go out as op ``r``
at snapshot anchors just before C (``lsn_position(C - 1, i, anchor=True)``), one source transaction
for the whole snapshot: it is committed (to Kafka) whole or not at all. A crash before that commit
leaves the checkpoint "snapshot pending", and the next start drops the slot (nothing of it was
committed) and begins again with a new one.

Values are read as the types' text output in the same session settings as the replication stream,
and converted by the same converters, so a snapshot row equals the row the stream would carry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import psycopg.adapt
from psycopg import sql

from cdc.core.errors import SourceAccessDenied, UnsupportedColumnType
from cdc.core.events import ChangeEvent, ColumnValue, Op, SourceProgress, SourceRecord, TransactionEnd
from cdc.core.positions import RestartPoint, lsn_position
from cdc.core.schemas import TableRef, TableSchema
from cdc.core.table_filter import TableFilter
from cdc.sources.postgresql.pgoutput import build_schema
from cdc.sources.postgresql.server import PgSettings, captured_tables, catalog_columns
from cdc.sources.postgresql.values import Converter, converter

__all__ = [
    "SNAPSHOT_TRANSACTION",
    "TableShape",
    "TextLoader",
    "convert_row",
    "snapshot_records",
    "table_shape",
]

SNAPSHOT_TRANSACTION = "0-0-0"  # snapshot rows belong to no source transaction
_FETCH = 5_000


class TextLoader(psycopg.adapt.Loader):
    """A value as its type's text output, undecoded (what pgoutput sends)."""

    def load(self, data: psycopg.abc.Buffer) -> bytes:
        return bytes(data)


@dataclass(frozen=True, slots=True)
class TableShape:
    """A table as the snapshot reads it: its schema (the same version as the stream's), a converter
    per column (None: the text as it is) and the type oids whose text output is read."""

    schema: TableSchema
    converters: tuple[Converter | None, ...]
    type_oids: tuple[int, ...]


def table_shape(conn: psycopg.Connection[tuple[object, ...]], namespace: str, name: str) -> TableShape | None:
    """The table's shape from the catalog (as the connection's snapshot sees it); None if no such table."""
    found = conn.execute(
        "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (namespace, name),
    ).fetchone()
    if found is None:
        return None
    relid, identity = int(str(found[0])), str(found[1])
    attrs = conn.execute(
        "SELECT attname, atttypid, atttypmod FROM pg_attribute WHERE attrelid = %s AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum",
        (relid,),
    ).fetchall()
    columns = [(0, str(a[0]), int(str(a[1])), int(str(a[2]))) for a in attrs]
    schema = build_schema(TableRef(namespace, name), columns, identity, catalog_columns(conn, relid))
    return TableShape(
        schema, tuple(converter(c.arrow_type.kind) for c in schema.columns), tuple(c[2] for c in columns)
    )


def snapshot_records(
    settings: PgSettings,
    options: str,
    snapshot: str,
    consistent_lsn: int,
    tables: TableFilter,
    *,
    truncate_first: bool = False,
) -> Iterator[SourceRecord]:
    """The snapshot's rows, then its end (a TransactionEnd, or a SourceProgress at C if no row).
    ``truncate_first`` (a bootstrap afresh, after lost changes): each table's rows follow an op ``t``
    in the same transaction, so its copies lose the rows deleted while changes were lost."""
    ts_ms = int(time.time() * 1000)
    anchor = lsn_position(consistent_lsn - 1, 0, 0, anchor=True)
    row = 0
    with psycopg.connect(settings.dsn(), options=options) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        for namespace, name in captured_tables(conn):
            if not tables.accepts(namespace, name):
                continue
            shape = table_shape(conn, namespace, name)
            assert shape is not None
            schema, converters, type_oids = shape.schema, shape.converters, shape.type_oids
            key_indexes = schema.key_indexes()
            if truncate_first:
                yield ChangeEvent(
                    Op.TRUNCATE, schema, None, None, None, anchor.at_row(row), ts_ms, SNAPSHOT_TRANSACTION
                )
                row += 1
            cur = conn.cursor(name=f"headwater_snapshot_{row}")
            for type_oid in type_oids:
                cur.adapters.register_loader(type_oid, TextLoader)
            select = sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(sql.Identifier(c.name) for c in schema.columns),
                sql.Identifier(namespace, name),
            )
            try:
                cur.execute(select)
            except psycopg.errors.InsufficientPrivilege:
                raise SourceAccessDenied(
                    f"role {settings.user!r} cannot read {namespace}.{name} for the bootstrap: "
                    f"GRANT SELECT ON {namespace}.{name} TO {settings.user} (or bootstrap.mode: never)"
                ) from None
            while batch := cur.fetchmany(_FETCH):
                for raw in batch:
                    after = convert_row(schema, converters, raw)
                    key = tuple(after[i] for i in key_indexes) if key_indexes else None
                    yield ChangeEvent(
                        Op.READ, schema, key, None, after, anchor.at_row(row), ts_ms, SNAPSHOT_TRANSACTION
                    )
                    row += 1
            cur.close()
        conn.rollback()
    if row:
        yield TransactionEnd(SNAPSHOT_TRANSACTION, anchor.at_row(row - 1), row, ts_ms)
    else:
        yield SourceProgress(RestartPoint(lsn_position(consistent_lsn, 0, 0)), ts_ms)


def convert_row(
    schema: TableSchema, converters: tuple[Converter | None, ...], raw: tuple[bytes | None, ...]
) -> tuple[ColumnValue, ...]:
    """A row read as text output -> the values the stream's decoder gives for it."""
    ref = schema.ref
    values: list[ColumnValue] = []
    for column, conv, value in zip(schema.columns, converters, raw, strict=True):
        if value is None:
            values.append(None)
        elif conv is None:
            values.append(value.decode("utf-8", "surrogateescape"))
        else:
            try:
                values.append(conv(value))
            except ValueError as exc:
                raise UnsupportedColumnType(
                    ref.db, ref.table, column.name, f"{column.source_type}: {exc}"
                ) from None
    return tuple(values)
