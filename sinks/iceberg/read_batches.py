"""A snapshot chunk (ReadBatch) into a history table, column by column.

The history sink's per-event loop takes a chunk's first row (or a lead truncate and the first row)
as any event: it opens the table, skips what the table holds, follows the schema. Once one ``r`` row
of the chunk is accepted, every later row is too (same schema, rising positions, nothing to skip),
so the rest becomes one Arrow table here: the source columns transposed from the rows, ``_op``,
``_source_ts`` and ``_txn`` constant, ``_position`` built from the run's row indexes. The values and
types are exactly those ``TableWriter.seal`` gives the same rows one by one.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from cdc.core.events import ChangeEvent
from cdc.core.positions import Position
from sinks.iceberg.history_schema import OP, POSITION, SOURCE_TS, TXN
from sinks.iceberg.table_writer import TableWriter
from sinks.read_batch import ReadBatch

__all__ = ["add_rest", "position_texts"]

_TS_UTC = pa.timestamp("us", tz="UTC")


def add_rest(writer: TableWriter, batch: ReadBatch, accepted: ChangeEvent) -> int:
    """Buffer ``batch``'s rows after ``accepted`` (one of its rows the writer just took) as one
    Arrow table; returns how many."""
    start = accepted.position.row - batch.first.row + 1
    rows = batch.rows[start:]
    n = len(rows)
    if n == 0:
        return 0
    writer.seal()  # the rows added one by one go first
    arrays = []
    for i, c in enumerate(writer.columns):
        # made ahead on the snapshot reader's thread (ReadBatch.prepared): the same pa.array call
        made = batch.source_array(i, start)
        if made is not None and made.type == c.source_arrow:
            arrays.append(made if c.source_arrow == c.arrow else made.cast(c.arrow))
        else:
            arrays.append(c.to_array(batch.columns()[i][start:]))
    ts = pa.scalar(batch.source_ts_ms * 1000, pa.int64()).cast(_TS_UTC)
    arrays += [
        pa.repeat(pa.scalar("r", pa.string()), n),
        position_texts(batch.first.at_row(batch.first.row + start), n),
        pa.repeat(ts, n),
        pa.repeat(pa.scalar(batch.transaction_id, pa.string()), n),
    ]
    names = [c.name for c in writer.columns] + [OP, POSITION, SOURCE_TS, TXN]
    writer.add_chunk(pa.Table.from_arrays(arrays, names=names))
    writer.buffered += n
    return n


def position_texts(first: Position, n: int) -> pa.Array:
    """``to_string()`` of ``first`` and its next ``n - 1`` rows, built column-wise: the text has the
    row index in one fixed-width place."""
    # The row index is a fixed field from the left (after the tag, the era when there is one, the
    # file and the offset); found by place, not by searching its digits, which may equal the file's
    # or the offset's. Checked against the first and last rows' own text.
    text = first.to_string()
    parts = text.split(":")
    i = 4 if first.era else 3
    head, tail = ":".join(parts[:i]) + ":", ":" + ":".join(parts[i + 1 :])
    last = first.row + n - 1
    if (
        len(parts) <= i + 1
        or f"{head}{first.row:010d}{tail}" != text
        or f"{head}{last:010d}{tail}" != first.at_row(last).to_string()
    ):
        return pa.array([first.at_row(first.row + k).to_string() for k in range(n)], pa.string())
    indexes = pa.array(range(first.row, last + 1), pa.int64()).cast(pa.string())
    padded = pc.utf8_lpad(indexes, width=10, padding="0")
    joined = pc.binary_join_element_wise(head, padded, tail, "")
    return joined.cast(pa.string())
