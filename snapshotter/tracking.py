"""What the merging pump keeps of the stream while a table is bootstrapped, and its small terms.

A *place* is (binlog file sequence, offset): where a transaction starts, or a boundary between two.
A chunk read in a view with boundary S keeps a row unless the stream changed its key at a place at or
after S.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from cdc.core.events import RowImage
from cdc.core.handover import Chunk
from cdc.core.positions import Position, RestartPoint
from cdc.core.schemas import TableRef
from sinks.arrow_rows import ArrowRows
from snapshotter.chunk_feed import ReadChunk

__all__ = [
    "NOWHERE",
    "Place",
    "StreamPump",
    "Tracked",
    "boundary_place",
    "continue_anchor",
    "place",
    "unchanged_rows",
]

Place = tuple[int, int]
NOWHERE: Place = (-1, -1)


def place(position: Position) -> Place:
    return (position.file_seq, position.offset)


def boundary_place(point: RestartPoint) -> Place:
    return (point.transaction.file_seq, point.binlog_offset)


class StreamPump(Protocol):
    """What the merging pump wraps (cdc.daemon.pump.ReaderPump)."""

    def start(self) -> None: ...
    def get(self, timeout: float) -> Chunk | None: ...
    def stop(self) -> None: ...


@dataclass
class Tracked:
    """What the stream did to the table being bootstrapped (places are transaction starts)."""

    table: TableRef
    changed: dict[RowImage, Place] = field(default_factory=dict)
    truncated_at: Place = NOWHERE
    altered_at: Place = NOWHERE

    def prune(self, before: Place) -> None:
        """Forget changes before ``before``: later chunks are read at or after it."""
        if len(self.changed) > 10_000:
            self.changed = {k: p for k, p in self.changed.items() if p >= before}


def _place(position: Position) -> Place:
    return (position.file_seq, position.offset)


def _boundary_place(point: RestartPoint) -> Place:
    return (point.transaction.file_seq, point.binlog_offset)


def unchanged_rows(
    chunk: ReadChunk, tracked: Tracked, at: Place, changed_by: Mapping[RowImage, int]
) -> Sequence[RowImage]:
    """The chunk's rows whose key the stream did not change at or after the view's boundary (and,
    for a view that may miss transactions before it, PostgreSQL's: none that it missed changed last)."""
    changed = tracked.changed
    stale: Callable[..., set[RowImage]] | None = getattr(chunk, "stale_keys", None)
    if stale is not None:
        hidden, key_of = stale(changed, changed_by, at), chunk.schema.key_indexes()
        return [row for row in chunk.rows if not hidden or tuple(row[i] for i in key_of) not in hidden]
    if isinstance(chunk.rows, ArrowRows):
        return _unchanged_columns(chunk.rows, chunk.schema.key_indexes(), changed, at)
    if not any(p >= at for p in changed.values()):
        # the usual case in a quiet table: no key to look up per row; the very tuple, so that what
        # the reader's thread made of it (ChunkResult.prepared) still describes it
        return chunk.rows
    key_of = chunk.schema.key_indexes()
    getter = operator.itemgetter(*key_of)
    if len(key_of) == 1:
        return [row for row in chunk.rows if changed.get((getter(row),), NOWHERE) < at]
    return [row for row in chunk.rows if changed.get(getter(row), NOWHERE) < at]


def _unchanged_columns(
    rows: ArrowRows, key_of: tuple[int, ...], changed: Mapping[RowImage, Place], at: Place
) -> ArrowRows:
    """unchanged_rows on Arrow columns: the keys changed in the window looked up with ``is_in`` on
    the key column, with no Python object per row (a composite key's columns are made Python values:
    only those, once)."""
    recent = [k for k, p in changed.items() if p >= at]
    if not recent:
        return rows  # the very object: see ChunkResult.prepared
    if len(key_of) == 1:
        column = rows.arrays[key_of[0]]
        try:
            values = pa.array([k[0] for k in recent], column.type)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            values = None  # not all of the column's type: compared as Python values below
        if values is not None:
            hit = pc.is_in(column, value_set=values)
            return rows.filter(pc.invert(hit)) if pc.any(hit).as_py() else rows
    gone = set(recent)
    keys = zip(*(rows.column(i) for i in key_of), strict=True)
    keep = pa.array([k not in gone for k in keys], pa.bool_())
    return rows.filter(keep)


def continue_anchor(start: RestartPoint, last_position: str | None) -> RestartPoint:
    """Where the next snapshot rows go: after the last ones emitted, if those sit at the anchor of
    the very boundary the stream resumes at (a restart there must not number rows from 0 again)."""
    if last_position is None or not start.is_boundary or start.transaction.is_snapshot_anchor:
        return start
    last = Position.parse(last_position)
    if last.is_snapshot_anchor and boundary_place(RestartPoint.after(last)) == boundary_place(start):
        return RestartPoint.after(last)
    return start
