"""A poll's messages kept as bytes, one chunk per partition, decoded only as a sink asks.

`cdc sink` used to turn every message into a ``ChangeEvent`` as it was polled. A chunk holds the
message values of one partition from one poll and decodes them on demand: as Arrow columns
(:mod:`cdc.stream.arrow_changes`) for a sink that takes them (the Iceberg history), or as
``ChangeEvent`` objects (the per-change path, for the other sinks and for whatever the columns do
not cover). Both are computed at most once per chunk and shared by every sink of the run.

``ChunkRecords`` is what a sink then gets as ``SinkBatch.records``: a sequence of ChangeEvents like
any batch (iterating decodes), which a sink that knows it reads chunk by chunk instead.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Protocol, overload

import pyarrow.compute as pc

from cdc.core.events import ChangeEvent
from cdc.core.positions import Position
from cdc.core.schemas import TableSchema
from cdc.stream.arrow_changes import ChangeColumns, change_columns, chunk_version

__all__ = ["ChangeChunk", "ChunkDecoder", "ChunkRecords"]


class ChunkDecoder(Protocol):
    """What a chunk needs from the reader: the per-change decode and the table versions."""

    def events(self, values: Sequence[bytes]) -> list[ChangeEvent]: ...

    def table_schema(self, version: str) -> TableSchema: ...


class ChangeChunk:
    """Consecutive messages of one partition from one poll (tombstones left out), undecoded."""

    __slots__ = ("_columns", "_events", "_tried", "decoder", "next_offsets", "partition", "values")

    def __init__(
        self, partition: str, values: Sequence[bytes], next_offsets: list[int], decoder: ChunkDecoder
    ) -> None:
        self.partition = partition  # "topic:partition"
        # a list of bytes, or (from the direct consume) a headwater_native.PackedValues: the values
        # back to back in one buffer, which the compiled decode reads in place (bytes on indexing)
        self.values = values
        self.next_offsets = next_offsets  # per message: the offset to consume once it is applied
        self.decoder = decoder
        self._events: list[ChangeEvent] | None = None
        self._columns: ChangeColumns | None = None
        self._tried = False

    def __len__(self) -> int:
        return len(self.next_offsets)

    def decode_now(self) -> None:
        """Decode the events and let the message bytes go: for a run whose sinks never ask for
        columns (both held until the batch is applied cost ~20 MiB of peak RSS per 10k changes)."""
        self.events()
        self.values = []
        self._tried = True  # no columns from now on

    def after(self, held: int) -> ChangeChunk | None:
        """The messages a sink holding ``held`` (its next offset) still needs; None if none."""
        start = bisect.bisect_right(self.next_offsets, held)
        if start == 0:
            return self
        if start >= len(self.next_offsets):
            return None
        part = ChangeChunk(self.partition, self.values[start:], self.next_offsets[start:], self.decoder)
        if self._events is not None:
            part._events = self._events[start:]
        return part

    def events(self) -> list[ChangeEvent]:
        if self._events is None:
            self._events = self.decoder.events(self.values)
        return self._events

    def columns(self) -> ChangeColumns | None:
        """The chunk as Arrow columns, or None when only the per-change path decodes it exactly."""
        if not self._tried:
            self._tried = True
            version = chunk_version(self.values[0]) if self.values else None
            if version is not None:
                self._columns = change_columns(self.values, self.decoder.table_schema(version))
        return self._columns

    def decoded_columns(self) -> ChangeColumns | None:
        """The columns if a sink already decoded them (never decodes)."""
        return self._columns

    def last_position(self, prefer_columns: bool) -> Position:
        """The highest position in the chunk (from the columns when they are wanted anyway)."""
        columns = self.columns() if prefer_columns else self._columns
        if columns is not None:
            return Position.parse(str(pc.max(columns.position).as_py()))
        return max(self.events(), key=_position_key).position


def _position_key(event: ChangeEvent) -> tuple[object, ...]:
    return event.position._key


class ChunkRecords(Sequence[ChangeEvent]):
    """A batch's chunks as the sequence of their ChangeEvents (decoded when first iterated)."""

    __slots__ = ("_flat", "chunks")

    def __init__(self, chunks: Sequence[ChangeChunk]) -> None:
        self.chunks = tuple(chunks)
        self._flat: list[ChangeEvent] | None = None

    def __len__(self) -> int:
        return sum(len(c) for c in self.chunks)

    def __iter__(self) -> Iterator[ChangeEvent]:
        for chunk in self.chunks:
            yield from chunk.events()

    @overload
    def __getitem__(self, index: int) -> ChangeEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ChangeEvent]: ...

    def __getitem__(self, index: int | slice) -> ChangeEvent | Sequence[ChangeEvent]:
        if self._flat is None:
            self._flat = list(self)
        return self._flat[index]
