"""Reading a PostgreSQL table's rows in key chunks, each in its own short REPEATABLE READ view.

The chunk's watermark is the view itself, read in it with no write to the source:
- ``pg_current_wal_insert_lsn()``, evaluated after the view's snapshot was taken, is the high
  watermark H: every transaction the view holds wrote its commit record before H;
- ``pg_current_snapshot()`` names the transactions the view does *not* hold (those in progress when
  it was taken, and those begun after). A transaction can write its commit record (and so take its
  place in the stream, which is in commit-LSN order) a little before it becomes visible to new
  snapshots, so "committed before H" alone does not say "in the view": the merge also drops a row
  whose key the stream last changed in a transaction the view does not see (``stale_keys``).
The chunk goes out once the stream has passed H (snapshotter/merge.py, as for MariaDB). After each
chunk a non-transactional logical message (the daemon's heartbeat, which writes WAL but no table)
is emitted, so that the stream reaches H at once even while the captured tables are idle, instead of
at the next heartbeat.

Values are read as the types' text output and converted by the stream decoder's converters
(cdc/sources/postgresql/snapshot.py), so a chunk row equals the row the stream would carry. Chunks
follow the primary key by keyset (``WHERE (k1, k2) > (a, b) ORDER BY k1, k2 LIMIT n``, never
OFFSET); the row comparison uses the columns' own collations, as ORDER BY does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from cdc.core.errors import SourceAccessDenied, SourceUnavailable, TableHasNoKey
from cdc.core.events import RowImage
from cdc.core.positions import RestartPoint, lsn_position
from cdc.core.schemas import TableRef, TableSchema
from cdc.sources.postgresql.reader import SESSION_OPTIONS
from cdc.sources.postgresql.server import PgSettings, emit_heartbeat, parse_lsn
from cdc.sources.postgresql.snapshot import TextLoader, convert_row, table_shape
from snapshotter.reader import TableNotFound
from snapshotter.tracking import Place

__all__ = ["PgChunk", "PgChunkReader", "ViewXids", "Where", "after_key", "select_rows"]

_XID_MOD = 1 << 32
# builds a chunk's WHERE clause and its parameters, given the table's schema as the view sees it
Where = Callable[[TableSchema], tuple[sql.Composable, list[object]]]


@dataclass(frozen=True, slots=True)
class ViewXids:
    """Which transactions a view holds, by 32-bit xid (what pgoutput sends): ``pg_current_snapshot()``."""

    xmax: int  # the first xid not yet assigned when the view was taken
    in_progress: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> ViewXids:
        """From ``xmin:xmax:xip,...`` (64-bit xids, epoch included)."""
        _xmin, xmax, xip = text.split(":")
        return cls(int(xmax) % _XID_MOD, frozenset(int(x) % _XID_MOD for x in xip.split(",") if x))

    def sees(self, xid: int) -> bool:
        if xid in self.in_progress:
            return False
        # xid at or after xmax (modulo 2**32, as PostgreSQL compares normal xids): begun after the view
        return not (0 <= (xid - self.xmax) % _XID_MOD < (1 << 31))


@dataclass(frozen=True, slots=True)
class PgChunk:
    schema: TableSchema
    rows: tuple[RowImage, ...]
    last_key: RowImage | None
    at: RestartPoint  # the high watermark H, a boundary in the stream's commit-LSN order
    complete: bool
    elapsed_s: float
    view: ViewXids

    def stale_keys(
        self, changed: Mapping[RowImage, Place], changed_by: Mapping[RowImage, int], at: Place
    ) -> set[RowImage]:
        """Keys whose rows the merge must drop (snapshotter/merge.py): the stream changed them last at
        or after the watermark, or in a transaction this view does not hold (the module's docstring)."""
        sees = self.view.sees
        return {k for k, p in changed.items() if p >= at or not sees(changed_by.get(k, -1))}


class PgChunkReader:
    """A ChunkReader (snapshotter/chunk_feed.py) over one PostgreSQL connection."""

    def __init__(self, settings: PgSettings) -> None:
        self._settings = settings
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self._settings.dsn(), options=SESSION_OPTIONS, autocommit=True)
            except psycopg.OperationalError as exc:
                raise SourceUnavailable(
                    f"PostgreSQL source {self._settings!r} unreachable (bootstrap chunk): {str(exc).strip()}"
                ) from None
        return self._conn

    def read_chunk(self, ref: TableRef, after: RowImage | None, limit: int) -> PgChunk:
        chunk = self._read(ref, after_key(after), limit + 1)
        complete = len(chunk.rows) <= limit
        rows = chunk.rows if complete else chunk.rows[:limit]
        key_of = chunk.schema.key_indexes()
        last = tuple(rows[-1][i] for i in key_of) if rows else after
        return PgChunk(chunk.schema, rows, last, chunk.at, complete, chunk.elapsed_s, chunk.view)

    def read_keys(self, ref: TableRef, keys: Sequence[RowImage]) -> PgChunk:
        def where(schema: TableSchema) -> tuple[sql.Composable, list[object]]:
            columns = _key_columns(schema)
            one = sql.SQL("({})").format(sql.SQL(", ").join(sql.SQL("%s::" + t) for _, t in columns))
            cond = sql.SQL(" WHERE ({}) IN ({})").format(
                sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns),
                sql.SQL(", ").join(one for _ in keys) if keys else sql.SQL("NULL"),
            )
            return cond, [v for k in keys for v in k]

        chunk = self._read(ref, where, None)
        key_of = chunk.schema.key_indexes()
        last = tuple(chunk.rows[-1][i] for i in key_of) if chunk.rows else None
        return PgChunk(chunk.schema, chunk.rows, last, chunk.at, True, chunk.elapsed_s, chunk.view)

    def _read(self, ref: TableRef, where: Where, limit: int | None) -> PgChunk:
        conn = self._connection()
        started = time.monotonic()
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                # the first statement takes the view's snapshot; the functions run after it
                row = conn.execute(
                    "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text"
                ).fetchone()
                assert row is not None
                view, high = ViewXids.parse(str(row[0])), parse_lsn(str(row[1]))
                schema, rows = select_rows(conn, self._settings.user, ref, where, limit)
            finally:
                conn.execute("ROLLBACK")
            # the stream reaches H at once, even while the captured tables are idle
            emit_heartbeat(conn)
        except psycopg.OperationalError as exc:
            conn.close()
            raise SourceUnavailable(f"reading a bootstrap chunk of {ref}: {str(exc).strip()}") from None
        at = RestartPoint(lsn_position(high, 0, 0))
        return PgChunk(schema, rows, None, at, True, time.monotonic() - started, view)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def after_key(after: RowImage | None) -> Where:
    """Keyset: the rows after ``after`` in key order (all rows for None)."""

    def where(schema: TableSchema) -> tuple[sql.Composable, list[object]]:
        if after is None:
            return sql.SQL(""), []
        keys = _key_columns(schema)
        cond = sql.SQL(" WHERE ({}) > ({})").format(
            sql.SQL(", ").join(sql.Identifier(c) for c, _ in keys),
            sql.SQL(", ").join(sql.SQL("%s::" + t) for _, t in keys),
        )
        return cond, list(after)

    return where


def select_rows(
    conn: psycopg.Connection[tuple[object, ...]], user: str, ref: TableRef, where: Where, limit: int | None
) -> tuple[TableSchema, tuple[RowImage, ...]]:
    """The table's schema and rows (``where``, key order, at most ``limit``) in the open transaction's
    view, as the stream's decoder gives them."""
    shape = table_shape(conn, ref.db, ref.table)
    if shape is None:
        raise TableNotFound(ref)
    schema = shape.schema
    if not schema.primary_key:
        raise TableHasNoKey(str(ref))
    cond, params = where(schema)
    query = sql.SQL("SELECT {} FROM {}{} ORDER BY {}{}").format(
        sql.SQL(", ").join(sql.Identifier(c.name) for c in schema.columns),
        sql.Identifier(ref.db, ref.table),
        cond,
        sql.SQL(", ").join(sql.Identifier(c) for c in schema.primary_key),
        sql.SQL("") if limit is None else sql.SQL(" LIMIT {}").format(sql.Literal(limit)),
    )
    cur = conn.cursor()
    for type_oid in shape.type_oids:
        cur.adapters.register_loader(type_oid, TextLoader)
    try:
        cur.execute(query, params)
    except psycopg.errors.InsufficientPrivilege:
        raise SourceAccessDenied(
            f"role {user!r} cannot read {ref} for the bootstrap: GRANT SELECT ON {ref} TO {user}"
        ) from None
    raw = cur.fetchall()
    return schema, tuple(convert_row(schema, shape.converters, r) for r in raw)  # type: ignore[arg-type]


def _key_columns(schema: TableSchema) -> list[tuple[str, str]]:
    """The key's columns with their SQL types: values bound as ``%s::type`` compare in the column's type."""
    types = {c.name: c.source_type for c in schema.columns}
    return [(name, types[name]) for name in schema.primary_key]
