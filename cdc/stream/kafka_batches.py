"""Runs of change events into Kafka a batch at a time: the writer's per-row Python was the limit.

The capture daemon's two threads share the GIL, so each Python step per row costs wall time. With the
rows decoded and their events built in compiled code, the writer's thread was the limit (profile
capture_bulk: ``_write_change`` 43 s of its 52.5 s per million rows; the envelope itself 3.7 s,
``Producer.produce`` 5.3 s, the rest Python bookkeeping per row). Here the rows of a run (one source
transaction, one table version, one source timestamp) get their keys and values from one compiled
call (``headwater_native.MessageMaker``) and go to librdkafka in one ``produce_batch`` call; the
writer counts them once per run.

``produce_batch`` carries no headers; our change messages have none. It partitions each message by
its key with the producer's partitioner, as ``produce`` does. When librdkafka's local queue is full
it refuses that message and every one after it in the batch (rd_kafka_produce_batch), so what was
taken is a prefix and order is kept: the rest is produced again once the broker has taken some.
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import KafkaError, Producer

from cdc.config.models import KafkaStreamConfig
from cdc.core.errors import MessageTooLarge
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Position
from cdc.stream.native_rows import MessageMaker

__all__ = ["Messages", "message_maker", "produce_in_order", "too_large"]

Messages = list[dict[str, bytes | None]]


def message_maker(config: KafkaStreamConfig) -> MessageMaker:
    """The compiled message builder for one writer: the ops a run may hold, tombstones, the size
    limit, and the position class (its fields, as the event's, are read from their slots)."""
    ops = [(op, op.value.encode()) for op in (Op.CREATE, Op.UPDATE, Op.DELETE, Op.READ)]
    return MessageMaker(
        ChangeEvent, ops, Op.READ, Op.DELETE, config.tombstones_on_delete, config.max_message_bytes, Position
    )


def produce_in_order(
    producer: Producer, topic: str, messages: Messages, wait_for_room: Callable[[], None]
) -> KafkaError | None:
    """Enqueue ``messages`` in their order; None when all are, else the error of one librdkafka
    refused for another reason than a full queue (the caller aborts the transaction)."""
    done = 0
    total = len(messages)
    while True:
        batch = messages if done == 0 else messages[done:]
        try:
            taken = producer.produce_batch(topic, batch)
        except BufferError:  # older clients raise it when the queue refused the whole batch
            taken = 0
        if taken == len(batch):
            return None
        refused = [(i, m["_error"]) for i, m in enumerate(batch) if "_error" in m]
        if refused:
            first, error = refused[0]
            if not isinstance(error, KafkaError) or error.code() != KafkaError._QUEUE_FULL:
                return error if isinstance(error, KafkaError) else KafkaError(KafkaError._FAIL, str(error))
            if first != taken or len(refused) != len(batch) - first:
                # not a prefix: a message after a refused one was taken, so order would be lost
                return KafkaError(KafkaError._FAIL, f"produce_batch to {topic} took messages out of order")
        elif taken:  # pragma: no cover - librdkafka marks every message it refuses
            return KafkaError(KafkaError._FAIL, f"produce_batch to {topic} refused messages without a reason")
        else:
            first = 0  # BufferError: the whole batch was refused
        for message in batch[first:]:
            message.pop("_error", None)
        done += first
        if done >= total:  # pragma: no cover - taken < len(batch) means something was refused
            return None
        wait_for_room()


def too_large(event: ChangeEvent, key: bytes | None, size: int, limit: int) -> MessageTooLarge:
    """The error of a change over ``stream.max_message_bytes``, raised before anything is produced: the
    daemon aborts the open Kafka transaction, so nothing of its source transaction (nor anything after
    the last checkpoint) is committed."""
    shown = key.decode("utf-8", "replace")[:200] if key is not None else "(no key)"
    return MessageTooLarge(
        f"a change of {event.schema.db}.{event.schema.table} with key {shown} at position "
        f"{event.position.to_string()} is {size} bytes as a Kafka message, over "
        f"stream.max_message_bytes ({limit}); nothing of its source transaction was written. "
        "Raise stream.max_message_bytes (at most 268435456; above 100 MiB the broker's "
        "socket.request.max.bytes must allow it too), or leave the table out of the pipeline "
        "(source.exclude_tables), and restart"
    )
