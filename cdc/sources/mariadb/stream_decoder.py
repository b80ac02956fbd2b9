"""Raw binlog events in, ordered ``cdc.core`` records out: the MariaDB source's state machine.

Network-free on purpose, so that tests and benchmarks can feed it captured events. It tracks the
current binlog file (ROTATE), the transaction (GTID ... XID/COMMIT/ROLLBACK, or a standalone DDL),
compiles each TABLE_MAP once, and numbers every record of a transaction to give it a Position.

What it refuses, on a captured table (SourceSettingsError, naming table, position and fix): a
row-writing statement logged as a statement (a session with binlog_format=STATEMENT/MIXED: its rows
are not in the binlog) and a partial row image (binlog_row_image=MINIMAL/NOBLOB). Other tables'
statements and images are ignored, as are their rows.

What it emits besides row changes and DDL:
- an UPDATE that changes the primary key as a delete of the old key then a create of the new key,
  each with its own row index (keyless tables keep ``u``);
- SourceProgress after a transaction that touched no captured table (at most one every
  ``progress_interval_s``) and on each server heartbeat outside a transaction, so that a checkpoint
  can move through idle stretches. Its restart point is a boundary (``skip_rows == 0``): the place in
  the binlog where the next event starts, labelled with the last GTID seen.
Rows undone by ROLLBACK TO SAVEPOINT are dropped (see savepoints.py).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from cdc.core.errors import SourceProtocolError, TerminalError
from cdc.core.events import (
    ChangeEvent,
    Op,
    SchemaChange,
    SchemaChangeKind,
    SourceProgress,
    SourceRecord,
    TransactionEnd,
)
from cdc.core.positions import Gtid, GtidState, Position, ReadContext, RestartPoint
from cdc.core.schemas import TableRef, TableSchema
from cdc.sources.mariadb.binlog_format import HEADER_LEN, EventType, query_text, read_lenenc
from cdc.sources.mariadb.compiled_table import CompiledTable, key_getter, needs_extended_lookup
from cdc.sources.mariadb.ddl import SavepointKind, StatementKind, classify, savepoint_statement
from cdc.sources.mariadb.decoder_errors import partial_image, statement_logged, where
from cdc.sources.mariadb.gtid_tracking import GtidTracker, ResumeCheck
from cdc.sources.mariadb.native_rows import EVENT_MAKER, native_decoders
from cdc.sources.mariadb.row_decoder import CharsetOf, DecoderOptions, compile_rows_decoder
from cdc.sources.mariadb.savepoints import DEFAULT_HOLD_LIMIT, HeldGroup, Savepoints, apply_rollback
from cdc.sources.mariadb.table_filter import TableFilter
from cdc.sources.mariadb.table_map import parse_table_map
from cdc.sources.mariadb.type_mapping import table_schema

__all__ = ["ExtendedTypesOf", "StreamDecoder", "TransactionalOf"]

log = logging.getLogger(__name__)

ExtendedTypesOf = Callable[[str, str], tuple[tuple[str, str], ...]]
TransactionalOf = Callable[[str, str], bool]  # (db, table) -> does its engine roll back?

_HEADER = struct.Struct("<IBIIIH").unpack_from
_GTID_BODY = struct.Struct("<QIB").unpack_from
_U32 = 2**32 - 1
_FL_STANDALONE = 1
_FL_TRANSACTIONAL = 4  # cleared when the transaction also wrote a non-transactional table
_EXECUTE_LOAD_QUERY = 18  # LOAD DATA logged as a statement
_QUERY_POST_HEADER = {EventType.QUERY: 13, _EXECUTE_LOAD_QUERY: 26}
_DDL_KIND = {
    StatementKind.CREATE: SchemaChangeKind.CREATE,
    StatementKind.ALTER: SchemaChangeKind.ALTER,
    StatementKind.DROP: SchemaChangeKind.DROP,
    StatementKind.RENAME: SchemaChangeKind.RENAME,
}


class StreamDecoder:
    def __init__(
        self,
        charset_of: CharsetOf,
        *,
        table_filter: TableFilter | None = None,
        options: DecoderOptions | None = None,
        extended_types_of: ExtendedTypesOf | None = None,
        transactional_of: TransactionalOf | None = None,
        resume: RestartPoint | None = None,
        progress_interval_s: float = 0.5,
        hold_limit: int = DEFAULT_HOLD_LIMIT,
        era: int = 0,
        source_server_id: int | None = None,
        gtid_state: GtidState | None = None,
        resume_by_gtid: bool = False,
        input_ready: Callable[[], bool] | None = None,
    ) -> None:
        """``hold_limit`` bounds the records held per transaction for savepoint rollbacks (see
        savepoints.py). ``transactional_of`` tells InnoDB-like tables from MyISAM/Aria ones, for savepoint
        rollbacks; without it every table counts as transactional, which is exact for ROW-format
        binlogs (the server logs non-transactional rows in their own groups, outside any
        transaction) and only differs if a non-transactional row ever sits inside one.

        ``era``: of every position emitted. ``source_server_id`` and ``gtid_state`` (the state where
        reading starts): the ReadContext of each position (see gtid_tracking.py); without them,
        positions carry none. ``resume_by_gtid``: ``resume`` was written on another server, its
        transaction is found by GTID alone."""
        self._charset_of = charset_of
        self._filter = table_filter or TableFilter()
        self._options = options or DecoderOptions()
        self._extended_types_of = extended_types_of
        self._transactional_of = transactional_of
        self._transactional: dict[TableRef, bool] = {}
        self._compiled: dict[bytes, CompiledTable] = {}
        self._versions: dict[TableRef, str] = {}
        self._latest: dict[TableRef, TableSchema] = {}
        self._by_id: dict[int, tuple[CompiledTable, bytes]] = {}
        self._temporary: dict[int, set[TableRef]] = {}  # per connection (thread) id
        self._resume = ResumeCheck(resume, by_gtid=resume_by_gtid)
        self._start_gtid = _boundary_label(resume)
        self._gtids = GtidTracker(source_server_id, gtid_state)
        self.era = era
        self.progress_interval_s = (
            progress_interval_s  # at most one SourceProgress per this, for other tables
        )
        self._next_progress = 0.0
        # whether more of the stream waits to be read (BinlogConnection.input_ready): a reader caught
        # up sends the throttled progress at once, else a consumer waiting for that boundary (a
        # bootstrap chunk, snapshotter/merge.py) waited for the next transaction or heartbeat
        self._input_ready = input_ready
        # the newest throttled SourceProgress: sent at the stream's end (`--until-caught-up` reads)
        self._withheld: tuple[Position, int, int, ReadContext | None] | None = None
        self._hold_limit = hold_limit
        self.file: str | None = resume.transaction.file if resume and not resume_by_gtid else None
        self.events_seen = 0

    # -- TABLE_MAP ------------------------------------------------------------------------------
    def _compile(self, body: bytes) -> CompiledTable:
        tm = parse_table_map(body)
        if not self._filter.accepts(tm.db, tm.table):
            return CompiledTable(None, TableSchema.build(TableRef(tm.db, tm.table), (), ()), key_getter(()))
        if not tm.has_names:
            raise TerminalError(
                f"{tm.db}.{tm.table}: TABLE_MAP has no column names; the server must run "
                "with binlog_row_metadata=FULL"
            )
        extended: tuple[tuple[str, str], ...] = ()
        if self._extended_types_of is not None and needs_extended_lookup(tm):
            extended = self._extended_types_of(tm.db, tm.table)
        opts = DecoderOptions(self._options.zero_dates, extended)
        # The generated decoder refuses unsupported column types by name and stays the reference;
        # the rows are read by the compiled plan (native_rows.py: same tuples, a fraction of the CPU).
        decoder = compile_rows_decoder(tm, self._charset_of, opts)
        decode_rows, decode_updates = native_decoders(tm, self._charset_of, opts)
        decoder = replace(decoder, decode_rows=decode_rows, decode_updates=decode_updates)
        schema = table_schema(tm, extended_types=extended)
        self._versions[schema.ref] = schema.version
        self._latest[schema.ref] = schema
        return CompiledTable(decoder, schema, key_getter(tm.primary_key))

    def _is_transactional(self, ref: TableRef) -> bool:
        known = self._transactional.get(ref)
        if known is None:
            lookup = self._transactional_of
            known = self._transactional[ref] = True if lookup is None else lookup(ref.db, ref.table)
        return known

    # -- the stream -----------------------------------------------------------------------------
    def records(self, events: Iterable[bytes]) -> Iterator[SourceRecord]:
        by_id = self._by_id
        compiled = self._compiled
        resume = self._resume
        gtids = self._gtids
        gtid: Gtid | None = self._start_gtid  # the last GTID seen (labels a heartbeat's boundary)
        tx_pos: Position | None = None
        file_pos: Position | None = None
        tx_id = ""
        row = 0
        ts_ms = 0
        standalone = False
        guarded = False  # the group lacks FL_TRANSACTIONAL: a rollback may undo some of its rows
        held: HeldGroup | None = None  # records of a guarded group, held until it ends
        savepoints: Savepoints | None = None
        last: Position | None = None
        skip = 0
        created, updated, deleted = Op.CREATE, Op.UPDATE, Op.DELETE
        writes, updates = EventType.WRITES, EventType.UPDATES
        rows_v2 = EventType.ROWS_V2
        rows_any = EventType.ROWS_V1 | rows_v2
        table_map, gtid_event, xid_event = EventType.TABLE_MAP, EventType.GTID, EventType.XID
        resuming = resume.pending
        make_changes = EVENT_MAKER.changes
        start_transaction = EVENT_MAKER.transaction_start
        end_transaction = EVENT_MAKER.transaction_end

        for ev in events:
            self.events_seen += 1
            _ts, type_code, server_id, size, log_pos, _flags = _HEADER(ev, 0)
            if type_code == table_map:
                body = ev[HEADER_LEN:]
                table = compiled.get(body)
                if table is None:
                    table = compiled[body] = self._compile(body)
                by_id[int.from_bytes(body[:6], "little")] = (table, body)
            elif type_code in rows_any:
                if tx_pos is None:
                    raise SourceProtocolError("row event outside a transaction")
                table_id = int.from_bytes(ev[HEADER_LEN : HEADER_LEN + 6], "little")
                try:
                    table = by_id[table_id][0]
                except KeyError as exc:
                    raise SourceProtocolError(f"row event for unknown table id {table_id}") from exc
                decoder = table.decoder
                if decoder is None:
                    continue
                schema, key_of = table.schema, table.key_of
                pos = HEADER_LEN + 8
                if type_code in rows_v2:
                    pos += ev[pos] | ev[pos + 1] << 8  # the extra data's length
                ncols = ev[pos]
                if ncols < 251:  # one-byte length-encoded integer: every table up to 250 columns
                    pos += 1
                else:
                    ncols, pos = read_lenenc(ev, pos)
                nbytes = (ncols + 7) // 8
                present = int.from_bytes(ev[pos : pos + nbytes], "little")
                pos += nbytes
                full = (1 << ncols) - 1
                is_update = type_code in updates
                if is_update:
                    present &= int.from_bytes(ev[pos : pos + nbytes], "little")
                    pos += nbytes
                if present != full:
                    raise partial_image(schema, tx_pos, log_pos - size)
                hold = None
                if guarded:
                    if held is None and self._is_transactional(schema.ref):
                        held = HeldGroup(last, self._is_transactional)
                    if held is not None:
                        hold = held.records.append
                if is_update:
                    pairs = decoder.decode_updates(ev, pos, len(ev))
                    for before, after in pairs:
                        key = key_of(after)
                        if key == key_of(before):
                            if skip:
                                skip -= 1
                                row += 1
                                continue
                            last = tx_pos.at_row(row)
                            row += 1
                            change = ChangeEvent(updated, schema, key, before, after, last, ts_ms, tx_id)
                            if hold is None:
                                yield change
                            else:
                                hold(change)
                            continue
                        # The key changed: the old key is deleted and the new one created, as two
                        # row changes of the transaction (each its own row index, so a restart
                        # between them resumes with the create).
                        if skip:
                            skip -= 1
                        else:
                            last = tx_pos.at_row(row)
                            change = ChangeEvent(
                                deleted, schema, key_of(before), before, None, last, ts_ms, tx_id
                            )
                            if hold is None:
                                yield change
                            else:
                                hold(change)
                        row += 1
                        if skip:
                            skip -= 1
                        else:
                            last = tx_pos.at_row(row)
                            change = ChangeEvent(created, schema, key, None, after, last, ts_ms, tx_id)
                            if hold is None:
                                yield change
                            else:
                                hold(change)
                        row += 1
                else:
                    images = decoder.decode_rows(ev, pos, len(ev))
                    op = created if type_code in writes else deleted
                    if hold is None and not skip and images:
                        # The common case in one compiled call (native_rows.py): the same Positions
                        # and ChangeEvents as the loop below, which held and skipped rows still take.
                        key_indexes = decoder.table_map.primary_key
                        changes = make_changes(
                            op, schema, key_indexes, op is created, images, tx_pos, row, ts_ms, tx_id
                        )
                        row += len(changes)
                        last = changes[-1].position
                        yield from changes
                        continue
                    for image in images:
                        if skip:
                            skip -= 1
                            row += 1
                            continue
                        last = tx_pos.at_row(row)
                        row += 1
                        if op is created:
                            change = ChangeEvent(op, schema, key_of(image), None, image, last, ts_ms, tx_id)
                        else:
                            change = ChangeEvent(op, schema, key_of(image), image, None, last, ts_ms, tx_id)
                        if hold is None:
                            yield change
                        else:
                            hold(change)
                if hold is not None and held is not None and len(held.records) > self._hold_limit:
                    # Memory stays bounded: past the limit the group streams on, and a rollback that
                    # would undo rows already released stops the pipeline (_undo) instead.
                    log.warning(
                        "transaction %s: over %d row changes held for a possible savepoint rollback; "
                        "releasing them",
                        where(tx_pos),
                        self._hold_limit,
                    )
                    yield from held.records
                    last, held, guarded = held.last, None, False
            elif type_code == gtid_event:
                seq, domain, flags = _GTID_BODY(ev, HEADER_LEN)
                if self.file is None:
                    raise SourceProtocolError("GTID event before any ROTATE: binlog file unknown")
                offset = log_pos - size
                if file_pos is None or file_pos.file != self.file or not 0 <= offset <= _U32:
                    # parses the file name once (and refuses an offset no position can hold)
                    gtid = Gtid(domain, server_id, seq)
                    file_pos = Position(gtid, self.file, offset, 0, self.era)
                # the Gtid, Position and id of Gtid(...), file_pos.in_same_file(...) and str(gtid),
                # without range checks the binlog's fixed-width fields cannot fail (native_rows.py)
                # (the context is the GTID state before the transaction: what gtids.begin returns)
                gtid, tx_pos, tx_id = start_transaction(file_pos, domain, server_id, seq, offset, gtids.here)
                gtids.begin(gtid)
                row = 0
                ts_ms = _ts * 1000
                standalone = bool(flags & _FL_STANDALONE)
                guarded = not flags & (_FL_TRANSACTIONAL | _FL_STANDALONE)
                held = None
                savepoints = None
                last = None
                skip = 0
                if resuming:
                    skip = resume.rows_to_skip(gtid, tx_pos)
                    resuming = resume.pending
            elif type_code == xid_event:
                if tx_pos is not None:
                    if held is None and last is not None:
                        self._withheld = None  # this end supersedes it
                        yield end_transaction(tx_id, last, row, ts_ms, log_pos)
                    else:
                        yield from self._end(held, last, tx_pos, log_pos, row, ts_ms, tx_id)
                    tx_pos = None
            elif type_code == EventType.QUERY or type_code == _EXECUTE_LOAD_QUERY:
                if tx_pos is None:
                    continue
                query, db, thread_id = query_text(ev, _QUERY_POST_HEADER[type_code])
                if query == "BEGIN":
                    continue
                if query == "COMMIT" or query == "ROLLBACK":
                    # non-transactional engines end with a COMMIT query, not an XID; a ROLLBACK ends a
                    # group whose transactional rows were all undone (it also wrote a MyISAM table)
                    if query == "ROLLBACK":
                        apply_rollback(held, guarded, last, 0, tx_pos, log_pos - size)
                    yield from self._end(held, last, tx_pos, log_pos, row, ts_ms, tx_id)
                    tx_pos = None
                    continue
                savepoint = savepoint_statement(query)
                if savepoint is not None:
                    kind, name = savepoint
                    if savepoints is None:
                        savepoints = Savepoints()
                    if kind is SavepointKind.SET:
                        savepoints.set(name, row)
                    elif kind is SavepointKind.RELEASE:
                        savepoints.release(name)
                    else:
                        back_to = savepoints.rollback_to(name)
                        apply_rollback(held, guarded, last, back_to, tx_pos, log_pos - size)
                    continue
                for stmt in classify(query, db):
                    kind_ = stmt.kind
                    if kind_ is StatementKind.TEMPORARY:
                        self._temporary.setdefault(thread_id, set()).add(stmt.table)
                        continue
                    if kind_ is StatementKind.DROP_TEMPORARY:
                        self._temporary.get(thread_id, set()).discard(stmt.table)
                        continue
                    if not self._filter.accepts(stmt.table.db, stmt.table.table):
                        continue
                    if kind_ is StatementKind.WRITE:
                        if stmt.table in self._temporary.get(thread_id, ()):
                            continue  # a session's temporary table shadows the captured one
                        raise statement_logged(stmt.table, query, tx_pos, log_pos - size)
                    if skip:
                        skip -= 1
                        row += 1
                        continue
                    last = tx_pos.at_row(row)
                    row += 1
                    record = self._statement_record(
                        kind_, stmt.table, stmt.renamed_to, query, last, ts_ms, tx_id
                    )
                    if held is None:
                        yield record
                    else:
                        held.records.append(record)
                if standalone:
                    yield from self._end(held, last, tx_pos, log_pos, row, ts_ms, tx_id)
                    tx_pos = None
            elif type_code == EventType.HEARTBEAT:
                # Sent when the server has nothing more to send: everything before log_pos (of the
                # file the heartbeat names) has been read. Inside a transaction it is no boundary.
                if tx_pos is None and gtid is not None and log_pos:
                    name = ev[HEADER_LEN:].decode("utf-8", "surrogateescape")
                    here = RestartPoint(Position(gtid, name, log_pos, 0, self.era, gtids.here))
                    self._withheld = None
                    yield SourceProgress(here, int(time.time() * 1000))
            elif type_code == EventType.ROTATE:
                self.file = ev[HEADER_LEN + 8 :].decode("utf-8", "surrogateescape")
                by_id.clear()  # table ids are only meaningful within one server run / file
            elif type_code in EventType.ROWS_COMPRESSED or type_code == EventType.QUERY_COMPRESSED:
                raise TerminalError("compressed binlog events (log_bin_compress=ON) are not supported")
            # FORMAT_DESCRIPTION, GTID_LIST, BINLOG_CHECKPOINT, ANNOTATE_ROWS: nothing to emit
        if self._withheld is not None:
            withheld, self._withheld = self._withheld, None
            yield _progress(*withheld)

    def _end(
        self,
        held: HeldGroup | None,
        last: Position | None,
        tx_pos: Position,
        next_offset: int,
        row: int,
        ts_ms: int,
        tx_id: str,
    ) -> Iterator[SourceRecord]:
        """The end of a group: its held records, then its TransactionEnd, or, when it emitted
        nothing, a (throttled) SourceProgress at the event after it."""
        if held is not None:
            yield from held.records
            last = held.last
        if last is not None:
            self._withheld = None
            yield TransactionEnd(tx_id, last, row, ts_ms, next_offset)
            return
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + self.progress_interval_s
            self._withheld = None
            yield _progress(tx_pos, next_offset, ts_ms, self._gtids.here)
        elif self._input_ready is not None and not self._input_ready():
            self._withheld = None  # nothing more is waiting: this is where the stream stands
            yield _progress(tx_pos, next_offset, ts_ms, self._gtids.here)
        else:  # built only if sent: other tables' transactions may come by the ten thousand
            self._withheld = (tx_pos, next_offset, ts_ms, self._gtids.here)

    def _statement_record(
        self,
        kind: StatementKind,
        ref: TableRef,
        renamed_to: TableRef | None,
        query: str,
        position: Position,
        ts_ms: int,
        tx_id: str,
    ) -> ChangeEvent | SchemaChange:
        if kind is StatementKind.TRUNCATE:
            schema = self._schema_for(ref)
            return ChangeEvent(Op.TRUNCATE, schema, None, None, None, position, ts_ms, tx_id)
        previous = self._versions.get(ref)
        return SchemaChange(_DDL_KIND[kind], ref, query, position, ts_ms, tx_id, previous, renamed_to)

    def _schema_for(self, ref: TableRef) -> TableSchema:
        """The schema a truncate carries (a TRUNCATE has no TABLE_MAP of its own).

        The table's newest TABLE_MAP read by this decoder: in the current binlog file the one with
        the highest table id (ids grow each time the server opens the table anew, e.g. after an
        ALTER), else the last one compiled. When the truncate is the table's first event since the
        reader started (e.g. right after a restart), there is none: the schema is then the empty
        one, ``TableSchema.build(ref, (), ())`` (no columns, no key, always the same version), and
        consumers must resolve the table by ``ref`` from what they already know of it.
        """
        newest: tuple[int, TableSchema] | None = None
        for table_id, (table, _body) in self._by_id.items():
            if (
                table.decoder is not None
                and table.schema.ref == ref
                and (newest is None or table_id > newest[0])
            ):
                newest = (table_id, table.schema)
        if newest is not None:
            return newest[1]
        return self._latest.get(ref) or TableSchema.build(ref, (), ())


def _progress(tx_pos: Position, next_offset: int, ts_ms: int, context: ReadContext | None) -> SourceProgress:
    return SourceProgress(RestartPoint(tx_pos.in_same_file(tx_pos.gtid, next_offset, 0, context)), ts_ms)


def _boundary_label(resume: RestartPoint | None) -> Gtid | None:
    """The GTID that labels boundaries (heartbeats) before the stream's first GTID event.

    A restart point after snapshot rows names an anchor, whose GTID marks "no transaction"; a
    boundary labelled with it would pass for an anchor itself (read one byte too far, its rows
    numbered as the anchor's). Such boundaries get the "no GTID known" label instead.
    """
    if resume is None:
        return None
    gtid = resume.transaction.gtid
    return Gtid(gtid.domain, 0, 0) if resume.transaction.is_snapshot_anchor else gtid
