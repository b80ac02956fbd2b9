"""Keeps a TRUNCATE in its place when a table's topic has several partitions.

The writer sends a truncate to every partition of the table's topic, each copy in order with that
partition's changes. Applying the first copy at once would be wrong: a partition still behind could
then apply an older insert after it (a row that should be gone), and a partition ahead would have
its newer rows deleted. So each copy blocks its partition; once every partition of the topic that
this process consumes has delivered its copy, the truncate is applied once, and the blocked
partitions go on from their held messages.

A table whose partitions are split over several `cdc sink` processes cannot be fenced this way;
the README says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cdc.core.events import ChangeEvent, Op
from cdc.stream.kafka_reader import ConsumedChange


@dataclass(frozen=True, slots=True)
class BarrierTruncate:
    """A truncate ready to apply, with the offsets of every copy it consumed."""

    event: ChangeEvent
    offsets: dict[str, int]


Ready = ConsumedChange | BarrierTruncate


@dataclass
class _Pending:
    event: ChangeEvent
    copies: dict[str, int] = field(default_factory=dict)  # partition -> next offset after its copy


def topic_of(partition: str) -> str:
    return partition.rpartition(":")[0]


class TruncateBarrier:
    def __init__(self, partitions_of_topic: Callable[[str], set[str]]) -> None:
        self._partitions_of_topic = partitions_of_topic
        self._held: dict[str, list[ConsumedChange]] = {}
        self._pending: dict[str, _Pending] = {}

    @property
    def blocked(self) -> set[str]:
        """Partitions waiting for the other copies of a truncate (their fetching may be paused)."""
        return set(self._held)

    def admit(self, changes: list[ConsumedChange]) -> list[Ready]:
        out: list[Ready] = []
        for change in changes:
            self._one(change, out)
        return out

    def forget(self, partitions: set[str]) -> list[Ready]:
        """Partitions revoked in a rebalance: their held messages go back to Kafka (not applied).

        A truncate that now has the copies of every partition still assigned is released, with
        the messages its partitions held (returned, ready to apply): otherwise the partitions that
        already delivered their copy would wait for one that will never come here.
        """
        for partition in partitions:
            self._held.pop(partition, None)
            for pending in self._pending.values():
                pending.copies.pop(partition, None)
        out: list[Ready] = []
        for topic, pending in list(self._pending.items()):
            if not pending.copies:  # only revoked partitions had delivered it: start over
                del self._pending[topic]
                continue
            if not self._partitions_of_topic(topic) - partitions <= set(pending.copies):
                continue
            del self._pending[topic]
            out.append(BarrierTruncate(pending.event, dict(pending.copies)))
            released = {p: self._held.pop(p, []) for p in pending.copies}
            for messages in released.values():
                for message in messages:
                    self._one(message, out)
        return out

    def _one(self, change: ConsumedChange, out: list[Ready]) -> None:
        partition = change.partition
        held = self._held.get(partition)
        if held is not None:
            held.append(change)
            return
        if change.event.op is not Op.TRUNCATE:
            out.append(change)
            return
        topic = topic_of(partition)
        partitions = self._partitions_of_topic(topic)
        if len(partitions) <= 1:
            out.append(change)
            return
        pending = self._pending.setdefault(topic, _Pending(change.event))
        pending.copies[partition] = change.next_offset
        self._held[partition] = []
        if not partitions <= set(pending.copies):
            return
        del self._pending[topic]
        out.append(BarrierTruncate(pending.event, dict(pending.copies)))
        released = {p: self._held.pop(p, []) for p in pending.copies}
        for messages in released.values():
            for message in messages:
                self._one(message, out)
