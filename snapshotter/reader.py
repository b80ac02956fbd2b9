"""Reading a table's rows in consistent views: keyset chunks, rows by key, or the whole table.

Each read happens inside ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` (REPEATABLE READ), and
``binlog_snapshot_file`` / ``binlog_snapshot_position``, read in that transaction, are the exact binlog
boundary of the view: every transaction before it is in the rows, none after it. No lock is taken and
nothing is written to the source. With ``one_view=False`` each chunk is its own transaction, committed
as soon as its rows are read, so nothing is held on the source between chunks; with ``one_view=True``
one transaction stays open until :meth:`SnapshotReader.release_view` or :meth:`close` (a direct
bootstrap: every ChunkRead has the same boundary). While that view is open the tables it has read keep
a shared metadata lock: an ALTER TABLE on them waits for it (and the writes queued behind the ALTER
with it), as with any long transaction.

A table altered while a chunk is read: the dictionary is read before the view starts and again after
the rows; when they differ (or InnoDB says the table definition changed, error 1412) the chunk is read
again in a fresh view, at most :data:`SCHEMA_RETRIES` times, then :class:`SchemaChangedDuringRead`
(transient) is raised. In one view the chunk cannot be re-read (the view is the point), so it is raised
at once.

The client is mysqlclient (C): measured in benchmarks/snapshot_read_bench.py against pymysql and
ConnectorX, values converted to the decoder's included.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import MySQLdb
import MySQLdb.converters
import MySQLdb.cursors

from cdc.core.errors import (
    HeadwaterError,
    TableHasNoKey,
    TerminalError,
    TransientError,
)
from cdc.core.events import RowImage
from cdc.core.positions import Gtid, GtidState, Position, RestartPoint
from cdc.core.schemas import TableRef, TableSchema
from cdc.sources.mariadb.connection_settings import ConnectionSettings
from cdc.sources.mariadb.value_codecs import ZeroDatePolicy
from snapshotter.keyset import ChunkSql, chunk_sql, keys_sql, whole_table_sql
from snapshotter.reader_connection import SnapshotReadError, connect_for_snapshot, text, translate_error
from snapshotter.table_dictionary import COLUMNS_QUERY, KEYS_QUERY, TableDictionary, build_dictionary
from snapshotter.text_columns import TextColumns
from snapshotter.values import (
    FieldConversions,
    RowConverter,
    compile_row_converter,
    quote_name,
    zero_date_fixer,
)

__all__ = [
    "SCHEMA_RETRIES",
    "ChunkRead",
    "SchemaChangedDuringRead",
    "SnapshotReadError",
    "SnapshotReader",
    "TableNotFound",
]

log = logging.getLogger(__name__)

SCHEMA_RETRIES = 3
_ER_TABLE_DEF_CHANGED = 1412
_ER_NO_SUCH_TABLE = 1146
_ER_SPECIFIC_ACCESS_DENIED = 1227
_STREAM_BATCH = 10_000  # rows per ChunkRead of read_all
# SHOW BINLOG EVENTS sends every event as a row (~100x slower per byte than BINLOG_GTID_POS's scan
# inside the server, measured): list a stretch only when it is that much shorter than the file so far
_EVENT_SCAN_BYTES = 8 << 20
_EVENT_SCAN_SHARE = 100
_EVENT_BATCH = 5_000
_GTID_INFO = re.compile(r"GTID (\d+)-(\d+)-(\d+)")
_AUTO_INCREMENT = re.compile(rb" AUTO_INCREMENT=\d+")


class SchemaChangedDuringRead(TransientError):
    """The table's shape changed while a chunk was read (DDL meanwhile); reading again may succeed."""

    def __init__(self, table: TableRef) -> None:
        self.table = table
        super().__init__(
            f"table {table} was altered while a snapshot chunk was read; read it again (the next chunk "
            "starts from the last one that completed)"
        )


class TableNotFound(TerminalError):
    def __init__(self, table: TableRef) -> None:
        self.table = table
        super().__init__(f"table {table} does not exist on the source (dropped or renamed?)")


@dataclass(frozen=True, slots=True)
class ChunkRead:
    schema: TableSchema  # equal (same version) to the binlog decoder's for this table
    # in primary-key order, values as the binlog decoder produces them; ArrowRows from
    # read_chunk_columns (tuples there too when a value does not fit its Arrow type)
    rows: Sequence[RowImage]
    last_key: RowImage | None  # key values of the last row (schema.primary_key order); None if no rows
    at: RestartPoint  # the view's binlog boundary; its GTID is informative
    complete: bool  # no row of the table lies after last_key
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class _Compiled:
    dictionary: TableDictionary
    convert: RowConverter | None
    fix_zero_dates: RowConverter
    key_indexes: tuple[int, ...]
    text: TextColumns  # the columnar path's conversion (read_chunk_columns)


class SnapshotReader:
    """One connection, used from one thread."""

    def __init__(self, settings: ConnectionSettings, zero_dates: ZeroDatePolicy, *, one_view: bool = False):
        self._settings = settings
        self._zero_dates = zero_dates
        self._one_view = one_view
        self._conn: Any = None
        self._view: RestartPoint | None = None  # the open view's boundary (one_view)
        self._compiled: dict[tuple[TableRef, bytes], _Compiled] = {}
        self._gtids: dict[tuple[str, int], Gtid] = {}
        self._state: tuple[str, int, dict[int, Gtid]] | None = None  # the last boundary's GTID state
        self._fields = FieldConversions()

    # -- connection and views ---------------------------------------------------------------------
    def _cursor(self) -> Any:
        if self._conn is None:
            self._conn = connect_for_snapshot(self._settings, self._fields)
        return self._conn.cursor()

    def _run(self, sql: str, params: Sequence[object] | None = None) -> tuple[tuple[Any, ...], ...]:
        with self._cursor() as cur:
            cur.execute(sql, params)
            return tuple(cur.fetchall())

    def _start_view(self) -> RestartPoint:
        self._run("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        status = {text(k).lower(): text(v) for k, v in self._run("SHOW STATUS LIKE 'binlog_snapshot_%'")}
        file, offset = status["binlog_snapshot_file"], int(status["binlog_snapshot_position"])
        return RestartPoint(Position(self._gtid_at(file, offset), file, offset, 0), 0)

    def _gtid_at(self, file: str, offset: int) -> Gtid:
        """The server's domain's last GTID at the boundary (informative: the boundary is file/offset).

        BINLOG_GTID_POS(file, offset) is exact but reads the binlog file from its start (~12 ms at
        64 MB here, 0.2-0.5 s at 700 MB on a busy server), which would be paid per chunk. When the
        binlog's end is still the view's boundary after @@gtid_binlog_pos was read, nothing was
        written since the view began, so @@gtid_binlog_pos is that same state and the scan is
        skipped. Otherwise the GTID events between the previous boundary and this one are listed
        (SHOW BINLOG EVENTS reads from an offset, not from the file's start), as long as that stretch
        is short; the scan from the start is the fallback.
        """
        known = self._gtids.get((file, offset))
        if known is not None:
            return known
        ((state, domain),) = self._run("SELECT @@gtid_binlog_pos, @@gtid_domain_id")
        end = self._run("SHOW MASTER STATUS")
        if end and (text(end[0][0]), int(text(end[0][1]))) == (file, offset):
            gtids = {g.domain: g for g in GtidState.parse(text(state or b"")).gtids}
        else:
            gtids = self._gtids_since_last(file, offset) or self._binlog_gtid_pos(file, offset)
        self._state = (file, offset, gtids)
        own = gtids.get(int(domain))
        known = own or (gtids[max(gtids)] if gtids else Gtid(int(domain), 0, 0))
        self._gtids = {(file, offset): known}  # the last boundary only: views move on
        return known

    def _binlog_gtid_pos(self, file: str, offset: int) -> dict[int, Gtid]:
        ((state,),) = self._run("SELECT BINLOG_GTID_POS(%s, %s)", (file, offset))
        return {g.domain: g for g in GtidState.parse(text(state or b"")).gtids}

    def _gtids_since_last(self, file: str, offset: int) -> dict[int, Gtid] | None:
        """The GTID state at ``offset``: the previous boundary's, advanced by the GTID events logged
        from there to ``offset``. None when the previous boundary is in another file, after this
        one, unknown, or too far back to list event by event."""
        if self._state is None:
            return None
        last_file, last_offset, gtids = self._state
        span = offset - last_offset
        if last_file != file or not 0 < span <= min(_EVENT_SCAN_BYTES, offset // _EVENT_SCAN_SHARE):
            return None
        out, at = dict(gtids), last_offset
        while at < offset:
            try:
                events = self._run("SHOW BINLOG EVENTS IN %s FROM %s LIMIT %s", (file, at, _EVENT_BATCH))
            except MySQLdb.OperationalError as exc:
                if exc.args and exc.args[0] == _ER_SPECIFIC_ACCESS_DENIED:
                    return None  # no BINLOG MONITOR privilege: the scan from the start still works
                raise
            if not events:
                return None
            for _log, start, kind, _server, _end, info in events:
                if int(text(start)) >= offset:
                    return out
                if text(kind) == "Gtid":
                    m = _GTID_INFO.search(text(info))
                    if m is None:
                        return None
                    g = Gtid(int(m[1]), int(m[2]), int(m[3]))
                    out[g.domain] = g
            at = int(text(events[-1][4]))  # the last event's end: the next one's start
        return out

    def _end_view(self) -> None:
        if self._conn is not None:
            self._run("COMMIT")

    def release_view(self) -> None:
        """Ends the open view (one_view); the next read starts a new one."""
        if self._view is not None:
            self._view = None
            self._end_view()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except MySQLdb.Error:
                log.debug("closing the snapshot connection failed", exc_info=True)
            self._conn = None
            self._view = None

    # -- the dictionary -----------------------------------------------------------------------------
    def _dictionary(self, ref: TableRef) -> _Compiled:
        """The table's compiled shape. SHOW CREATE TABLE (read from the table's definition, cheap) says
        whether it changed; information_schema is asked only then, because each of its queries builds
        an on-disk temporary table on the server, and a chunk checks the shape twice."""
        ((_name, create),) = self._run(f"SHOW CREATE TABLE {quote_name(ref.db)}.{quote_name(ref.table)}")
        # AUTO_INCREMENT=n moves with every insert; it is not the table's shape
        definition = _AUTO_INCREMENT.sub(b"", create if isinstance(create, bytes) else str(create).encode())
        compiled = self._compiled.get((ref, definition))
        if compiled is None:
            columns = self._run(COLUMNS_QUERY, (ref.db, ref.table))
            if not columns:
                raise TableNotFound(ref)
            d = build_dictionary(ref, columns, self._run(KEYS_QUERY, (ref.db, ref.table)))
            convert, fix = compile_row_converter(d), zero_date_fixer(d, self._zero_dates)
            compiled = _Compiled(d, convert, fix, d.schema.key_indexes(), TextColumns(d, self._zero_dates))
            if len(self._compiled) > 1000:  # a long-lived reader over many tables and many ALTERs
                self._compiled.clear()
            self._compiled[(ref, definition)] = compiled
        return compiled

    def table_schema(self, ref: TableRef) -> TableSchema:
        try:
            return self._dictionary(ref).dictionary.schema
        except MySQLdb.Error as exc:
            raise self._error(exc, ref) from exc

    # -- reads --------------------------------------------------------------------------------------
    def _in_view(self, ref: TableRef, query: Any, limit: int | None, columnar: bool = False) -> ChunkRead:
        """Runs ``query(dictionary) -> ChunkSql`` in a consistent view, with the schema checks."""
        fetch = self._fetch_columns if columnar else self._fetch
        started = time.perf_counter()
        attempts = 1 if self._one_view else SCHEMA_RETRIES
        for _attempt in range(attempts):
            try:
                before = self._dictionary(ref)
                if self._one_view:
                    at = self._view = self._view or self._start_view()
                else:
                    at = self._start_view()
                try:
                    rows = fetch(before, query(before.dictionary))
                    after = self._dictionary(ref)
                finally:
                    if not self._one_view:
                        self._end_view()
            except MySQLdb.OperationalError as exc:
                if exc.args and exc.args[0] == _ER_TABLE_DEF_CHANGED:
                    log.info("%s changed while a chunk was read (%s); reading it again", ref, exc.args[-1])
                    continue
                raise self._error(exc, ref) from exc
            except MySQLdb.Error as exc:
                raise self._error(exc, ref) from exc
            if after.dictionary != before.dictionary:
                log.info("%s was altered while a chunk was read; reading it again", ref)
                continue
            k = before.key_indexes
            last = tuple(rows[-1][i] for i in k) if rows and k else None
            complete = limit is None or len(rows) < limit
            return ChunkRead(
                before.dictionary.schema, rows, last, at, complete, time.perf_counter() - started
            )
        raise SchemaChangedDuringRead(ref)

    def _error(self, exc: Exception, ref: TableRef) -> HeadwaterError:
        if exc.args and exc.args[0] == _ER_NO_SUCH_TABLE:
            return TableNotFound(ref)
        error = translate_error(exc, self._settings, f"reading {ref}")
        if isinstance(error, TransientError):
            # the connection is gone or the transaction was rolled back: so is any open view, and
            # the next call reconnects; what to read again is the caller's call (the view moved)
            self.close()
        return error

    def _fetch(self, compiled: _Compiled, q: ChunkSql) -> tuple[RowImage, ...]:
        self._fields.zero_seen = False
        # streamed (use_result), not stored: the server produces rows while this side converts them
        with self._cursor_streaming() as cur:
            cur.execute(q.sql, q.params or None)
            rows = cur.fetchall()
        return self._finish(compiled, rows)

    def _fetch_columns(self, compiled: _Compiled, q: ChunkSql) -> Sequence[RowImage]:
        """The rows as Arrow columns (text_columns.py): fetched with no converter, every value the
        bytes the server sent."""
        if self._conn is None:
            self._conn = connect_for_snapshot(self._settings, self._fields)
        conn = self._conn
        saved, conn.converter = conn.converter, {}
        try:
            with conn.cursor(MySQLdb.cursors.SSCursor) as cur:
                cur.execute(q.sql, q.params or None)
                raw = cur.fetchall()
                field_types = tuple(int(f[1]) for f in cur.description)
        finally:
            conn.converter = saved
        return compiled.text.convert(raw, field_types)

    def _finish(self, compiled: _Compiled, rows: Sequence[tuple[Any, ...]]) -> tuple[RowImage, ...]:
        convert = compiled.convert
        out = tuple(rows) if convert is None else tuple(map(convert, rows))
        if self._fields.zero_seen:
            out = tuple(map(compiled.fix_zero_dates, out))
        return out

    def read_chunk(self, ref: TableRef, after: RowImage | None, limit: int) -> ChunkRead:
        """The next ``limit`` rows in primary-key order after the key ``after`` (None: from the start)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        compiled = self._dictionary_checked(ref)
        if not compiled.dictionary.schema.primary_key:
            raise TableHasNoKey(str(ref))
        return self._in_view(ref, lambda d: chunk_sql(d, after, limit), limit)

    def read_chunk_columns(self, ref: TableRef, after: RowImage | None, limit: int) -> ChunkRead:
        """``read_chunk``, with the rows as Arrow columns (sinks/arrow_rows.py)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        compiled = self._dictionary_checked(ref)
        if not compiled.dictionary.schema.primary_key:
            raise TableHasNoKey(str(ref))
        return self._in_view(ref, lambda d: chunk_sql(d, after, limit), limit, columnar=True)

    def read_keys(self, ref: TableRef, keys: Sequence[RowImage]) -> ChunkRead:
        """The rows of these keys that exist, in key order, in one view (for the reconciler's repair)."""
        compiled = self._dictionary_checked(ref)
        if not compiled.dictionary.schema.primary_key:
            raise TableHasNoKey(str(ref))
        keys = tuple(keys)
        return self._in_view(ref, lambda d: keys_sql(d, keys), None)

    def _dictionary_checked(self, ref: TableRef) -> _Compiled:
        try:
            return self._dictionary(ref)
        except MySQLdb.Error as exc:
            raise self._error(exc, ref) from exc

    def read_all(self, ref: TableRef, batch: int = _STREAM_BATCH) -> Iterator[ChunkRead]:
        """The whole table in one view, streamed in batches of ``batch`` rows (memory stays flat): for
        tables without a primary key. Rows come in the server's scan order. The connection is busy
        until the iterator is exhausted or closed."""
        started = time.perf_counter()
        try:
            compiled = self._dictionary(ref)
            at = (self._view or self._start_view()) if self._one_view else self._start_view()
            if self._one_view:
                self._view = at
            if self._dictionary(ref).dictionary != compiled.dictionary:
                # altered between the first look and the view; once the SELECT runs, its metadata
                # lock keeps DDL out until the view ends
                if not self._one_view:
                    self._end_view()
                raise SchemaChangedDuringRead(ref)
            cur = self._cursor_streaming()
            cur.execute(whole_table_sql(compiled.dictionary))
        except MySQLdb.Error as exc:
            raise self._error(exc, ref) from exc
        schema, k = compiled.dictionary.schema, compiled.key_indexes
        try:
            rows = self._next_batch(cur, batch, ref)
            while True:
                image = self._finish(compiled, rows)  # before the next fetch resets zero_seen
                # one batch ahead, so that the last ChunkRead says complete
                rows = self._next_batch(cur, batch, ref) if len(rows) == batch else ()
                done = not rows
                last = tuple(image[-1][i] for i in k) if image and k else None
                yield ChunkRead(schema, image, last, at, done, time.perf_counter() - started)
                started = time.perf_counter()
                if done:
                    break
        finally:
            cur.close()
            if not self._one_view:
                self._end_view()

    def _cursor_streaming(self) -> Any:
        if self._conn is None:
            self._conn = connect_for_snapshot(self._settings, self._fields)
        return self._conn.cursor(MySQLdb.cursors.SSCursor)

    def _next_batch(self, cur: Any, batch: int, ref: TableRef) -> tuple[tuple[Any, ...], ...]:
        self._fields.zero_seen = False
        try:
            return tuple(cur.fetchmany(batch))
        except MySQLdb.Error as exc:
            raise self._error(exc, ref) from exc
