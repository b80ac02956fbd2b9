"""The changes a repair sends: rows read again from the source, and deletes of rows it does not have.

`cdc reconcile --repair` asks for keys whose copies differ from the source. Each batch of keys is read
in one consistent view; a key found there goes out as op ``r`` with the source's row, a key the view
lacks as a delete (op ``d``) whose before image holds the key only (the copy's other values are not
the source's to state). They carry a transaction id starting with ``repair-``, which the envelope
shows as ``source.snapshot: "repair"``.
"""

from __future__ import annotations

import time

from cdc.core.events import ChangeEvent, ColumnValue, Op, RowImage
from cdc.core.positions import RestartPoint, snapshot_row_position
from snapshotter.chunk_feed import ReadChunk

__all__ = ["repair_events"]


def repair_events(
    chunk: ReadChunk, keys: tuple[RowImage, ...], point: RestartPoint, txn: str
) -> tuple[ChangeEvent, ...]:
    """The changes for ``keys`` given the rows ``chunk`` found, placed at ``point``."""
    schema = chunk.schema
    key_of = schema.key_indexes()
    found = {tuple(row[i] for i in key_of): row for row in chunk.rows}
    ts_ms = int(time.time() * 1000)
    events: list[ChangeEvent] = []
    for key in keys:
        position = snapshot_row_position(point, len(events))
        row = found.get(key)
        if row is not None:
            events.append(ChangeEvent(Op.READ, schema, key, None, row, position, ts_ms, txn))
            continue
        before: list[ColumnValue] = [None] * len(schema.columns)
        for index, value in zip(key_of, key, strict=True):
            before[index] = value
        events.append(ChangeEvent(Op.DELETE, schema, key, tuple(before), None, position, ts_ms, txn))
    return tuple(events)
