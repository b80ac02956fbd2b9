"""`cdc sink`'s table messages read straight from librdkafka, no Python object per message
(``headwater_native.RawConsumer``, native/headwater_native/src/consume_direct.rs).

Through ``Consumer.consume()`` every message became a confluent_kafka ``Message`` (a str for its
topic, bytes for its key and value) that ``message_runs`` asked five methods of and dropped: about
half of `cdc sink`'s polling thread. ``RawConsumer`` has each table partition's fetch queue
forwarded to a librdkafka queue of its own before the partition is assigned, and reads that queue
into the runs ``message_runs`` makes. The consumer queue keeps the group's events only, and
confluent_kafka's ``consume()`` still serves them (the reader calls it on every poll): rebalance
callbacks run where they always ran, with confluent_kafka's own thread state. What the partitions
deliver is what ``consume()`` delivered (librdkafka filters aborted transactions and control
records before either queue; an unassigned partition's outdated messages are dropped by the same
version check); tests/integration/test_consume_direct.py compares the two on the real broker.

``raw_consumer`` returns None, and the reader keeps ``consume()``, whenever anything is not as
expected: the Consumer's handle is read from confluent_kafka's private struct, so only in the
releases checked for it (as the capture's direct producer: :mod:`cdc.stream.raw_produce`),
librdkafka's file found in this process, every function resolved, the handle recognised.
``HEADWATER_CONSUME_DIRECT=0`` turns it off.
"""

from __future__ import annotations

import logging
import os

from confluent_kafka import Consumer
from headwater_native import RawConsumer

from cdc.stream.raw_produce import librdkafka_functions

__all__ = ["RawConsumer", "raw_consumer"]

log = logging.getLogger(__name__)

_FUNCTIONS = (
    "rd_kafka_opaque",
    "rd_kafka_queue_new",
    "rd_kafka_queue_get_partition",
    "rd_kafka_queue_get_consumer",
    "rd_kafka_queue_forward",
    "rd_kafka_queue_destroy",
    "rd_kafka_queue_length",
    "rd_kafka_consume_batch_queue",
    "rd_kafka_message_destroy",
    "rd_kafka_topic_name",
    "rd_kafka_err2str",
)


def raw_consumer(consumer: Consumer) -> RawConsumer | None:
    """The direct path out of ``consumer``'s librdkafka (call before anything is assigned), or None
    when it cannot be trusted (logged)."""
    if os.environ.get("HEADWATER_CONSUME_DIRECT", "1") == "0":
        log.info("kafka: messages through consume() (HEADWATER_CONSUME_DIRECT=0)")
        return None
    found = librdkafka_functions(consumer, Consumer, _FUNCTIONS, "consume()", log)
    if found is None:
        return None
    path, addresses = found
    try:
        raw = RawConsumer(consumer, addresses)
    except (ValueError, RuntimeError) as exc:
        log.info("kafka: messages through consume() (%s)", exc)
        return None
    log.debug("kafka: table messages straight from %s", path)
    return raw
