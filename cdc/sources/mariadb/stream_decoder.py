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
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import chain
from operator import length_hint

from cdc.core.errors import SourceProtocolError, TerminalError
from cdc.core.events import (
    ChangeEvent,
    Op,
    SourceProgress,
    SourceRecord,
    TransactionEnd,
)
from cdc.core.positions import Gtid, GtidState, Position, ReadContext, RestartPoint
from cdc.core.schemas import TableRef
from cdc.sources.mariadb.binlog_format import HEADER_LEN, EventType, query_text, read_lenenc
from cdc.sources.mariadb.compiled_loop import BATCH_BYTES, GATHERED, make_event_loop
from cdc.sources.mariadb.ddl import SavepointKind, StatementKind, classify, savepoint_statement
from cdc.sources.mariadb.decoder_errors import partial_image, statement_logged, where
from cdc.sources.mariadb.gtid_tracking import GtidTracker, ResumeCheck
from cdc.sources.mariadb.native_rows import EVENT_MAKER
from cdc.sources.mariadb.row_decoder import CharsetOf, DecoderOptions
from cdc.sources.mariadb.savepoints import DEFAULT_HOLD_LIMIT, HeldGroup, Savepoints, apply_rollback
from cdc.sources.mariadb.table_filter import TableFilter
from cdc.sources.mariadb.table_registry import ExtendedTypesOf, TableRegistry, TransactionalOf
from cdc.sources.mariadb.tx_state import TxState, boundary_label, progress

__all__ = ["ExtendedTypesOf", "StreamDecoder", "TransactionalOf"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<IBIIIH").unpack_from
_GTID_BODY = struct.Struct("<QIB").unpack_from
_U32 = 2**32 - 1
_FL_STANDALONE = 1
_FL_TRANSACTIONAL = 4  # cleared when the transaction also wrote a non-transactional table
_EXECUTE_LOAD_QUERY = 18  # LOAD DATA logged as a statement
_QUERY_POST_HEADER = {EventType.QUERY: 13, _EXECUTE_LOAD_QUERY: 26}
# The generators below yield runs of records (a list per rows event or per compiled-loop batch, a
# tuple for one record), flattened by itertools.chain: a record then costs the consumer a list
# iterator's step instead of resuming four nested generators (~0.2 CPU-us a row of 1000-row
# statements, benchmarks/results/latest.md "capcpu"). A run is yielded whole once built, so what a
# consumer sees between two records, holding() included, is as it was record by record.
Runs = Iterator[Iterable[SourceRecord]]


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
        compiled_loop: bool = True,
    ) -> None:
        """``hold_limit`` bounds the records held per transaction for savepoint rollbacks (see
        savepoints.py). ``transactional_of`` tells InnoDB-like tables from MyISAM/Aria ones, for savepoint
        rollbacks; without it every table counts as transactional, which is exact for ROW-format
        binlogs (the server logs non-transactional rows in their own groups, outside any
        transaction) and only differs if a non-transactional row ever sits inside one.

        ``era``: of every position emitted. ``source_server_id`` and ``gtid_state`` (the state where
        reading starts): the ReadContext of each position (see gtid_tracking.py); without them,
        positions carry none. ``resume_by_gtid``: ``resume`` was written on another server, its
        transaction is found by GTID alone. ``compiled_loop`` False: every event by the Python
        path (the reference the compiled loop is tested against, compiled_loop.py)."""
        self._filter = table_filter or TableFilter()
        self._tables = TableRegistry(
            charset_of, self._filter, options or DecoderOptions(), extended_types_of, transactional_of
        )
        self._loop = make_event_loop(self._tables.by_id) if compiled_loop else None
        if self._loop is not None:
            self._tables.attach(self._loop)
        self._temporary: dict[int, set[TableRef]] = {}  # per connection (thread) id
        self._resume = ResumeCheck(resume, by_gtid=resume_by_gtid)
        self._start_gtid = boundary_label(resume)
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
        self._tx = TxState(self._start_gtid, self._resume.pending)
        # the batch being decoded, its next event, the records of the compiled loop not yielded yet
        self._events: list[bytes] = []
        self._pos = 0
        self._pending: Iterator[SourceRecord] = iter(())

    # -- the stream -----------------------------------------------------------------------------
    def records(self, events: Iterable[bytes]) -> Iterator[SourceRecord]:
        """The records of ``events``, in order (see compiled_loop.py for the batches)."""
        return chain.from_iterable(self._runs(events))

    def _runs(self, events: Iterable[bytes]) -> Runs:
        batch: list[bytes] = []
        size = 0
        for ev in events:
            batch.append(ev)
            size += len(ev)
            if ev[4] in GATHERED and size < BATCH_BYTES:
                continue  # only a transaction going on: nothing to emit before its end
            yield from self._batch(batch)
            batch = []
            size = 0
        if batch:
            yield from self._batch(batch)
        yield from self._stream_end()

    def records_from_batches(self, batches: Iterable[list[bytes]]) -> Iterator[SourceRecord]:
        """The records of events that come in lists (BinlogConnection.event_batches), as
        :meth:`records` gives them."""
        return chain.from_iterable(self.runs_from_batches(batches))

    def runs_from_batches(self, batches: Iterable[list[bytes]]) -> Runs:
        """:meth:`records_from_batches` in runs: a list's events after its last one that can end a
        transaction wait for the rest of that transaction (up to BATCH_BYTES), so that it is decoded
        whole."""
        carry: list[bytes] = []
        for events in batches:
            if carry:
                events = carry + events
                carry = []
            cut = len(events)
            while cut and events[cut - 1][4] in GATHERED:
                cut -= 1
            if cut < len(events) and sum(len(ev) for ev in events[cut:]) < BATCH_BYTES:
                carry = events[cut:]
                del events[cut:]
            if events:
                yield from self._batch(events)
        if carry:
            yield from self._batch(carry)
        yield from self._stream_end()

    def _stream_end(self) -> Runs:
        if self._withheld is not None:
            withheld, self._withheld = self._withheld, None
            yield (progress(*withheld),)

    def holding(self) -> bool:
        """Events read and not decoded yet, or records decoded and not yielded yet, are waiting: more
        records come without reading more (with the source's input_ready: more input is waiting)."""
        return self._pos < len(self._events) or length_hint(self._pending) > 0

    def _batch(self, events: list[bytes]) -> Runs:
        """Whole common transactions by the compiled loop, everything else by the Python path."""
        loop, tx, gtids = self._loop, self._tx, self._gtids
        i, count = 0, len(events)
        self._events, self._pos = events, 0
        while i < count:
            if loop is not None and tx.tx_pos is None and not tx.resuming:
                file_pos = tx.file_pos
                if file_pos is not None and file_pos.file != self.file:
                    file_pos = None  # a new file: its first GTID builds the Position (Python path)
                stop, records, gtid, tracking, foreign = loop.run(events, i, file_pos, gtids.tracking())
                if stop > i:
                    self.events_seen += stop - i
                    tx.gtid = gtid
                    gtids.adopt(tracking)
                    self._pos = i = stop
                    if records:
                        self._withheld = None  # a TransactionEnd supersedes it
                        self._pending = pending = iter(records)
                        yield pending
                    if foreign is not None:  # the last one taken touched no captured table
                        tx_pos, next_offset, ts_ms = foreign
                        yield from self._end(None, None, tx_pos, next_offset, 0, ts_ms, "")
                    if i == count:
                        break
            i = yield from self._python_path(events, i)

    def _python_path(self, events: list[bytes], start: int) -> Generator[Iterable[SourceRecord], None, int]:
        """From ``events[start]`` to the end of the transaction going on (or of the event, between
        transactions); returns the index of the next event. The reference decoder: every event the
        compiled loop does not take comes here, with the state in ``self._tx``."""
        tables = self._tables
        by_id = tables.by_id
        resume = self._resume
        gtids = self._gtids
        tx = self._tx
        gtid = tx.gtid  # the last GTID seen (labels a heartbeat's boundary)
        tx_pos, file_pos, tx_id, row, ts_ms = tx.tx_pos, tx.file_pos, tx.tx_id, tx.row, tx.ts_ms
        standalone = tx.standalone
        guarded = tx.guarded  # the group lacks FL_TRANSACTIONAL: a rollback may undo some of its rows
        held = tx.held  # records of a guarded group, held until it ends
        savepoints, last, skip, resuming = tx.savepoints, tx.last, tx.skip, tx.resuming
        created, updated, deleted = Op.CREATE, Op.UPDATE, Op.DELETE
        writes, updates = EventType.WRITES, EventType.UPDATES
        rows_v2 = EventType.ROWS_V2
        rows_any = EventType.ROWS_V1 | rows_v2
        table_map, gtid_event, xid_event = EventType.TABLE_MAP, EventType.GTID, EventType.XID
        resuming = resume.pending
        make_changes = EVENT_MAKER.changes
        make_updates = EVENT_MAKER.updates
        update_ops = (updated, deleted, created)
        start_transaction = EVENT_MAKER.transaction_start
        end_transaction = EVENT_MAKER.transaction_end

        i, count = start, len(events)
        while i < count:
            if tx_pos is None and i > start:
                break  # between transactions: the compiled loop may take the next ones
            ev = events[i]
            self._pos = i = i + 1
            self.events_seen += 1
            _ts, type_code, server_id, size, log_pos, _flags = _HEADER(ev, 0)
            if type_code == table_map:
                tables.table_map(ev[HEADER_LEN:])
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
                    if held is None and tables.is_transactional(schema.ref):
                        held = HeldGroup(last, tables.is_transactional)
                    if held is not None:
                        hold = held.records.append
                run: list[SourceRecord] = []
                emit = run.append if hold is None else hold
                if is_update:
                    pairs = decoder.decode_updates(ev, pos, len(ev))
                    if hold is None and not skip and pairs:
                        # as for writes below: the loop's records in one compiled call
                        keys = decoder.table_map.primary_key
                        changes = make_updates(update_ops, schema, keys, pairs, tx_pos, row, ts_ms, tx_id)
                        if changes is not None:
                            row += len(changes)
                            last = changes[-1].position
                            yield changes
                            continue
                    for before, after in pairs:
                        key = key_of(after)
                        if key == key_of(before):
                            if skip:
                                skip -= 1
                                row += 1
                                continue
                            last = tx_pos.at_row(row)
                            row += 1
                            emit(ChangeEvent(updated, schema, key, before, after, last, ts_ms, tx_id))
                            continue
                        # The key changed: the old key is deleted and the new one created, as two
                        # row changes of the transaction (each its own row index, so a restart
                        # between them resumes with the create).
                        if skip:
                            skip -= 1
                        else:
                            last = tx_pos.at_row(row)
                            emit(
                                ChangeEvent(deleted, schema, key_of(before), before, None, last, ts_ms, tx_id)
                            )
                        row += 1
                        if skip:
                            skip -= 1
                        else:
                            last = tx_pos.at_row(row)
                            emit(ChangeEvent(created, schema, key, None, after, last, ts_ms, tx_id))
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
                        yield changes
                        continue
                    for image in images:
                        if skip:
                            skip -= 1
                            row += 1
                            continue
                        last = tx_pos.at_row(row)
                        row += 1
                        if op is created:
                            emit(ChangeEvent(op, schema, key_of(image), None, image, last, ts_ms, tx_id))
                        else:
                            emit(ChangeEvent(op, schema, key_of(image), image, None, last, ts_ms, tx_id))
                if run:
                    yield run
                if hold is not None and held is not None and len(held.records) > self._hold_limit:
                    # Memory stays bounded: past the limit the group streams on, and a rollback that
                    # would undo rows already released stops the pipeline (_undo) instead.
                    log.warning(
                        "transaction %s: over %d row changes held for a possible savepoint rollback; "
                        "releasing them",
                        where(tx_pos),
                        self._hold_limit,
                    )
                    yield held.records
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
                        yield (end_transaction(tx_id, last, row, ts_ms, log_pos),)
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
                    record = tables.statement_record(
                        kind_, stmt.table, stmt.renamed_to, query, last, ts_ms, tx_id
                    )
                    if held is None:
                        yield (record,)
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
                    yield (SourceProgress(here, int(time.time() * 1000)),)
            elif type_code == EventType.ROTATE:
                self.file = ev[HEADER_LEN + 8 :].decode("utf-8", "surrogateescape")
                by_id.clear()  # table ids are only meaningful within one server run / file
            elif type_code in EventType.ROWS_COMPRESSED or type_code == EventType.QUERY_COMPRESSED:
                raise TerminalError("compressed binlog events (log_bin_compress=ON) are not supported")
            # FORMAT_DESCRIPTION, GTID_LIST, BINLOG_CHECKPOINT, ANNOTATE_ROWS: nothing to emit
        tx.gtid, tx.tx_pos, tx.file_pos, tx.tx_id = gtid, tx_pos, file_pos, tx_id
        tx.row, tx.ts_ms = row, ts_ms
        tx.standalone, tx.guarded, tx.held, tx.savepoints = standalone, guarded, held, savepoints
        tx.last, tx.skip, tx.resuming = last, skip, resuming
        return i

    def _end(
        self,
        held: HeldGroup | None,
        last: Position | None,
        tx_pos: Position,
        next_offset: int,
        row: int,
        ts_ms: int,
        tx_id: str,
    ) -> Runs:
        """The end of a group: its held records, then its TransactionEnd, or, when it emitted
        nothing, a (throttled) SourceProgress at the event after it."""
        if held is not None:
            yield held.records
            last = held.last
        if last is not None:
            self._withheld = None
            yield (TransactionEnd(tx_id, last, row, ts_ms, next_offset),)
            return
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + self.progress_interval_s
            self._withheld = None
            yield (progress(tx_pos, next_offset, ts_ms, self._gtids.here),)
        elif self._input_ready is not None and not self.holding() and not self._input_ready():
            self._withheld = None  # nothing more is waiting: this is where the stream stands
            yield (progress(tx_pos, next_offset, ts_ms, self._gtids.here),)
        else:  # built only if sent: other tables' transactions may come by the ten thousand
            self._withheld = (tx_pos, next_offset, ts_ms, self._gtids.here)
