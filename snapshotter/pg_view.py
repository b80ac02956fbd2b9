"""`cdc bootstrap --sink` from PostgreSQL: every chunk read in one view at an exact stream boundary.

A sink fill needs a view whose boundary is exact: the sink's position is set to it, and the stream
feeds the sink every change after it and none before (snapshotter/sink_fill.py). A REPEATABLE READ
snapshot is not such a cut of the commit-LSN order (a transaction writes its commit record a little
before it turns visible: snapshotter/pg_reader.py), but the snapshot a new replication slot exports
is: ``CREATE_REPLICATION_SLOT ... TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT`` returns the slot's
consistent point C, and the exported snapshot holds exactly the transactions that committed before
C. The temporary slot serves only that and goes with its connection, which is closed as soon as the
fill's own transaction has imported the snapshot (``SET TRANSACTION SNAPSHOT``); the pipeline's slot
is not touched. The fill's transaction stays open (read only) until the fill ends, like MariaDB's
one view.
"""

from __future__ import annotations

import os
import secrets
import time

import psycopg
import psycopg2
import psycopg2.extras
from psycopg import sql

from cdc.core.errors import SourceAccessDenied, SourceUnavailable
from cdc.core.events import RowImage
from cdc.core.positions import RestartPoint, lsn_position
from cdc.core.schemas import TableRef, TableSchema
from cdc.sources.postgresql.reader import SESSION_OPTIONS
from cdc.sources.postgresql.server import PgSettings, parse_lsn
from cdc.sources.postgresql.snapshot import table_shape
from snapshotter.pg_reader import after_key, select_rows
from snapshotter.reader import ChunkRead, TableNotFound

__all__ = ["PgViewReader"]


class PgViewReader:
    """The reader `cdc bootstrap --sink` uses (the shape of snapshotter.reader.SnapshotReader with
    ``one_view=True``): ``table_schema``, ``read_chunk``, ``close``."""

    def __init__(self, settings: PgSettings) -> None:
        self._settings = settings
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._at: RestartPoint | None = None

    def _view(self) -> tuple[psycopg.Connection[tuple[object, ...]], RestartPoint]:
        if self._conn is not None and self._at is not None:
            return self._conn, self._at
        s = self._settings
        slot = f"headwater_fill_{os.getpid()}_{secrets.token_hex(4)}"
        try:
            repl = psycopg2.connect(
                host=s.host,
                port=s.port,
                user=s.user,
                password=s.password,
                dbname=s.database,
                connect_timeout=max(1, int(s.connect_timeout_s)),
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
            )
        except psycopg2.OperationalError as exc:
            raise SourceUnavailable(
                f"PostgreSQL replication connection to {s!r}: {str(exc).strip()}"
            ) from None
        try:
            cur = repl.cursor()
            try:
                cur.execute(f'CREATE_REPLICATION_SLOT "{slot}" TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT')
            except psycopg2.Error as exc:
                raise SourceAccessDenied(
                    f"creating the temporary replication slot {slot!r} for a consistent view (a free "
                    f"slot in max_replication_slots and the REPLICATION privilege): {str(exc).strip()}"
                ) from None
            row = cur.fetchone()
            assert row is not None
            consistent, snapshot = parse_lsn(str(row[1])), str(row[2])
            conn = psycopg.connect(s.dsn(), options=SESSION_OPTIONS, autocommit=True)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        except psycopg.OperationalError as exc:
            raise SourceUnavailable(f"opening a consistent view on {s!r}: {str(exc).strip()}") from None
        finally:
            repl.close()  # the imported snapshot lives on in the fill's transaction
        self._conn, self._at = conn, RestartPoint(lsn_position(consistent, 0, 0))
        return conn, self._at

    def table_schema(self, ref: TableRef) -> TableSchema:
        conn, _ = self._view()
        shape = table_shape(conn, ref.db, ref.table)
        if shape is None:
            raise TableNotFound(ref)
        return shape.schema  # the fill refuses a table without a key by name

    def read_chunk(self, ref: TableRef, after: RowImage | None, limit: int) -> ChunkRead:
        conn, at = self._view()
        started = time.monotonic()
        try:
            schema, rows = select_rows(conn, self._settings.user, ref, after_key(after), limit + 1)
        except psycopg.OperationalError as exc:
            self.close()
            raise SourceUnavailable(f"reading {ref} in the fill's view: {str(exc).strip()}") from None
        complete = len(rows) <= limit
        rows = rows if complete else rows[:limit]
        key_of = schema.key_indexes()
        last = tuple(rows[-1][i] for i in key_of) if rows else after
        return ChunkRead(schema, rows, last, at, complete, time.monotonic() - started)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._at = None, None
