"""One history table's writer: buffered rows turned into Arrow chunks, appended in one snapshot.

The hot path of the sink (one ``add`` per change event) lives here; the commit protocol around it is
``sinks.iceberg.history_sink``.
"""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table

from cdc.core.events import ChangeEvent, Op, RowImage
from cdc.core.positions import Position
from cdc.core.schemas import TableRef, TableSchema
from sinks.iceberg.history_schema import (
    COLUMN_KINDS_PROPERTY,
    OP,
    POSITION,
    SOURCE_TS,
    TXN,
    HistoryColumn,
    arrow_schema_of,
    check_evolution,
    check_source_change,
    evolution_schema,
    history_columns,
    table_properties,
)
from sinks.iceberg.snapshot_state import stored_state

__all__ = ["TableWriter", "align_to", "evolve"]

log = logging.getLogger(__name__)

_CHUNK_ROWS = 8_192  # Python rows turned into one Arrow chunk
_TS_UTC = pa.timestamp("us", tz="UTC")


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


def _key_index(schema: TableSchema) -> tuple[int, ...]:
    names = [c.name for c in schema.columns]
    return tuple(names.index(k) for k in schema.primary_key)


class TableWriter:
    """One history table: its Iceberg table, committed position, and buffered rows."""

    def __init__(self, ref: TableRef, identifier: str, table: Table, schema: TableSchema) -> None:
        self.ref = ref
        self.identifier = identifier
        self.table = table
        state = stored_state(table)
        self.committed: Position | None = state.position if state else None
        self.schema = schema
        self.columns: tuple[HistoryColumn, ...] = history_columns(schema)
        self.width = len(self.columns)
        self.key_index = _key_index(schema)
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
        self.seen: set[str] | None = None
        self.seen_checked = False
        self.chunks: list[pa.Table] = []
        self.buffered = 0

    def add(self, event: ChangeEvent) -> int:
        """Buffer the event's history row(s); returns how many (2 for an update that moves its key)."""
        image = event.after
        added = 1
        if image is None:
            image = event.before
            if image is None:  # truncate: a marker row, every source column null
                image = (None,) * self.width
        elif self.key_index and event.before is not None and event.op is Op.UPDATE:
            before = event.before
            if any(before[i] != image[i] for i in self.key_index):
                # the row leaves its old key: a 'd' row with the before image, same position
                self._row(before, "d", event)
                added = 2
        self._row(image, event.op._value_, event)
        return added

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
        self.chunks.append(pa.Table.from_arrays(arrays, names=names))
        self.rows, self.meta = [], []

    def follow(self, schema: TableSchema, pipeline: str) -> None:
        """Adopt a new source schema version: seal rows of the old shape, evolve the table if needed."""
        check_source_change(self.identifier, self.schema, schema)
        self.seal()
        evolve(self.table, self.identifier, schema, pipeline)
        self.schema = schema
        self.columns = history_columns(schema)
        self.width = len(self.columns)
        self.key_index = _key_index(schema)

    def take(self) -> list[pa.Table]:
        """Hand the buffered rows over to a commit; the buffer starts empty again."""
        self.seal()
        chunks = self.chunks
        self.chunks = []
        self.buffered = 0
        return chunks

    def commit(self, chunks: list[pa.Table], properties: dict[str, str]) -> int:
        """Append ``chunks`` in one snapshot (runs on the committer thread)."""
        target = arrow_schema_of(self.table.schema())
        # one contiguous table: pyiceberg partitions and writes a many-chunk table much more slowly
        data = pa.concat_tables([align_to(chunk, target) for chunk in chunks]).combine_chunks()
        # a commit that races another writer (`cdc maintain`) is retried by pyiceberg itself
        self.table.append(data, snapshot_properties=properties)
        return int(data.num_rows)

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

    def discard(self) -> None:
        self.rows, self.meta = [], []
        self.chunks = []
        self.buffered = 0


def evolve(table: Table, identifier: str, schema: TableSchema, pipeline: str) -> None:
    """Add new columns and apply safe promotions; SinkSchemaError for anything else."""
    if check_evolution(identifier, table.schema(), schema):
        with table.update_schema() as update:
            update.union_by_name(evolution_schema(schema))
        log.info("iceberg: evolved %s to schema version %s", identifier, schema.version)
    kinds = json.loads(table.properties.get(COLUMN_KINDS_PROPERTY, "{}"))
    wanted = table_properties(pipeline, schema, kinds)
    if any(table.properties.get(k) != v for k, v in wanted.items()):
        with table.transaction() as txn:
            txn.set_properties(wanted)
