"""Snapshot chunks merged into the binlog stream, exactly, with no lock and no write to the source.

This is the watermark method of Netflix's DBLog, with exact watermarks. Each chunk is read inside
its own ``START TRANSACTION WITH CONSISTENT SNAPSHOT``, whose binlog boundary S (the status variables
``binlog_snapshot_file``/``binlog_snapshot_position``) says precisely which transactions the view
holds. The stream passes through this pump on its way to the daemon; for the table being
bootstrapped it notes, per key, the binlog place of the last change. When a chunk is back:
- while the stream has not yet consumed every transaction before S, the chunk waits;
- once it has, the chunk's rows whose key the stream changed at or after S are dropped (the stream
  has already delivered, or is about to deliver, the newer value), and the others go out as op ``r``
  right there, between two transactions, followed by a ``SnapshotProgress`` (the durable state:
  the key after which the next chunk starts) and a ``TransactionEnd`` (a commit point).
A truncate of the table at or after S drops the whole chunk (its rows are gone); a DDL on it at or
after S has the chunk read again in the new shape. Streaming never stops for a chunk: it is read on
its own thread (ChunkFeed) while the binlog keeps flowing.

Snapshot rows take positions between the stream's transactions (``snapshot_row_position``), so
embedded sinks (which skip what is at or before their position) and the Iceberg history (ordered by
position) place them exactly where they were emitted.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from cdc.core.change_batches import MAKE_CHANGES
from cdc.core.errors import HeadwaterError, TableHasNoKey, TerminalError
from cdc.core.events import (
    ChangeEvent,
    Op,
    RowImage,
    SchemaChange,
    SnapshotProgress,
    SourceProgress,
    SourceRecord,
    TransactionEnd,
)
from cdc.core.handover import Chunk, EndOfStream
from cdc.core.positions import Position, RestartPoint, snapshot_row_position
from cdc.core.schemas import TableRef
from sinks.arrow_rows import ArrowRows
from sinks.read_batch import ReadBatch
from snapshotter.chunk_columns import PreparedColumns
from snapshotter.chunk_feed import ChunkFeed, ChunkResult, ReadChunk
from snapshotter.chunk_log import LoggedChunk
from snapshotter.chunk_sizer import ChunkSizer
from snapshotter.merge_records import repair_records, truncate_records
from snapshotter.reader import TableNotFound
from snapshotter.requests import BootstrapRequest, RequestBox
from snapshotter.state import SnapshotState, TableJob
from snapshotter.tracking import Place, StreamPump, continue_anchor, unchanged_rows
from snapshotter.tracking import Tracked as _Tracked
from snapshotter.tracking import boundary_place as _boundary_place
from snapshotter.tracking import place as _place

log = logging.getLogger("cdc.bootstrap")

__all__ = ["MergingPump", "StreamPump"]

REPAIR_BATCH = 1_000  # keys read again per view


class MergingPump:
    """A ReaderPump whose chunks also carry snapshot rows, emitted between transactions."""

    def __init__(
        self,
        inner: StreamPump,
        feed: ChunkFeed,
        state: SnapshotState,
        start: RestartPoint,
        *,
        requests: RequestBox | None = None,
        sizer: ChunkSizer | None = None,
        when_done: Callable[[], None] | None = None,
        replay: LoggedChunk | None = None,
    ) -> None:
        """``replay``: a chunk embedded mode logged but may not have committed in every sink; it goes
        out again first, at its logged positions, where the stream reaches them.

        ``when_done`` is called once no bootstrap is left (`cdc bootstrap` with no daemon stops
        the stream then). A stream read to its end (``--until-caught-up``) ends even with a
        bootstrap in progress; the next run takes it up where it stopped."""
        self._inner = inner
        self._feed = feed
        self.state = state
        self._requests = requests
        self._sizer = sizer or ChunkSizer()
        self._when_done = when_done
        # Where the stream stands: the restart point after the last record handed on, and the
        # binlog boundary consumed (None when unknown: inside a transaction, or a start that resumes
        # inside one until the stream reaches a transaction's end).
        self._point = continue_anchor(start, state.last_position)
        self._edge: Place | None = _boundary_place(start) if start.is_boundary else None
        self._in_transaction = False
        self._tracked: _Tracked | None = None
        # the tracked table's keys' last changes' transaction (GTID seq; PostgreSQL's xid): see unchanged_rows
        self._changed_by: dict[RowImage, int] = {}
        self._ready: deque[ChunkResult] = deque()  # read, waiting for the stream (at most two)
        self._next_after: RowImage | None = None  # where the next read starts
        self._generation = 0
        self._next_poll = 0.0
        self._accepted: set[str] = {j.request for j in state.jobs} | {f.request for f in state.finished}
        pending = {j.request for j in state.jobs}
        self._committed_done: set[str] = {f.request for f in state.finished if f.request not in pending}
        self.rows_emitted = 0
        # chunks go out as one ReadBatch record (see sinks/read_batch.py) instead of an event per
        # row; the embedded daemon sets it when it hands such a record on whole (no column policies)
        self.columnar = False
        # columnar chunks are also transposed and converted on the reader's thread (ChunkFeed.request
        # columns=): measured to pay for an Iceberg history, not for PostgreSQL alone (Snapshots.wrap)
        self.prepare_ahead = True
        self._replay = replay if replay is not None and replay.records else None
        self._held: list[SourceRecord] = []  # stream records held back behind the replay
        self._ended: EndOfStream | None = None  # the stream's end, held while bootstraps can finish
        if replay is not None and self._replay is None:
            self.state = SnapshotState.parse(replay.state)

    # -- the ReaderPump interface ------------------------------------------------------------------

    def start(self) -> None:
        self._inner.start()

    def stop(self) -> None:
        self._feed.stop()
        self._inner.stop()

    def get(self, timeout: float) -> Chunk | None:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            self._poll_requests()
            self._collect()
            emitted = self._try_emit()
            if emitted:
                return emitted
            if self._ended is not None:
                # the stream was read to its end (--until-caught-up): finish the bootstraps queued,
                # as long as their chunks' views lie within what the stream read
                if self._can_end():
                    return self._ended
                time.sleep(0.01)
                if time.monotonic() >= deadline:
                    return None
                continue
            remaining = deadline - time.monotonic()
            busy = self.state.current is not None
            if self._held:
                chunk: Chunk | None = self._held
                self._held = []
            else:
                # with a bootstrap going, wake often: a chunk read may come back while the stream is idle
                chunk = self._inner.get(max(min(remaining, 0.05) if busy else remaining, 0.0))
            if chunk is not None:
                if isinstance(chunk, EndOfStream):
                    if chunk.error is None and (self.state.current is not None or self._replay is not None):
                        self._ended = chunk
                        continue
                    return chunk
                if self._replay is not None:
                    chunk = self._split_at_replay(chunk)
                    if not chunk:
                        continue
                self._observe(chunk)
                return chunk
            if time.monotonic() >= deadline:
                return None

    def _can_end(self) -> bool:
        if self.state.current is None and self._replay is None:
            return True
        if self._edge is None or self._in_transaction:
            return self._give_up("the stream ended inside a transaction")
        if self._replay is not None:
            return self._edge < self._replay_place() and self._give_up("the logged chunk lies beyond the end")
        ready = self._ready[0] if self._ready else None
        if ready is not None and ready.chunk is not None and _boundary_place(ready.chunk.at) > self._edge:
            return self._give_up("the source was written to after the stream's end")
        return False

    def _give_up(self, why: str) -> bool:
        job = self.state.current
        log.info(
            "caught up with the source while bootstrapping %s (%s): the next run goes on with it",
            job.table if job is not None else "a table",
            why,
        )
        return True

    # -- what the daemon tells the pump ----------------------------------------------------------

    def stop_when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once no bootstrap is left (a run that must end when they are done)."""
        self._when_done = callback

    def committed(self, state_text: str | None) -> None:
        """The daemon stored this state with its commit: finished requests' files can go."""
        committed = SnapshotState.parse(state_text)
        pending = {j.request for j in committed.jobs}
        self._committed_done |= {f.request for f in committed.finished if f.request not in pending}

    def queue_tables(
        self,
        request: str,
        tables: Sequence[TableRef],
        *,
        replace: bool = False,
        keys: Mapping[TableRef, tuple[RowImage, ...]] | None = None,
    ) -> None:
        self.state = self.state.queued(request, tables, replace=replace, keys=keys)
        self._accepted.add(request)
        if tables:
            log.info("bootstrap %s: queued %s", request, ", ".join(str(t) for t in tables))

    # -- internals -------------------------------------------------------------------------------

    def _poll_requests(self) -> None:
        if self._requests is None or time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + 1.0
        for request in self._requests.pending():
            if request.id in self._committed_done:
                self._requests.remove(request.id)
            elif request.id not in self._accepted:
                self._accept(request)

    def _accept(self, request: BootstrapRequest) -> None:
        queued = {job.table: job.request for job in self.state.jobs}
        if request.keys is None and request.tables and all(t in queued for t in request.tables):
            # every table is already being bootstrapped (a request sent twice): that one serves both
            log.info("bootstrap %s: already under way as %s", request.id, queued[request.tables[0]])
            assert self._requests is not None
            self._requests.remove(request.id)
            return
        self.queue_tables(request.id, request.tables, replace=request.replace, keys=request.keys)

    def _observe(self, chunk: list[SourceRecord]) -> None:
        tracked = self._tracked
        for record in chunk:
            cls = record.__class__
            if cls is TransactionEnd:
                end: TransactionEnd = record  # type: ignore[assignment]
                self._in_transaction = False
                last = end.last_position
                if end.next_offset and not last.is_snapshot_anchor:
                    self._point = RestartPoint(last.in_same_file(last.gtid, end.next_offset))
                    self._edge = (last.file_seq, end.next_offset)
                elif last.lsn is not None and not last.is_snapshot_anchor:
                    # PostgreSQL: places are commit LSNs, in order: every commit up to this one is seen
                    self._point = end.restart
                    self._edge = (last.file_seq, last.offset + 1)
                else:
                    self._point = end.restart
                    self._edge = None if not self._point.is_boundary else _boundary_place(self._point)
            elif cls is SourceProgress:
                progress: SourceProgress = record  # type: ignore[assignment]
                self._in_transaction = False
                place = _boundary_place(progress.restart)
                # a heartbeat at the boundary where snapshot rows were just emitted: the next rows go
                # after those, not at the anchor's first row again
                if not (self._point.transaction.is_snapshot_anchor and place == self._edge):
                    self._point = progress.restart
                self._edge = place
            elif cls is ChangeEvent:
                event: ChangeEvent = record  # type: ignore[assignment]
                self._in_transaction = True
                if tracked is not None and event.schema.ref == tracked.table:
                    if event.op is Op.TRUNCATE:
                        tracked.truncated_at = _place(event.position)
                    elif event.key is not None:
                        tracked.changed[event.key] = _place(event.position)
                        self._changed_by[event.key] = event.position.gtid.seq
            elif cls is SchemaChange:
                change: SchemaChange = record  # type: ignore[assignment]
                self._in_transaction = True
                if tracked is not None and tracked.table in (change.table, change.renamed_to):
                    tracked.altered_at = _place(change.position)

    def _collect(self) -> None:
        """Start the current job's tracking and its reads (one ahead); pick up finished reads."""
        if self._replay is not None:
            return  # the logged chunk goes first; reads start from the state it leads to
        job = self.state.current
        if job is None:
            if self._when_done is not None:  # nothing (left) to do: e.g. resumed after the last commit
                self._when_done()
                self._when_done = None
            return
        if self._tracked is None or self._tracked.table != job.table:
            self._restart_reads(job)  # tracking first: every read's view lies after this
        result = self._feed.result()
        if result is not None and result.generation == self._generation:
            self._ready.append(result)
            if result.chunk is not None:
                self._next_after = result.chunk.last_key
        if job.keys is not None:  # a repair: one batch of keys at a time, from the job's own list
            if not self._ready and not self._feed.in_flight:
                batch = job.keys[:REPAIR_BATCH]
                self._feed.request(self._generation, job.table, None, len(batch), batch)
            return
        last = self._ready[-1] if self._ready else None
        more = last is None or (last.chunk is not None and not last.chunk.complete)
        if more and len(self._ready) < 2 and not self._feed.in_flight:
            ahead = self.columnar and self.prepare_ahead
            limit = self._sizer.limit
            # columnar chunks are read as Arrow columns (text_columns.py); the preparing ahead is
            # for the chunks that fall back to tuples
            self._feed.request(
                self._generation, job.table, self._next_after, limit, columns=ahead, arrow=self.columnar
            )

    def _restart_reads(self, job: TableJob) -> None:
        self._tracked = _Tracked(job.table)
        self._changed_by = {}
        self._ready.clear()
        self._generation += 1  # a read still in flight is dropped when it comes back
        self._next_after = job.after

    def _replay_place(self) -> Place:
        assert self._replay is not None
        first = self._replay.records[0].position
        return (first.file_seq, first.offset + 1)

    def _split_at_replay(self, chunk: list[SourceRecord]) -> list[SourceRecord]:
        """Hold back the stream from the first change at or after the logged chunk's place."""
        place = self._replay_place()
        for index, record in enumerate(chunk):
            cls = record.__class__
            if (cls is ChangeEvent or cls is SchemaChange) and _place(record.position) >= place:  # type: ignore[union-attr]
                self._held = chunk[index:]
                before = chunk[:index]
                if not before and not self._in_transaction:
                    self._edge = max(self._edge or place, place)  # nothing captured lies in between
                return before
        return chunk

    def _emit_replay(self) -> list[SourceRecord] | None:
        replay = self._replay
        assert replay is not None
        at_held = bool(self._held) and not self._in_transaction
        if not at_held and (self._in_transaction or self._edge is None or self._edge < self._replay_place()):
            return None
        self._replay = None
        self.state = SnapshotState.parse(replay.state)
        last = replay.records[-1]
        log.info(
            "bootstrap: the chunk logged before the last stop goes out again (%d rows)", len(replay.records)
        )
        if _place(last.position) > _place(self._point.transaction) or last.position > self._point.transaction:
            self._point = RestartPoint.after(last.position)
        end = TransactionEnd(last.transaction_id, last.position, len(replay.records), last.source_ts_ms)
        return [SnapshotProgress(replay.state, len(replay.records), replay.records), *replay.records, end]

    def _try_emit(self) -> list[SourceRecord] | None:
        if self._replay is not None:
            return self._emit_replay()
        job, tracked = self.state.current, self._tracked
        if not self._ready or job is None or tracked is None or self._in_transaction or self._edge is None:
            return None
        ready = self._ready[0]
        if ready.error is not None:
            return self._failed(job, ready.error)
        chunk = ready.chunk
        assert chunk is not None
        if job.replace and job.keys is None:
            return self._emit_truncate(job, chunk)
        at = _boundary_place(chunk.at)
        if self._edge < at:
            return None  # the stream has not yet consumed every transaction the view holds
        self._ready.popleft()
        if tracked.altered_at >= at:
            # the table's shape changed after the view: read again from here, in the new shape
            log.info("bootstrap of %s: the table changed shape during a chunk; reading it again", job.table)
            self._restart_reads(job)
            return None
        if ready.keys is not None:
            return self._emit_repair(job, chunk, ready.keys, tracked, at)
        self._sizer.observe(len(chunk.rows), chunk.elapsed_s)
        # truncated after the view: every row of it is gone
        gone = tracked.truncated_at >= at
        rows = [] if gone else unchanged_rows(chunk, tracked, at, self._changed_by)
        tracked.prune(at)
        if len(self._changed_by) > len(tracked.changed):
            self._changed_by = {k: self._changed_by[k] for k in tracked.changed}
        # every row kept (the chunk's own tuple): the columns the reader's thread made still hold
        prepared = ready.prepared if rows is chunk.rows else None
        return self._emit(job, chunk, rows, prepared)

    def _emit(
        self,
        job: TableJob,
        chunk: ReadChunk,
        rows: Sequence[RowImage],
        prepared: PreparedColumns | None = None,
    ) -> list[SourceRecord]:
        point = self._point
        ts_ms = int(time.time() * 1000)
        txn = f"snapshot-{job.request}-{job.chunks}"
        schema = chunk.schema
        # one full position, then cheap copies for the rest (a full one per row was a sixth of the
        # bootstrap's time: benchmarks/results/profiles/bootstrap_*.txt)
        first = snapshot_row_position(point, 0)
        records: Sequence[ChangeEvent]
        if self.columnar:
            # one typed batch instead of an event per row: the sinks write it column-wise
            kept = rows if isinstance(rows, ArrowRows) else tuple(rows)
            records = ReadBatch(schema, kept, first, ts_ms, txn) if rows else ()
            if prepared is not None and isinstance(records, ReadBatch):
                records = records.prepared(prepared.columns, prepared.packed, prepared.arrays)
        else:
            # an event per row (Kafka mode, policies), built in one compiled call (change_batches.py)
            made = MAKE_CHANGES(
                Op.READ, schema, schema.key_indexes(), True, list(rows), first, first.row, ts_ms, txn
            )
            records = cast(list[ChangeEvent], made)
        advanced = job.advanced(chunk.last_key, len(rows))
        done = chunk.complete
        self.state = self.state.finished_current(advanced) if done else self.state.advanced(advanced)
        last: Position | None = records[-1].position if records else None
        if last is not None:
            self.state = dataclasses.replace(self.state, last_position=last.to_string())
        out: list[SourceRecord] = [SnapshotProgress(self.state.to_text(), len(rows), records)]
        if isinstance(records, ReadBatch):
            out.append(records)  # type: ignore[arg-type]  # the embedded daemon hands it on whole
        else:
            out.extend(records)
        if last is not None:
            out.append(TransactionEnd(txn, last, len(records), ts_ms))
            self._point = RestartPoint.after(last)
        self.rows_emitted += len(rows)
        if done:
            log.info(
                "bootstrap %s: %s done, %d rows in %d chunks",
                job.request,
                job.table,
                advanced.rows,
                advanced.chunks + 0,
            )
            self._finish_job()
        return out

    def _emit_truncate(self, job: TableJob, chunk: ReadChunk) -> list[SourceRecord]:
        """--replace, or a re-bootstrap after a gap: the copies may hold rows deleted meanwhile, so a
        TRUNCATE empties them first, here, at a transaction boundary of the stream. It goes out
        before the view of any chunk that will be emitted: the first read (only its schema is used)
        is dropped and read again. With the first chunk, it would have come after the stream's
        changes inside that chunk's window, wiping them while the chunk drops their keys as newer in
        the stream: those keys were lost."""
        out, self.state, position = truncate_records(self.state, job, chunk, self._point)
        self._restart_reads(job)  # every chunk's view now lies after the truncate
        self._point = RestartPoint.after(position)
        log.info("bootstrap %s: %s's copies emptied first (replace)", job.request, job.table)
        return out

    def _emit_repair(
        self, job: TableJob, chunk: ReadChunk, keys: tuple[RowImage, ...], tracked: _Tracked, at: Place
    ) -> list[SourceRecord]:
        """A repair's batch (merge_records.repair_records)."""
        out, self.state, advanced, last = repair_records(
            self.state, job, chunk, keys, tracked, at, self._point
        )
        if last is not None:
            self._point = RestartPoint.after(last)
        if not advanced.keys:
            log.info("repair %s: %s done, %d changes sent", job.request, job.table, advanced.rows)
            self._finish_job()
        return out

    def _finish_job(self) -> None:
        self._tracked = None
        self._ready.clear()
        if self.state.current is None and self._when_done is not None:
            self._when_done()
            self._when_done = None

    def _failed(self, job: TableJob, error: BaseException) -> list[SourceRecord] | None:
        if isinstance(error, TableHasNoKey | TableNotFound):
            # a table that cannot be bootstrapped: refuse it by name, and go on with the others
            log.error("bootstrap %s: %s is not bootstrapped: %s", job.request, job.table, error)
            self.state = self.state.finished_current(job, refused=str(error))
            self._finish_job()
            return [SnapshotProgress(self.state.to_text(), 0)]
        if isinstance(error, HeadwaterError) and not isinstance(error, TerminalError):
            log.warning("bootstrap of %s: reading a chunk failed (%s); retrying", job.table, error)
            time.sleep(1.0)
            self._restart_reads(job)
            return None
        raise error
