"""Topic names and the settings each of a pipeline's topics is created with.

Names: ``<pipeline>.<db>.<table>`` per table, and ``<pipeline>.__schema``, ``<pipeline>.__checkpoints``,
``<pipeline>.__transactions`` for the pipeline's own topics.

Kafka accepts only ``[A-Za-z0-9._-]`` and at most 249 characters, while MariaDB identifiers may hold
almost anything (spaces, ``$``, non-ASCII letters, even ``.``). A db or table name that is not made
only of ``[A-Za-z0-9_-]`` has every other character (including ``.``, which would make the name
ambiguous) replaced by ``_`` and gets ``_`` plus 8 hex digits of the SHA-256 of the original name
appended, so ``my table`` and ``my_table`` land in different topics (``my_table_<hash>`` and
``my_table``). A name that is still too long is cut and hashed the same way. Valid names (the usual
case) are used as they are, as Debezium does.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from cdc.core.schemas import TableRef

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_TOPIC_LENGTH",
    "MESSAGE_HEADROOM",
    "TopicNames",
    "TopicSpec",
    "sanitize_name_part",
    "topic_max_message_bytes",
]

MAX_TOPIC_LENGTH = 249
_VALID_PART = re.compile(r"^[A-Za-z0-9_-]+$")
_INVALID_CHAR = re.compile(r"[^A-Za-z0-9_-]")
_HASH_LEN = 8
# db and table each get at most this much, so that prefix + two parts always fit in 249
_MAX_PART = 100


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]


def sanitize_name_part(name: str) -> str:
    """A db or table name as it may appear inside a Kafka topic name (see the module docstring)."""
    if _VALID_PART.match(name) and len(name) <= _MAX_PART:
        return name
    cleaned = _INVALID_CHAR.sub("_", name)[: _MAX_PART - _HASH_LEN - 1]
    return f"{cleaned}_{_digest(name)}"


MAX_MESSAGE_BYTES = "max.message.bytes"
# room over stream.max_message_bytes (which bounds a change's value) for its key and the record
# batch's framing: a change the writer let through always fits its topic, compressed or not
MESSAGE_HEADROOM = 64 * 1024


def topic_max_message_bytes(max_message_bytes: int) -> int:
    """The max.message.bytes a table topic needs for changes of up to ``max_message_bytes``."""
    return max_message_bytes + MESSAGE_HEADROOM


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How to create a topic if it is missing (of an existing one, only a too small
    max.message.bytes is raised)."""

    name: str
    partitions: int
    replication_factor: int
    config: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Every topic name of one pipeline."""

    pipeline: str

    def table(self, ref: TableRef) -> str:
        return f"{self.pipeline}.{sanitize_name_part(ref.db)}.{sanitize_name_part(ref.table)}"

    @property
    def schema(self) -> str:
        return f"{self.pipeline}.__schema"

    @property
    def checkpoints(self) -> str:
        return f"{self.pipeline}.__checkpoints"

    @property
    def transactions(self) -> str:
        return f"{self.pipeline}.__transactions"

    def table_spec(
        self, ref: TableRef, partitions: int, replication_factor: int, max_message_bytes: int = 0
    ) -> TopicSpec:
        # Broker defaults (cleanup.policy=delete) as Debezium's table topics get; tombstones still let
        # an operator switch a topic to compaction later. max.message.bytes fits the largest change
        # the writer lets through (stream.max_message_bytes) plus its key and the batch framing.
        config: tuple[tuple[str, str], ...] = ()
        if max_message_bytes:
            config = ((MAX_MESSAGE_BYTES, str(topic_max_message_bytes(max_message_bytes))),)
        return TopicSpec(self.table(ref), partitions, replication_factor, config)

    def own_specs(self, replication_factor: int, transaction_metadata: bool) -> tuple[TopicSpec, ...]:
        """The pipeline's own topics: one partition each, so their records stay totally ordered."""
        keep_forever = (("cleanup.policy", "delete"), ("retention.ms", "-1"), ("retention.bytes", "-1"))
        specs = [
            TopicSpec(self.schema, 1, replication_factor, keep_forever),
            # Small segments so compaction keeps up (only closed segments are compacted): one record
            # per commit would otherwise pile up for the default week-long segment.
            TopicSpec(
                self.checkpoints,
                1,
                replication_factor,
                (
                    ("cleanup.policy", "compact"),
                    ("segment.bytes", str(16 * 1024 * 1024)),
                    ("segment.ms", str(3_600_000)),
                    ("min.cleanable.dirty.ratio", "0.1"),
                ),
            ),
        ]
        if transaction_metadata:
            specs.append(TopicSpec(self.transactions, 1, replication_factor))
        return tuple(specs)
