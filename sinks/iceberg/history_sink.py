"""The Iceberg history sink: every row change appended to ``<namespace>.<table>__history``, exactly once.

Buffering: rows are gathered per table (Python rows, turned into Arrow chunks every few thousand) and
committed every ``commit_rows`` rows or ``commit_seconds`` seconds (checked on ``apply``: an idle
pipeline's caller calls ``flush``), and on ``flush``/``close``; so snapshots and small files do not
pile up. A commit started by ``apply`` runs on one background thread while the next rows are
converted (at most one in flight; the applying thread waits for it before starting another, before
touching a table's schema, and in ``flush``/``close``). ``applied()`` reports only what has landed.
A commit that failed in the background raises from the next ``apply``/``flush``/``applied``, with
every buffered row dropped: the caller re-delivers from ``applied()``. Failures a retry can cure (a
concurrent commit won, catalog or storage unreachable, outcome unknown) are SinkUnavailable
(transient); anything else is SinkError.

Exactly once across many tables. Iceberg commits one table at a time, so a commit cycle is:

1. append each table's buffered rows, the snapshot summary carrying the cycle's state
   (``headwater.position``, ``headwater.offsets`` as JSON, ``headwater.pipeline``);
2. then append an empty snapshot with the same properties to the pipeline's progress table
   ``<namespace>._headwater_progress__<pipeline>``.

``applied()`` is the state in the progress table: every history table holds everything at or before
it (a table that saw no events in a cycle had nothing to hold, so idle tables never stall progress
and never get empty snapshots of their own). A crash inside step 1 leaves some tables ahead of
``applied()``; on re-delivery each table skips events at or before *its own* stored position (the
latest snapshot summary carrying ``headwater.position``), and every table skips events at or before
``applied()``. Re-delivered batches overlapping buffered ones are skipped too (the sink remembers the
highest state it accepted).

Kafka mode (the batch state carries offsets): events of several partitions interleave, so nothing
is skipped by position (the consumer filters by offset) and the offsets of a batch are merged into
the held ones (several ``cdc sink`` processes of one group share the progress table; the progress
commit re-reads and merges, retrying itself). A crash between table commits leaves rows whose
offsets were never stored; the consumer delivers them again, and a table whose latest snapshots are
not covered by the stored offsets drops exactly those rows, by position (read from the files those
snapshots added). From `cdc sink` a batch's records are chunks (``ChunkRecords``): a chunk decodable as
Arrow columns is appended whole (``sinks.iceberg.columnar_apply``), the others change by change.

History rows: one per change: the image after it (before it for a delete; a truncate is one row
with ``_op`` 't' and every source column null, meaning "every row before this position is gone").
From Kafka a truncate arrives once per partition: the table keeps one 't' row per truncate (its
property ``headwater.truncated-at``, set in the commit that adds the row, says which is recorded;
see ``TableWriter``); rows of other partitions below it are still recorded, since state-as-of cuts
by position, not by the order rows landed in.
An update of a keyless table is two rows with the same position: ``_op`` 'd' with the before image,
then ``_op`` 'u' with the after image, so the old row can be rebuilt and state-as-of counts copies
(identical rows are normal without a key). A key change arrives as a delete of the old key and a
create of the new one at two positions and is stored as such; a single 'u' that moves the key (older
streams) is split like a keyless update, into two rows. A truncate whose schema is empty (the
source had no TABLE_MAP for the table since a restart) lands on the table's known shape; a table
the history never held is not created for it.

Schema changes (``schema_changes: apply|stop``): see :mod:`sinks.iceberg.evolution`. A change that
cannot be followed, or any change under ``stop``, raises SinkSchemaError naming table and change;
the failing batch is not buffered and everything before it is committed first, so ``applied()`` is
the last good batch.

Writer fencing (embedded mode, ``claim_writer``): see :mod:`sinks.iceberg.fencing`. Unclaimed sinks
(Kafka-mode `cdc sink` processes sharing a group) build on each other's commits as before.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    CommitStateUnknownException,
    NoSuchTableError,
)
from pyiceberg.table import Table

from cdc.config.models import IcebergSinkConfig
from cdc.core.errors import HeadwaterError, SinkError, SinkSchemaError, SinkUnavailable
from cdc.core.events import ChangeEvent, Op, SchemaChange
from cdc.core.positions import Position
from cdc.core.schemas import TableRef, TableSchema
from cdc.stream.arrow_changes import ChangeColumns
from cdc.stream.kafka_chunks import ChunkRecords
from sinks.contract import AppliedState, PendingSchemaChange, SinkBatch, WriterIdentity
from sinks.iceberg.catalogs import (
    create_or_load_table,
    ensure_namespace,
    open_catalog,
    progress_identifier,
)
from sinks.iceberg.columnar_apply import add_columns, events_or_columns
from sinks.iceberg.failover_positions import table_positions
from sinks.iceberg.fencing import Claim, check_not_fenced, claim_properties, new_claim
from sinks.iceberg.history_tables import open_history_writer
from sinks.iceberg.progress_commit import (
    EMPTY_PROGRESS,
    PROGRESS_SCHEMA,
    progress_properties,
    record_progress,
)
from sinks.iceberg.pyiceberg_speed import warm_up as warm_up_pyiceberg
from sinks.iceberg.pyiceberg_workers import bound_workers
from sinks.iceberg.read_batches import add_rest
from sinks.iceberg.snapshot_bound import SnapshotBound
from sinks.iceberg.snapshot_state import (
    expire_all_but,
    merged_state,
    positions_past_offsets,
    state_properties,
    stored_state,
)
from sinks.iceberg.source_versions import accept_change, pending_changes
from sinks.iceberg.table_writer import TableWriter
from sinks.read_batch import ReadBatch

__all__ = ["IcebergHistorySink"]

log = logging.getLogger(__name__)

# the progress table gets a snapshot per commit and holds no data: the sink expires its own old ones
# (every table's metadata file lists its snapshots, and is rewritten on every commit)
_PROGRESS_EXPIRE_EVERY = 100
_PROGRESS_KEEP = 10
# a retry can help: a concurrent writer won (maintenance), the catalog or storage was unreachable, or
# the commit's outcome is unknown (the tables' summaries say what landed when the sink reopens)
_TRANSIENT = (CommitFailedException, CommitStateUnknownException, OSError, ConnectionError, TimeoutError)
_InFlight = tuple[AppliedState, list[tuple[TableWriter, list[pa.Table]]], "Future[AppliedState]"]


class IcebergHistorySink:
    """Appends every change event to its table's history; see the module docstring for the protocol."""

    takes_change_columns = True  # `cdc sink` hands it Kafka chunks it appends column-wise
    # not the 16 MiB prefetch (kafka_reader._LARGE_PREFETCH) but the SQL sinks' 2 MiB: measured with
    # the direct consume (benchmarks/iceberg_memory_ab.py, 200k changes, 11/10 interleaved rounds,
    # load 9-24), peak RSS median 254 (251-266) against 280 (269-290) MiB, CPU per change median
    # 5.09 (4.56-5.90) against 5.01 (4.54-6.68) us: the same within this machine's noise
    large_prefetch = False

    def __init__(self, config: IcebergSinkConfig, pipeline: str, base_dir: Path | None = None) -> None:
        self.name = f"iceberg:{config.namespace}"
        self.config = config
        self.pipeline = pipeline
        self._base_dir = base_dir
        self._catalog: Catalog | None = None
        self._progress: Table | None = None
        self._writers: dict[TableRef, TableWriter] = {}
        self._applied: AppliedState | None = None
        self._pending: AppliedState | None = None  # state of the last batch accepted into the buffer
        self._high_water: Position | None = None  # nothing at or before it is applied again
        self._buffered_rows = 0
        self._buffer_started: float | None = None
        self._epoch = 0
        self._claim: Claim | None = None  # set by claim_writer (embedded mode)
        self._commits = 0
        # a history table's snapshot count capped whatever the commit rate (sinks.iceberg.snapshot_bound)
        self._bound = SnapshotBound(max(config.max_snapshots, config.maintenance_retain_last))
        # commits run on one background thread so that Parquet writing overlaps the next rows' Arrow
        # conversion; at most one is in flight, and applied() moves when it has landed
        self._committer: ThreadPoolExecutor | None = None
        self._in_flight: _InFlight | None = None

    # -- the Sink protocol -------------------------------------------------------------------
    def open(self) -> None:
        catalog = open_catalog(self.config.catalog, self._base_dir)
        warm_up_pyiceberg()  # the first commit's lazy imports, before changes flow
        bound_workers()  # one pyiceberg writer thread (pyiceberg_workers.py: peak RSS)
        ensure_namespace(catalog, self.config.namespace)
        self._catalog = catalog
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iceberg-commit")
        identifier = progress_identifier(self.config.namespace, self.pipeline)
        try:
            self._progress = catalog.load_table(identifier)
        except NoSuchTableError:  # another sink process may create it at the same moment
            self._progress = create_or_load_table(
                catalog, identifier, PROGRESS_SCHEMA, properties=progress_properties(self.pipeline)
            )
        wanted = progress_properties(self.pipeline)
        if any(self._progress.properties.get(k) != v for k, v in wanted.items()):  # a table from before
            with self._progress.transaction() as txn:
                txn.set_properties(wanted)
        self._applied = stored_state(self._progress)
        self._pending = self._applied
        self._high_water = self._applied.position if self._applied else None
        log.info(
            "iceberg: opened %s for pipeline %s, applied %s",
            self.name,
            self.pipeline,
            self._applied.position if self._applied else None,
        )

    def claim_writer(self, writer: WriterIdentity) -> None:
        """Make ``writer`` this sink's only writer (see :mod:`sinks.iceberg.fencing`)."""
        if self._progress is None:
            raise RuntimeError("IcebergHistorySink.claim_writer before open()")
        self._wait_for_commit()
        for _attempt in range(10):
            self._progress.refresh()
            claim = new_claim(self._progress, writer)
            held = stored_state(self._progress)
            properties = claim_properties(claim)
            if held is not None:
                properties.update(state_properties(self.pipeline, held))
            try:
                self._progress.append(EMPTY_PROGRESS, snapshot_properties=properties)
            except CommitFailedException:
                continue  # another writer claimed or committed meanwhile: claim above it
            self._claim = claim
            # the writer resumes from what is stored now: buffered rows are dropped (they are
            # delivered again) and tables are read afresh (another writer may have written them)
            self._applied = self._pending = held
            self._high_water = held.position if held else None
            self._writers.clear()
            self._buffered_rows = 0
            self._buffer_started = None
            log.info("iceberg: %s claimed by %s (writer epoch %d)", self.name, claim.writer, claim.epoch)
            return
        raise SinkUnavailable(f"{self.name}: could not claim the sink (its progress table kept changing)")

    def pending_schema_changes(self) -> list[PendingSchemaChange]:
        """Schema changes this sink stopped on under ``schema_changes: stop``, not yet accepted."""
        return pending_changes(self._opened_catalog(), self.config.namespace, self.pipeline)

    def accept_schema_change(self, table: TableRef) -> PendingSchemaChange | None:
        """Let the pending change of ``table`` through: the next run applies it."""
        return accept_change(self._opened_catalog(), self.config.namespace, table)

    def table_positions(self) -> dict[TableRef, Position]:
        """Each history table's committed position (a failover skips by GTID what they hold)."""
        return table_positions(self._opened_catalog(), self.config.namespace, self.pipeline)

    def _opened_catalog(self) -> Catalog:
        if self._catalog is None:
            raise RuntimeError(f"{self.name}: open() the sink first")
        return self._catalog

    def applied(self) -> AppliedState | None:
        self._wait_for_commit()  # the committer thread shares the progress table
        if self._progress is not None:
            # Kafka mode: the other `cdc sink` processes of the group commit offsets to the same
            # progress table, and `cdc sink` asks on every partition assignment: read it now
            self._progress.refresh()
            stored = stored_state(self._progress)
            if stored is not None:
                self._applied = merged_state(self._applied, stored)
            # rows a dead process committed without its offsets are looked for again
            for writer in self._writers.values():
                writer.seen_checked = False
        return self._applied

    def apply(self, batch: SinkBatch) -> None:
        if self._catalog is None:
            raise RuntimeError("IcebergHistorySink.apply before open()")
        if self._in_flight is not None and self._in_flight[2].done():
            self._wait_for_commit()  # a background commit that failed raises here
        # Kafka mode: partitions interleave, so nothing is skipped by position (the consumer filters by
        # offset); only rows a crashed cycle already committed are dropped, by their exact position
        kafka = bool(batch.state.offsets)
        high_water = None if kafka else self._high_water
        writers = self._writers
        self._epoch += 1
        epoch = self._epoch
        touched: list[TableWriter] = []
        accepted = 0
        last_schema: TableSchema | None = None
        writer: TableWriter | None = None
        # The loop allocates a few objects per row while the buffer keeps many alive, so the cyclic
        # GC would run often and walk them all (~40% of apply time, measured); it is deferred to the
        # end of the batch, not switched off (and left alone if the application disabled it).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        # a snapshot chunk: once one of its rows is taken, the rest go column-wise (read_batches.py)
        read = batch.records.after(high_water) if isinstance(batch.records, ReadBatch) and not kafka else None

        def batch_writer(schema: TableSchema) -> TableWriter | None:
            found = writers.get(schema.ref) or self._open_writer(schema)
            if found is not None and found.epoch != epoch:  # first event of this table in the batch
                found.epoch, found.mark = epoch, found.buffered
                touched.append(found)
                self._batch_threshold(found, kafka, high_water)
            return found

        def add_chunk(columns: ChangeColumns) -> None:
            nonlocal accepted
            found = batch_writer(columns.schema)
            assert found is not None  # columns have no truncate: their schema has columns
            if columns.schema is not found.shape_schema and columns.schema.version != found.shape_version:
                self._wait_for_commit()  # the committer must not share the table meanwhile
                first = Position.parse(str(pc.min(columns.position).as_py()))
                found.follow(columns.schema, self.pipeline, self.config.schema_changes, first)
            accepted += add_columns(found, columns)

        def embedded_chunk(columns: ChangeColumns) -> bool:
            found = batch_writer(columns.schema)
            assert found is not None
            if found.threshold is not None:
                if Position.parse(str(columns.position[0])) <= found.threshold:
                    return False
                found.threshold = None
            add_chunk(columns)
            return True

        records: Iterable[ChangeEvent | SchemaChange] = batch.records if read is None else read
        if isinstance(records, ChunkRecords):
            records = events_or_columns(records, add_chunk if kafka else embedded_chunk)
        try:
            for record in records:
                if record.__class__ is SchemaChange:
                    continue  # the new shape arrives with the table's next row events
                record = cast(ChangeEvent, record)
                schema = record.schema
                if schema is not last_schema or writer is None:
                    writer = batch_writer(schema)
                    if writer is None:
                        continue  # a truncate of a table the history never held: no state to change
                    last_schema = schema
                if writer.seen is not None and record.position.to_string() in writer.seen.positions:
                    continue  # committed by a cycle whose offsets never reached the progress table
                if writer.threshold is not None:
                    if record.position <= writer.threshold:
                        continue  # already held (skipped before its schema is looked at)
                    writer.threshold = None  # positions rise within a batch: no more checks
                # an empty schema (a truncate the source could not describe) fits any shape
                if (
                    schema is not writer.shape_schema
                    and schema.version != writer.shape_version
                    and schema.columns
                ):
                    self._wait_for_commit()  # the committer must not share the table meanwhile
                    writer.follow(schema, self.pipeline, self.config.schema_changes, record.position)
                accepted += writer.add(record)
                if read is not None and record.op is Op.READ:
                    accepted += add_rest(writer, read, record)
                    break
        except SinkSchemaError:
            # Nothing of the failing batch stays buffered; what came before it is committed, so
            # applied() is the last good batch and a restart after the operator's fix resumes there.
            for touched_writer in touched:
                touched_writer.truncate(touched_writer.mark)
            self._commit(wait=True)
            raise
        finally:
            if gc_was_enabled:
                gc.enable()
        if kafka:
            self._pending = merged_state(self._pending, batch.state)
            if self._high_water is None or batch.state.position > self._high_water:
                self._high_water = batch.state.position
        elif high_water is None or batch.state.position > high_water:
            self._high_water = batch.state.position  # never backwards: an old batch changes nothing
            self._pending = batch.state
        if accepted and self._buffer_started is None:
            self._buffer_started = time.monotonic()
        self._buffered_rows += accepted
        if self._buffered_rows >= self.config.commit_rows or (
            self._buffer_started is not None
            and time.monotonic() - self._buffer_started >= self.config.commit_seconds
        ):
            self._commit(wait=False)

    def _batch_threshold(self, writer: TableWriter, kafka: bool, high_water: Position | None) -> None:
        """What ``writer`` skips in this batch: by position in embedded mode; from Kafka, only rows a
        crashed cycle committed past the stored offsets (read once per table after open/applied)."""
        threshold = None
        if kafka:
            if not writer.seen_checked:
                self._wait_for_commit()  # the committer must not share the table
                writer.seen = positions_past_offsets(writer.table, writer.identifier, self._applied)
                writer.seen_checked = True
        else:
            threshold = writer.committed
            if high_water is not None and (threshold is None or high_water > threshold):
                threshold = high_water
        writer.threshold = threshold

    def flush(self) -> None:
        self._commit(wait=True)

    def close(self) -> None:
        try:
            if self._catalog is not None:
                self._commit(wait=True)
        finally:
            if self._committer is not None:
                self._committer.shutdown(wait=True)
            self._committer = None
            self._writers.clear()
            self._catalog = None
            self._progress = None

    # -- internals ---------------------------------------------------------------------------
    def _open_writer(self, schema: TableSchema) -> TableWriter | None:
        """The writer of ``schema.ref``'s history (None: see ``open_history_writer``)."""
        assert self._catalog is not None
        self._wait_for_commit()  # one thread uses the catalog at a time
        writer = open_history_writer(self._catalog, self.config.namespace, self.pipeline, schema)
        if writer is not None:
            self._writers[schema.ref] = writer
        return writer

    def _commit(self, wait: bool) -> None:
        """Start committing what is buffered (one commit in flight at most); ``wait`` for it."""
        self._wait_for_commit()
        state = self._pending
        if state is not None and state != self._applied:
            work = [(w, w.take()) for _, w in sorted(self._writers.items()) if w.buffered]
            self._buffered_rows = 0
            self._buffer_started = None
            assert self._committer is not None
            self._in_flight = (state, work, self._committer.submit(self._write, state, work))
        elif wait and self._claim is not None and self._progress is not None:
            # nothing to commit: a flush still tells a writer that was taken over (the daemon's probe)
            check_not_fenced(self.name, self._progress, self._claim)
        if wait:
            self._wait_for_commit()

    def _write(self, state: AppliedState, work: list[tuple[TableWriter, list[pa.Table]]]) -> AppliedState:
        """The committer thread: each table's rows, then the progress table (see the module doc)."""
        assert self._progress is not None
        claim = self._claim
        if claim is not None:  # fenced before any table commit: a fenced writer lands nothing
            check_not_fenced(self.name, self._progress, claim)
        properties = state_properties(self.pipeline, state)
        started = time.monotonic()
        try:
            rows = sum(writer.commit(chunks, properties, claim is not None) for writer, chunks in work)
        except SinkUnavailable:
            if claim is not None:  # lost a race to another writer: say who, if it claimed
                check_not_fenced(self.name, self._progress, claim)
            raise
        final = self._record_progress(state)
        self._bound.after_commit([(writer.identifier, writer.table) for writer, _chunks in work])
        self._commits += 1
        if self._commits % _PROGRESS_EXPIRE_EVERY == 0:
            expire_all_but(self._progress, _PROGRESS_KEEP)
        log.info(
            "iceberg: committed %d rows to %s at %s in %.2fs",
            rows,
            self.name,
            state.position,
            time.monotonic() - started,
        )
        return final

    def _record_progress(self, state: AppliedState) -> AppliedState:
        return record_progress(self.name, self._progress, self._claim, self.pipeline, state)

    def _wait_for_commit(self) -> None:
        if self._in_flight is None:
            return
        state, work, future = self._in_flight
        self._in_flight = None
        try:
            final = future.result()
        except BaseException as exc:
            # What landed is in the tables' summaries; the caller re-delivers from applied().
            for writer, _chunks in work:
                with contextlib.suppress(Exception):  # unreachable catalog: the stale view is lower
                    writer.table.refresh()
                stored = stored_state(writer.table)
                writer.committed = stored.position if stored else None  # re-read: skip what landed
                writer.reread_base()
            for writer in self._writers.values():
                writer.discard()
            self._pending = self._applied
            self._high_water = self._applied.position if self._applied else None
            self._buffered_rows = 0
            self._buffer_started = None
            if isinstance(exc, _TRANSIENT):
                raise SinkUnavailable(
                    f"{self.name}: commit at {state.position} failed ({exc}); "
                    "re-deliver from applied(), tables skip what landed"
                ) from exc
            if isinstance(exc, Exception) and not isinstance(exc, HeadwaterError):
                raise SinkError(f"{self.name}: commit at {state.position} failed: {exc!r}") from exc
            raise
        for writer, _chunks in work:
            writer.committed = state.position
        for writer in self._writers.values():
            if writer.seen is not None and writer.seen.passed(final):
                writer.seen = None  # every partition is past what it held: nothing of it comes again
        self._applied = final
