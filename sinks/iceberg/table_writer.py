"""One history table's writer: buffered rows turned into Arrow chunks, appended in one snapshot.

The hot path of the sink (one ``add`` per change event) lives here; the commit protocol around it is
``sinks.iceberg.history_sink``. Chunks are buffered at least ``MIN_CHUNK_ROWS`` rows each (small
ones combined as they come, ``add_chunk``), which a commit hands to pyiceberg as they are.
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation

from cdc.config.models import SchemaChangePolicy
from cdc.core.errors import SinkUnavailable
from cdc.core.events import ChangeEvent, Op, RowImage
from cdc.core.positions import Position
from cdc.core.schemas import TableRef, TableSchema
from sinks.iceberg.evolution import follow_version, shape_of
from sinks.iceberg.history_schema import (
    OP,
    POSITION,
    SOURCE_TS,
    TXN,
    HistoryColumn,
    arrow_schema_of,
)
from sinks.iceberg.pyiceberg_partitions import MIN_CHUNK_ROWS
from sinks.iceberg.pyiceberg_partitions import install as _skip_single_partition_filter
from sinks.iceberg.snapshot_state import POSITION_KEY, PastOffsets, stored_state
from sinks.iceberg.source_versions import stored_schema, stored_versions

__all__ = ["TRUNCATED_AT_PROPERTY", "TableWriter", "align_to"]

log = logging.getLogger(__name__)

# a commit of one day's rows is not filtered by partition (a copy of every row): pyiceberg_partitions.py
_skip_single_partition_filter()

_CHUNK_ROWS = 8_192  # Python rows turned into one Arrow chunk
_COMMIT_ATTEMPTS = 5
_TS_UTC = pa.timestamp("us", tz="UTC")
# the _position of the last truncate recorded in the table, set in the same commit as its 't' row:
# a copy of that truncate from another partition (another batch, process or run) is not recorded again
TRUNCATED_AT_PROPERTY = "headwater.truncated-at"


def align_to(chunk: pa.Table, target: pa.Schema) -> pa.Table:
    """``chunk`` with the target's columns, order and types (missing columns null, promotions cast)."""
    n = chunk.num_rows
    names = set(chunk.column_names)
    arrays = []
    for field in target:
        if field.name in names:
            column = chunk.column(field.name)
            arrays.append(column if column.type == field.type else column.cast(field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=target)


def _in_pieces(chunks: list[pa.Table], target: pa.Schema) -> pa.Table:
    """``chunks`` as one table of the target's shape, in contiguous pieces of at least
    ``MIN_CHUNK_ROWS`` rows, emptying ``chunks`` as they are copied.

    pyiceberg writes a table of many small chunks much more slowly (per batch), so small chunks are
    combined; but not into one copy of the whole commit: that copy, next to the chunks it was made
    from, was the commit's peak memory. Each piece is copied while only its own chunks are held
    twice, and a buffered chunk is let go once copied (the Parquet write overlaps the next rows'
    buffering; a failed commit drops them anyway, see history_sink)."""
    pieces: list[pa.Table] = []
    group: list[pa.Table] = []
    rows = 0
    chunks.reverse()  # popped from the end: in their order
    while chunks:
        group.append(align_to(chunks.pop(), target))
        rows += group[-1].num_rows
        if rows >= MIN_CHUNK_ROWS or not chunks:
            pieces.append(group[0] if len(group) == 1 else pa.concat_tables(group).combine_chunks())
            group, rows = [], 0
    return pa.concat_tables(pieces) if pieces else target.empty_table()


def _current_id(table: Table) -> int | None:
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot is not None else None


def _key_index(schema: TableSchema) -> tuple[int, ...]:
    names = [c.name for c in schema.columns]
    return tuple(names.index(k) for k in schema.primary_key)


class TableWriter:
    """One history table: its Iceberg table, committed position, and buffered rows.

    ``schema`` is the last source version the table follows (None for a table from before it was
    stored); rows are gathered in the *shape* of one version at a time (``shape_schema``), each
    column under its field's current name, so rows of an older version still land.
    """

    def __init__(self, ref: TableRef, identifier: str, table: Table) -> None:
        self.ref = ref
        self.identifier = identifier
        self.table = table
        state = stored_state(table)
        self.committed: Position | None = state.position if state else None
        self.schema: TableSchema | None = stored_schema(table, ref)
        self.versions = stored_versions(table)
        self.shape_schema: TableSchema | None = None
        self.shape_version: str | None = None
        self.columns: tuple[HistoryColumn, ...] = ()
        self.width = 0
        self.key_index: tuple[int, ...] = ()
        if self.schema is not None and self.schema.version in self.versions:
            self._take_shape(self.schema)
        self.rows: list[RowImage] = []
        self.meta: list[tuple[str, str, int, str]] = []  # (_op, _position, source_ts_ms, _txn)
        # _position text of the current transaction around the row index (to_string is the hot spot)
        self._txn: str | None = None
        self._file = ""
        self._offset = -1
        self._pos_head = ""
        self._pos_tail = ""
        # per apply(): which batch last touched this table, and its skip threshold in that batch
        self.epoch = -1
        self.mark = 0
        self.threshold: Position | None = None
        # Kafka mode after a crash: positions of rows committed past the progress table's offsets
        self.seen: PastOffsets | None = None
        self.seen_checked = False
        self.chunks: list[pa.Table] = []
        self.buffered = 0
        self.base_snapshot = _current_id(table)  # the snapshot the next append must build on
        # truncates: the last one committed (read by the applying thread, set by the committer)
        # and the highest one accepted since (buffered or in flight); positions as sortable text
        self.committed_truncate: str | None = table.properties.get(TRUNCATED_AT_PROPERTY)
        self.accepted_truncate: str | None = None

    def _take_shape(self, schema: TableSchema) -> None:
        self.shape_schema = schema
        self.shape_version = schema.version
        self.columns = shape_of(self.table, self.versions.get(schema.version, {}), schema)
        self.width = len(self.columns)
        self.key_index = _key_index(schema)

    def add(self, event: ChangeEvent) -> int:
        """Buffer the event's history row(s); returns how many (2 for an update that moves its key)."""
        image = event.after
        added = 1
        if image is None:
            image = event.before
            if image is None:  # truncate: a marker row, every source column null
                if not self._first_copy(event):
                    return 0
                image = (None,) * self.width
        elif event.before is not None and event.op is Op.UPDATE:
            before = event.before
            # a keyless table's update, or one that moves the key (streams from before the decoder
            # split key changes), keeps the before image: a 'd' row at the same position, then 'u'
            if not self.key_index or any(before[i] != image[i] for i in self.key_index):
                self._row(before, "d", event)
                added = 2
        self._row(image, event.op._value_, event)
        return added

    def _first_copy(self, event: ChangeEvent) -> bool:
        """Whether this truncate is not yet recorded: the writer sends one copy per partition, and the
        history keeps one 't' row per truncate (rows of other partitions below it stay recorded:
        state-as-of cuts by position, whatever order the rows landed in)."""
        text = event.position.to_string()
        for floor in (self.committed_truncate, self.accepted_truncate):
            if floor is not None and text <= floor:
                return False
        self.accepted_truncate = text
        return True

    def _row(self, image: RowImage, op: str, event: ChangeEvent) -> None:
        # hot path (once per change): the _position text is rebuilt around the row index while the
        # transaction stays the same, since Position.to_string dominates otherwise
        position = event.position
        txn = event.transaction_id
        if txn == self._txn and position.offset == self._offset and position.file == self._file:
            text = f"{self._pos_head}{position.row:010d}{self._pos_tail}"
        else:
            text = self._new_transaction(position, txn)
        self.rows.append(image)
        self.meta.append((op, text, event.source_ts_ms, txn))
        self.buffered += 1
        if len(self.rows) >= _CHUNK_ROWS:
            self.seal()

    def _new_transaction(self, position: Position, txn: str) -> str:
        text = position.to_string()
        row = f"{position.row:010d}"
        head, sep, tail = text.partition(f":{row}:")
        if sep and f"{head}:{row}:{tail}" == text and text.count(f":{row}:") == 1:
            self._txn, self._file, self._offset = txn, position.file, position.offset
            self._pos_head, self._pos_tail = f"{head}:", f":{tail}"
        else:  # a layout this shortcut does not know: no shortcut
            self._txn = None
        return text

    def seal(self) -> None:
        """Turn the Python rows gathered so far into an Arrow chunk."""
        if not self.rows:
            return
        columns = list(zip(*self.rows, strict=True))  # images of one schema version: same width
        arrays = [c.to_array(values) for c, values in zip(self.columns, columns, strict=True)]
        ops, positions, ts_ms, txns = zip(*self.meta, strict=True)
        ts = pc.multiply(pa.array(ts_ms, pa.int64()), 1000).cast(_TS_UTC)
        arrays += [
            pa.array(ops, pa.string()),
            pa.array(positions, pa.string()),
            ts,
            pa.array(txns, pa.string()),
        ]
        names = [c.name for c in self.columns] + [OP, POSITION, SOURCE_TS, TXN]
        self.add_chunk(pa.Table.from_arrays(arrays, names=names))
        self.rows, self.meta = [], []

    def add_chunk(self, chunk: pa.Table) -> None:
        """Buffer ``chunk``; small chunks (a Kafka poll's columns, ~2,500 changes) are combined into
        one as soon as they make ``MIN_CHUNK_ROWS`` rows, so that a commit hands the buffer on
        without copying it (``_in_pieces`` passes such chunks through).

        The copy is the same work as the commit's was, made here on the applying thread a few
        thousand rows at a time instead of by the committer thread over the whole commit: measured
        on the 200k-change benchmark (benchmarks/iceberg_memory_ab.py, pinned, alternated rounds,
        Arrow's pool the system allocator from the start in both), peak RSS 221.0 (220.0-223.3) ->
        217.5 (216.4-217.9) MiB (5 rounds, load 9-10) and 221.2 (219.1-226.2) -> 217.2 (215.6-222.0)
        (8 rounds, load 4); CPU per row 4.64 -> 4.58 and 4.45 -> 4.58 us: the same within the noise."""
        chunks = self.chunks
        chunks.append(chunk)
        if chunk.num_rows >= MIN_CHUNK_ROWS:
            return
        # the small chunks of this shape at the end of the buffer (one of another shape, or a large
        # one, ends the run: those stay as they are)
        start, rows = len(chunks) - 1, chunk.num_rows
        while (
            start
            and chunks[start - 1].num_rows < MIN_CHUNK_ROWS
            and chunks[start - 1].schema.equals(chunk.schema)
        ):
            start -= 1
            rows += chunks[start].num_rows
        if rows >= MIN_CHUNK_ROWS:
            chunks[start:] = [pa.concat_tables(chunks[start:]).combine_chunks()]

    def follow(
        self, schema: TableSchema, pipeline: str, policy: SchemaChangePolicy, position: Position
    ) -> None:
        """Gather rows of ``schema`` from now on: a version the table knows, or a new one to follow."""
        self.seal()
        if schema.version not in self.versions:
            renames = follow_version(
                self.table, self.identifier, self.schema, schema, pipeline, policy, position
            )
            for old_name, new_name in renames:  # rows buffered before a rename carry the old names
                self.chunks = [
                    chunk.rename_columns([new_name if n == old_name else n for n in chunk.column_names])
                    for chunk in self.chunks
                ]
            self.versions = stored_versions(self.table)
            self.schema = schema
        self._take_shape(schema)

    def take(self) -> list[pa.Table]:
        """Hand the buffered rows over to a commit; the buffer starts empty again."""
        self.seal()
        chunks = self.chunks
        self.chunks = []
        self.buffered = 0
        return chunks

    def commit(self, chunks: list[pa.Table], properties: dict[str, str], exclusive: bool) -> int:
        """Append ``chunks`` in one snapshot (runs on the committer thread).

        The append is conditional on the table's snapshot being the one this writer last saw
        (pyiceberg's retry is off for history tables). When another commit won the race, the
        writer looks at what landed: a snapshot that only rewrote files (`cdc maintain`) or, for a
        shared (unclaimed) sink, another process's rows is no conflict, and the append is retried on
        top of it; for an ``exclusive`` (claimed) writer, rows another writer committed mean this
        writer's view is stale: SinkUnavailable, and the caller restarts from the sinks' positions,
        where the table skips what the other writer landed.
        """
        data = _in_pieces(chunks, arrow_schema_of(self.table.schema()))
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            try:
                data = self._append(data, properties)
                break
            except CommitFailedException:
                self.table.refresh()
                if exclusive and self._others_committed():
                    raise SinkUnavailable(
                        f"{self.identifier}: another writer committed rows since this writer read the "
                        "table; nothing of this commit landed, restart from the sinks' positions"
                    ) from None
                self.base_snapshot = _current_id(self.table)
                if attempt == _COMMIT_ATTEMPTS:
                    raise
                time.sleep(0.05 * attempt)
        self.base_snapshot = _current_id(self.table)
        return int(data.num_rows)

    def _append(self, data: pa.Table, properties: dict[str, str]) -> pa.Table:
        """Append ``data``; its truncate rows move the table's truncate property in the same commit.

        Truncate rows at or below the property (another process recorded that truncate since this
        writer read the table: a commit conflict, then a retry on the refreshed table) are left out.
        """
        stored = self.table.properties.get(TRUNCATED_AT_PROPERTY)
        is_truncate = pc.equal(data.column(OP), "t")
        if not pc.any(is_truncate).as_py():
            self.table.append(data, snapshot_properties=properties)
            return data
        if stored is not None:
            old = pc.and_(is_truncate, pc.less_equal(data.column(POSITION), stored))
            data = data.filter(pc.invert(old))
        truncates = data.filter(pc.equal(data.column(OP), "t")).column(POSITION)
        newest = pc.max(truncates).as_py() if len(truncates) else None
        if newest is None:
            self.table.append(data, snapshot_properties=properties)
            return data
        with self.table.transaction() as txn:
            txn.append(data, snapshot_properties=properties)
            txn.set_properties({TRUNCATED_AT_PROPERTY: newest})
        self.committed_truncate = newest
        return data

    def reread_base(self) -> None:
        """After a failed cycle: build on the table as it is now (its position was re-read too)."""
        self.base_snapshot = _current_id(self.table)

    def _others_committed(self) -> bool:
        """Whether an append carrying a source position landed after ``base_snapshot``."""
        snapshot = self.table.current_snapshot()
        while snapshot is not None and snapshot.snapshot_id != self.base_snapshot:
            summary = snapshot.summary
            if summary is not None and summary.operation is Operation.APPEND and summary[POSITION_KEY]:
                return True
            parent = snapshot.parent_snapshot_id
            snapshot = self.table.snapshot_by_id(parent) if parent is not None else None
        # the base expired from the table's metadata: nothing says who wrote since, assume the worst
        return snapshot is None and self.base_snapshot is not None

    def truncate(self, keep: int) -> None:
        """Drop buffered rows past the first ``keep`` (a failed batch's)."""
        self.seal()
        kept: list[pa.Table] = []
        room = keep
        for chunk in self.chunks:
            if room <= 0:
                break
            kept.append(chunk if chunk.num_rows <= room else chunk.slice(0, room))
            room -= kept[-1].num_rows
        self.chunks = kept
        self.buffered = keep
        self.accepted_truncate = None
        for chunk in kept:  # the truncates still buffered
            found = pc.max(chunk.filter(pc.equal(chunk.column(OP), "t")).column(POSITION)).as_py()
            if found is not None and (self.accepted_truncate is None or found > self.accepted_truncate):
                self.accepted_truncate = found

    def discard(self) -> None:
        self.rows, self.meta = [], []
        self.chunks = []
        self.buffered = 0
        # nothing buffered or in flight: the table says what is recorded (refreshed after a failure)
        self.accepted_truncate = None
        self.committed_truncate = self.table.properties.get(TRUNCATED_AT_PROPERTY)
