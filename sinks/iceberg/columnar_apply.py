"""A Kafka chunk's Arrow columns into a history table, without a Python object per change.

Every change of a chunk :func:`cdc.stream.arrow_changes.change_columns` accepted is one history
row: the image it leaves (before for a delete) under the writer's column names and types, ``_op``,
``_position``, ``_source_ts`` and ``_txn`` straight from the envelope (truncates, updates that
need two rows, and anything not exactly decodable took the per-change path). The values and types
are those ``TableWriter.seal`` gives the same changes one by one; a unit test applies one stream
both ways and compares the tables row by row.

After a crash between table commits, re-delivered rows the table already holds (``writer.seen``,
see ``PastOffsets``) are dropped by one ``is_in`` over the positions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from cdc.core.events import ChangeEvent
from cdc.stream.arrow_changes import ChangeColumns
from cdc.stream.kafka_chunks import ChunkRecords
from sinks.iceberg.history_schema import OP, POSITION, SOURCE_TS, TXN
from sinks.iceberg.table_writer import TableWriter

__all__ = ["add_columns", "events_or_columns"]

_TS_UTC = pa.timestamp("us", tz="UTC")


def add_columns(writer: TableWriter, columns: ChangeColumns) -> int:
    """Buffer ``columns`` (of ``writer.shape_schema``'s version) as history rows; how many."""
    arrays = [
        values if c.source_arrow == values.type else values.cast(c.source_arrow)
        for c, values in zip(writer.columns, columns.image, strict=True)
    ]
    arrays = [
        a if c.source_arrow == c.arrow else a.cast(c.arrow)
        for c, a in zip(writer.columns, arrays, strict=True)
    ]
    arrays += [
        columns.op,
        columns.position,
        pc.multiply(columns.source_ts_ms, 1000).cast(_TS_UTC),
        columns.transaction_id,
    ]
    names = [c.name for c in writer.columns] + [OP, POSITION, SOURCE_TS, TXN]
    chunk = pa.Table.from_arrays(arrays, names=names)
    seen = writer.seen
    if seen is not None and seen.positions:
        held = pa.array(sorted(seen.positions), pa.string())
        chunk = chunk.filter(pc.invert(pc.is_in(columns.position, value_set=held)))
    n = int(chunk.num_rows)
    if n:
        writer.seal()  # rows added one by one before go first
        writer.add_chunk(chunk)
        writer.buffered += n
    return n


def events_or_columns(
    records: ChunkRecords, add_chunk: Callable[[ChangeColumns], bool | None]
) -> Iterator[ChangeEvent]:
    """The chunks' changes for the sink's per-change loop, but for chunks decodable as Arrow
    columns, which ``add_chunk`` appends whole (in batch order, between the others' events)."""
    for chunk in records.chunks:
        columns = chunk.columns()
        if columns is None or add_chunk(columns) is False:
            yield from chunk.events()
