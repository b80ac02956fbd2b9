"""A ``Consumer.consume()`` batch into :class:`ChangeChunk` s: one open chunk per partition, in offset
order, tombstones left out, each message's next offset kept beside its value.

Two implementations that must give the same chunks and the same end-of-partition marks:
:func:`chunk_messages` has the compiled ``headwater_native.message_runs`` do the per-message work
(the calls on each Message, the partition switch, the value and offset lists) and handles only
the runs it returns in Python; :func:`chunk_messages_per_message` is the loop `cdc sink` ran
before, one Python pass per message, kept as the reference the tests compare the fast path to
(tests/integration/test_consume_runs.py). Pinned to one core, 200k of the benchmark's messages:
1.0-1.6 us of the polling thread's CPU per message the Python way (benchmarks/results/latest.md,
"cdc sink: the consumer").

Errors ride in the batch as messages: an end-of-partition mark (the partition's next message
clears it again) or a real error, which ``on_error`` raises. Both implementations hand them to
``on_error`` at the same point of the sequence, so the marks end the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message

from cdc.stream.kafka_chunks import ChangeChunk, ChunkDecoder

try:
    from headwater_native import PackedValues, message_runs
except ImportError as exc:  # pragma: no cover - a checkout whose setup did not build it
    raise ImportError(
        "headwater_native (the compiled module in native/headwater_native) is not installed or is "
        "older than this checkout: run scripts/setup.sh, or `pip install ./native/headwater_native`"
    ) from exc

__all__ = ["PartitionState", "chunk_messages", "chunk_messages_per_message", "chunk_runs"]


@dataclass(frozen=True, slots=True)
class PartitionState:
    """The reader's per-partition state a batch updates (shared, mutable containers)."""

    own: frozenset[str]  # the pipeline's own topics: their messages are no changes
    names: dict[tuple[str | None, int | None], str]  # (topic, partition) -> "topic:partition"
    at_end: set[str]  # partitions whose end was reached since their last message
    on_error: Callable[[KafkaError, str], None]  # marks an end, or raises
    decoder: ChunkDecoder
    chunk_messages: int  # at most this many messages per chunk


def _name(state: PartitionState, topic: str | None, partition: int | None) -> str:
    where = (topic, partition)
    found = state.names.get(where)
    if found is None:
        found = state.names[where] = f"{topic or ''}:{partition or 0}"
    return found


def chunk_messages(messages: list[Message], state: PartitionState) -> list[ChangeChunk]:
    """The batch's chunks, the per-message work done by ``headwater_native.message_runs``."""
    return chunk_runs(message_runs(messages), state)


def chunk_runs(runs: list[Any], state: PartitionState) -> list[ChangeChunk]:
    """The chunks of a batch's runs, as ``message_runs`` or ``RawConsumer.consume`` give them."""
    pieces: dict[str, _Pieces] = {}  # each partition's open chunk
    out: list[_Pieces] = []
    limit = state.chunk_messages
    for run in runs:
        if run.__class__ is not tuple:
            msg: Message = run  # an error or an end-of-partition mark
            error = msg.error()
            assert error is not None
            state.on_error(error, _name(state, msg.topic(), msg.partition()))
            continue
        if len(run) == 3:  # the same, from RawConsumer: (topic, partition, (code, reason))
            code, reason = run[2]
            state.on_error(KafkaError(code, reason), _name(state, run[0], run[1]))
            continue
        topic, partition, values, offsets = run
        if topic in state.own:
            continue
        name = _name(state, topic, partition)
        state.at_end.discard(name)
        start, n = 0, len(values)
        while start < n:
            piece = pieces.get(name)
            room = limit - piece.count if piece is not None else 0
            if piece is None or room <= 0:
                piece = pieces[name] = _Pieces(name)
                out.append(piece)
                room = limit
            if start == 0 and room >= n:
                piece.add(values, offsets)  # the whole run: no copy
            else:
                piece.add(values[start : start + room], offsets[start : start + room])
            start += room
    return [piece.chunk(state.decoder) for piece in out]


class _Pieces:
    """One chunk's runs (or parts of runs) as they come, joined once the batch is read: runs of
    ``PackedValues`` into one buffer (one copy, without the GIL), lists of bytes into one list."""

    __slots__ = ("count", "name", "offsets", "values")

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: list[Sequence[bytes]] = []
        self.offsets: list[list[int]] = []
        self.count = 0

    def add(self, values: Sequence[bytes], offsets: list[int]) -> None:
        self.values.append(values)
        self.offsets.append(offsets)
        self.count += len(offsets)

    def chunk(self, decoder: ChunkDecoder) -> ChangeChunk:
        if len(self.values) == 1:
            return ChangeChunk(self.name, self.values[0], self.offsets[0], decoder)
        values: Sequence[bytes]
        if all(v.__class__ is PackedValues for v in self.values):
            values = PackedValues.join(self.values)  # type: ignore[arg-type]
        else:
            values = [v for part in self.values for v in part]
        return ChangeChunk(self.name, values, [o for part in self.offsets for o in part], decoder)


def chunk_messages_per_message(messages: list[Message], state: PartitionState) -> list[ChangeChunk]:
    """The same chunks, one Python pass per message (the reference :func:`chunk_messages` equals)."""
    own, at_end, names, limit = state.own, state.at_end, state.names, state.chunk_messages
    chunks: dict[str, tuple[ChangeChunk, list[bytes]]] = {}  # each partition's open chunk, its values
    out: list[ChangeChunk] = []
    last: tuple[str | None, int | None] | None = None
    chunk: tuple[ChangeChunk, list[bytes]] | None = None
    name = ""
    skip = False
    for msg in messages:
        error = msg.error()
        if error is not None:
            state.on_error(error, _name(state, msg.topic(), msg.partition()))
            last = None  # an end-of-partition mark: the partition's next message clears it
            continue
        where = (msg.topic(), msg.partition())
        if where != last:
            last = where
            skip = where[0] in own
            if skip:
                continue
            found = names.get(where)
            if found is None:
                found = _name(state, where[0], where[1])
            name = found
            at_end.discard(name)
            chunk = chunks.get(name)
        elif skip:
            continue
        value = msg.value()
        if not value:
            continue  # a tombstone: the delete before it carried the change
        if chunk is None or len(chunk[1]) >= limit:
            values: list[bytes] = []
            chunk = chunks[name] = (ChangeChunk(name, values, [], state.decoder), values)
            out.append(chunk[0])
        chunk[1].append(value)
        chunk[0].next_offsets.append((msg.offset() or 0) + 1)
    return out
