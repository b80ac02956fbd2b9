"""`cdc bootstrap --sink NAME`: fill one sink added to an existing pipeline, and only that sink.

The other sinks and Kafka see nothing of it. The rows are read in ONE consistent view (boundary S)
in primary-key chunks and applied to the sink as op ``r`` events at anchor positions just before S
(``snapshot_row_position``); each chunk is one atomic batch with its ``AppliedState``, then flushed.

Embedded mode (no ``stream``; `cdc run` stopped). The sink then holds snapshot(S), its applied
position is the last anchor row, and when `cdc run` starts again it resumes this sink at S: it gets
exactly the changes after S. With ``replace`` each table's first batch starts with a TRUNCATE at
the table's first row position, so rows left from an earlier use of the sink go.

Kafka mode (``stream``; `cdc run` may keep capturing; this sink's `cdc sink` stopped). First the end
offsets E of each table's topic partitions are taken, THEN the view is opened: every change below E
is in the view. Each table's first batch starts with a TRUNCATE at its first row position, which
empties the table in the sink and fences it: changes below it that `cdc sink` consumes later from E
are skipped by a serving sink (a history sink records them as the changes they are). The rows go in
as embedded-mode batches (no offsets: the sink then skips what it already holds by position, which
makes a re-read batch harmless); a last batch stores the offsets E, so `cdc sink` continues this
sink from E (see ``_Run._mark``).

Resumable after SIGKILL (see :mod:`snapshotter.sink_fill_state`): a write-ahead file in state_dir
records each chunk before it is applied; on restart, the sink's ``applied()`` says whether it landed.
A restart opens a new view S2 >= S1, but every position still counts from the FIRST view's anchor
(continuing its row numbers), and the sink's position stays just before S1. That is deliberate:
the chunks read at S1 miss the changes made between S1 and S2, and they reach the sink only because
its resume point stays at S1 (embedded: `cdc run` resumes it there; Kafka: it consumes from E, taken
before S1). Rows read at S2 receive those changes again, which a serving table absorbs (full row
images, the last change per key wins) and a history records once each, as changes after its ``r``
rows. Moving the anchor to S2 would lose the S1..S2 changes of the rows already copied.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from cdc.config.models import PipelineConfig, SinkConfig
from cdc.core.errors import ConfigError, TerminalError, TransientError
from cdc.core.events import ChangeEvent, Op, RowImage
from cdc.core.positions import RestartPoint, snapshot_row_position
from cdc.core.schemas import TableRef
from cdc.core.table_filter import TableFilter
from sinks.arrow_rows import ArrowRows, concat_rows
from sinks.contract import AppliedState, Sink, SinkBatch, WriterIdentity
from sinks.read_batch import ReadBatch
from snapshotter.chunk_sizer import ChunkSizer
from snapshotter.reader import ChunkRead
from snapshotter.sink_fill_offsets import end_offsets
from snapshotter.sink_fill_result import FillProgress, FillResult, SinkFillInterfered, TableFilled
from snapshotter.sink_fill_resume import check_same, reconciled, table_position
from snapshotter.sink_fill_source import FillReader, estimated_rows, open_fill_reader
from snapshotter.sink_fill_state import (
    FillState,
    PendingChunk,
    TableFill,
    progress_path,
    read_state,
    write_state,
)

__all__ = ["FillProgress", "FillResult", "SinkFillInterfered", "TableFilled", "fill_sink"]

log = logging.getLogger("cdc.bootstrap")

_LOG_EVERY_S = 5.0
RETRIES = 8  # transient failures retried by fill_sink (pauses 1, 2, 4 ... 30 s: about 2.5 min)
BATCH_ROWS = 50_000  # rows per sink batch (one transaction / Iceberg commit each)


def _sink_config(config: PipelineConfig, sink_name: str) -> SinkConfig:
    names = config.sink_names
    if sink_name not in names:
        raise ConfigError(
            f"--sink {sink_name!r}: no such sink in pipeline {config.name!r}; "
            f"its sinks are {', '.join(names)}"
        )
    return config.sinks[names.index(sink_name)]


def fill_sink(
    config: PipelineConfig,
    sink_name: str,
    tables: Sequence[TableRef],
    *,
    replace: bool,
    progress: Callable[[FillProgress], None] | None,
    batch_rows: int = BATCH_ROWS,
) -> FillResult:
    """Fill sink ``sink_name`` with the rows of ``tables`` (see the module docstring).

    A transient failure (the source or the sink unreachable for a while) is retried from the
    progress file, as a restart would, up to :data:`RETRIES` times with a growing pause.
    """
    _sink_config(config, sink_name)
    if not tables:
        raise ConfigError(f"--sink {sink_name}: name at least one table to fill")
    wanted = tuple(dict.fromkeys(tables))
    _check_selected(config, sink_name, wanted)
    pause = 1.0
    for attempt in range(1, RETRIES + 2):
        try:
            return _fill_once(config, sink_name, wanted, replace, progress, batch_rows)
        except TransientError as exc:
            if attempt > RETRIES:
                raise
            log.warning(
                "sink fill of %s: %s; resuming in %.0fs (retry %d of %d)",
                sink_name,
                exc,
                pause,
                attempt,
                RETRIES,
            )
            time.sleep(pause)
            pause = min(pause * 2, 30.0)
    raise AssertionError("unreachable")


def _fill_once(
    config: PipelineConfig,
    sink_name: str,
    wanted: tuple[TableRef, ...],
    replace: bool,
    progress: Callable[[FillProgress], None] | None,
    batch_rows: int,
) -> FillResult:
    from sinks.registry import open_sink

    sink_config = _sink_config(config, sink_name)
    path = progress_path(config.state_dir, config.name, sink_name)
    prior = read_state(path)
    if prior is not None and prior.finished:
        if not replace:
            # filled already (this may be a retry of a run that finished): a second fill would put
            # every row in a history sink twice; --replace asks for it, as a repair
            log.info("sink %s was already filled (recorded in %s); nothing to do", sink_name, path)
            return _result(prior, sink_name, None, 0, 0.0, resumed=True)
        prior = None  # a new fill (a repair): it starts afresh at a new view
    kafka = config.stream is not None
    if prior is not None:
        check_same(prior, wanted, kafka, sink_name, path)
        if replace != prior.replace:
            log.info("sink %s: continuing the fill started with replace=%s", sink_name, prior.replace)
    started = time.monotonic()
    sink = open_sink(sink_config, config.name)
    sink.open()
    try:
        writer = WriterIdentity(socket.gethostname(), os.getpid(), dt.datetime.now(dt.UTC).isoformat())
        sink.claim_writer(writer)
        applied = sink.applied()
        state = None
        if prior is not None:
            state = reconciled(prior, applied, table_position(sink, prior), sink_name, path)
        log.info(
            "sink fill step 1 - %s sink %s (%s): %s",
            "resuming the fill of" if prior is not None else "filling",
            sink_name,
            sink.name,
            ", ".join(str(t) for t in wanted),
        )
        run = _Run(config, sink_name, sink, path, wanted, replace, progress, applied, batch_rows)
        state = run.fill(state)
        seconds = time.monotonic() - started
        final = sink.applied()
        result = _result(state, sink_name, final, run.rows, seconds, resumed=prior is not None)
        log.info("sink fill step 4 - done: %s", result)
        return result
    finally:
        sink.close()


def _check_selected(config: PipelineConfig, sink_name: str, tables: tuple[TableRef, ...]) -> None:
    """Every table must be captured by the pipeline and taken by the sink: a fill of another one
    would be filtered out (or never followed by the stream) and yet reported as done."""
    sink = _sink_config(config, sink_name)
    source = config.any_source
    captured = TableFilter(tuple(source.tables), tuple(source.exclude_tables))
    taken = TableFilter(tuple(sink.tables), tuple(sink.exclude_tables))
    for ref in tables:
        if not captured.accepts(ref.db, ref.table):
            raise ConfigError(
                f"--sink {sink_name}: table {ref} is not captured by pipeline {config.name!r} "
                "(source.tables / source.exclude_tables): the stream would never follow its copy"
            )
        if not taken.accepts(ref.db, ref.table):
            raise ConfigError(
                f"--sink {sink_name}: sink {sink_name} does not take table {ref} (its tables / "
                "exclude_tables): leave the table out, or change the sink's selection"
            )


def _result(
    state: FillState, sink: str, applied: AppliedState | None, rows: int, seconds: float, *, resumed: bool
) -> FillResult:
    return FillResult(
        sink,
        tuple(TableFilled(t.table, t.rows) for t in state.tables),
        sum(t.rows for t in state.tables),
        rows,
        seconds,
        state.view,
        None if applied is None else applied.position,
        resumed,
        tuple(sorted(state.offsets.items())),
    )


class _Run:
    """One attempt: read chunks in one view, apply each to the sink after recording it."""

    def __init__(
        self,
        config: PipelineConfig,
        sink_name: str,
        sink: Sink,
        path: Path,
        tables: tuple[TableRef, ...],
        replace: bool,
        progress: Callable[[FillProgress], None] | None,
        applied: AppliedState | None,
        batch_rows: int,
    ) -> None:
        self.config = config
        self.sink_name = sink_name
        self.sink = sink
        self.path = path
        self.tables = tables
        self.replace = replace
        self.progress = progress
        self.estimated = 0  # the server's estimate of every table's rows (set by fill)
        self.applied = applied
        self.batch_rows = batch_rows
        self.rows = 0
        self.started = time.monotonic()
        self.logged = self.started
        bootstrap = config.bootstrap
        self.sizer = ChunkSizer(
            target_s=bootstrap.chunk_seconds,
            min_rows=min(bootstrap.min_chunk_rows, bootstrap.max_chunk_rows),
            max_rows=bootstrap.max_chunk_rows,
            initial_rows=min(10_000, bootstrap.max_chunk_rows),
        )

    def fill(self, state: FillState | None) -> FillState:
        offsets: dict[str, int] = dict(state.offsets) if state is not None else {}
        reader = open_fill_reader(self.config)
        try:
            return self._fill(reader, state, offsets)
        finally:
            reader.close()

    def _fill(self, reader: FillReader, state: FillState | None, offsets: dict[str, int]) -> FillState:
        stream = self.config.stream
        self.estimated = estimated_rows(self.config, self.tables)
        for ref in self.tables:  # before anything is read or written: a refusal leaves no trace
            if not reader.table_schema(ref).primary_key:
                raise TerminalError(
                    f"table {ref} has no primary key (nor a UNIQUE NOT NULL key): `cdc bootstrap --sink` "
                    "fills tables in key-ordered chunks; leave it out, or give it a key"
                )
        if state is None and stream is not None:
            # before the view: every change below these offsets is then in the view
            offsets = end_offsets(stream, self.config.name, self.tables)
            log.info(
                "sink fill step 2 - end offsets of %d partitions taken before the view: %s",
                len(offsets),
                ", ".join(f"{p}={o}" for p, o in sorted(offsets.items())) or "no table topics yet",
            )
        elif state is None:
            log.info(
                "sink fill step 2 - embedded mode: only sink %s is written; `cdc run` must stay stopped "
                "until the fill ends, then it continues this sink from the view",
                self.sink_name,
            )
        for ref in self.tables:
            state = self._table(reader, ref, state, offsets)
        assert state is not None  # at least one table was read
        self._mark(state)
        self.sink.flush()
        state = replace(state, finished=True)
        write_state(self.path, state)
        return state

    def _mark(self, state: FillState) -> None:
        """The sink's resume point, once every row is in.

        Embedded mode: its position must reach the view even when the tables were empty (nothing
        applied), or `cdc run` would resume a fresh sink at the pipeline's first start.
        Kafka mode: the end offsets taken before the view, stored only now. The rows went in as
        embedded-mode batches (no offsets), because only then does a sink skip rows it already
        holds by position: a Kafka-mode batch is never skipped by position (the consumer filters
        by offset), and every batch of a fill would carry the same offsets, so an Iceberg commit
        cycle cut by a SIGKILL (the tables committed, not the progress table) would land a batch
        twice when it is re-read. Until this batch lands the sink holds no offsets: `cdc sink`
        must not feed it before the fill ends (the lead's CLI says so).
        """
        mark = state.position(max(state.next_index - 1, 0))
        held = self.sink.applied()
        if state.kafka:
            if state.offsets:
                self.sink.apply(SinkBatch((), AppliedState(mark, dict(state.offsets))))
        elif held is None or held.position < mark:
            self.sink.apply(SinkBatch((), AppliedState(mark)))

    def _new_state(self, view: RestartPoint, offsets: dict[str, int]) -> FillState:
        base = view
        held = None if self.applied is None else self.applied.position
        if held is not None and snapshot_row_position(view, 0) <= held:
            # an earlier fill at this same boundary (nothing written since): number on after its rows
            if not (held.is_snapshot_anchor and RestartPoint.after(held).binlog_offset == view.binlog_offset):
                raise TerminalError(
                    f"sink {self.sink_name} has applied up to {held}, at or past the source's binlog "
                    f"boundary {view.transaction.file}:{view.binlog_offset}: it was fed by another source or "
                    "pipeline; empty it before filling it"
                )
            base = RestartPoint.after(held)
        log.info(
            "sink fill step 3 - consistent view opened at binlog %s:%d; rows at positions from %s",
            view.transaction.file,
            view.binlog_offset,
            snapshot_row_position(base, 0),
        )
        return FillState(
            self.config.name,
            self.sink_name,
            self.config.stream is not None,
            self.replace,
            base,
            view,
            offsets,
            tuple(TableFill(t) for t in self.tables),
        )

    def _table(
        self, reader: FillReader, ref: TableRef, state: FillState | None, offsets: dict[str, int]
    ) -> FillState:
        kafka = self.config.stream is not None
        while True:
            fill = state.table(ref) if state is not None else TableFill(ref)
            if fill.done:
                return state  # type: ignore[return-value]  # done only once a state exists
            chunk = self._read_batch(reader, ref, fill.after)
            if state is None:
                state = self._new_state(chunk.at, offsets)
            truncate = (kafka or state.replace) and not fill.truncated
            count = len(chunk.rows) + int(truncate)
            if count == 0:  # an empty table, nothing to wipe
                state = state.with_table(replace(fill, done=True))
                self._tell(state, ref, 0, True)
                continue
            first = state.next_index
            pending = PendingChunk(
                ref,
                fill.after,
                chunk.last_key,
                chunk.complete,
                truncate,
                first,
                first + count - 1,
                len(chunk.rows),
            )
            state = replace(state, pending=pending)
            write_state(self.path, state)  # before the apply: the write-ahead record
            self._apply(state, pending, chunk)  # no offsets, in Kafka mode too: see _mark
            state = state.landed()
            self.rows += len(chunk.rows)
            self._tell(state, ref, len(chunk.rows), chunk.complete)

    def _read_batch(self, reader: FillReader, ref: TableRef, after: RowImage | None) -> ChunkRead:
        """Keyset chunks of one view joined into one batch of about ``batch_rows``: a sink commit per
        batch (an Iceberg commit costs ~0.2 s whatever its size), a chunk read per sizer step."""
        chunks: list[ChunkRead] = []
        rows = 0
        # MariaDB's reader reads Arrow columns (snapshotter/text_columns.py); the others, tuples
        read = getattr(reader, "read_chunk_columns", reader.read_chunk)
        while True:
            chunk = read(ref, after, self.sizer.limit)
            self.sizer.observe(len(chunk.rows), chunk.elapsed_s)
            chunks.append(chunk)
            rows += len(chunk.rows)
            after = chunk.last_key if chunk.last_key is not None else after
            if chunk.complete or rows >= self.batch_rows:
                break
        if len(chunks) == 1:
            return chunk
        joined = concat_rows([c.rows for c in chunks])
        elapsed = sum(c.elapsed_s for c in chunks)
        return ChunkRead(chunk.schema, joined, after, chunk.at, chunk.complete, elapsed)

    def _apply(self, state: FillState, chunk: PendingChunk, read: ChunkRead) -> None:
        schema = read.schema
        ts_ms = int(time.time() * 1000)
        txn = f"snapshot-{self.sink_name}-{chunk.first}"
        index = chunk.first
        lead = None
        if chunk.truncate:
            lead = ChangeEvent(Op.TRUNCATE, schema, None, None, None, state.position(index), ts_ms, txn)
            index += 1
        # the rows of a batch are consecutive rows of one anchor: one ReadBatch, which the sinks
        # write column-wise (sinks/read_batch.py), instead of an event per row
        kept = read.rows if isinstance(read.rows, ArrowRows) else tuple(read.rows)
        rows = ReadBatch(schema, kept, state.position(index), ts_ms, txn, lead)
        # one batch per chunk, flushed: a chunk is in the sink whole or not at all
        self.sink.apply(SinkBatch(rows, AppliedState(state.position(chunk.last))))
        self.sink.flush()

    def _tell(self, state: FillState, ref: TableRef, chunk_rows: int, done: bool) -> None:
        now = time.monotonic()
        rate = self.rows / max(now - self.started, 1e-6)
        table_rows = state.table(ref).rows
        total = sum(t.rows for t in state.tables)
        told = FillProgress(self.sink_name, ref, table_rows, total, chunk_rows, rate, done, self.estimated)
        if done or now - self.logged >= _LOG_EVERY_S:
            self.logged = now
            eta = told.eta_s
            log.info(
                "sink %s: %s %d rows%s; %d of ~%d rows in all, %.0f rows/s, ETA %s",
                self.sink_name,
                ref,
                table_rows,
                " (done)" if done else "",
                total,
                max(self.estimated, total),
                rate,
                "-" if eta is None else f"{eta:.0f}s",
            )
        if self.progress is not None:
            self.progress(told)
