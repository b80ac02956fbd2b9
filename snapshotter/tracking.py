"""What the merging pump keeps of the stream while a table is bootstrapped, and its small terms.

A *place* is (binlog file sequence, offset): where a transaction starts, or a boundary between two.
A chunk read in a view with boundary S keeps a row unless the stream changed its key at a place at or
after S.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from cdc.core.events import RowImage
from cdc.core.handover import Chunk
from cdc.core.positions import Position, RestartPoint
from cdc.core.schemas import TableRef

__all__ = ["NOWHERE", "Place", "StreamPump", "Tracked", "boundary_place", "place"]

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
