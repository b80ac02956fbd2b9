"""The capture writer's runs of messages straight into librdkafka, one call per run, no Python object
per message (``headwater_native.PackedMessages`` / ``RawProducer``, native/.../produce_direct.rs).

Through ``Producer.produce_batch`` each message was a dict of two bytes objects, parsed again by
confluent_kafka, with a callback state and a delivery report that took the GIL back per message:
about a third of the writer thread on 1000-row statements (benchmarks/results/latest.md, capbulk).
Here the compiled encoder writes a run's keys and values into one buffer and hands librdkafka
pointers into it, as confluent_kafka does (copied, partitioned by the producer's partitioner).

``raw_producer`` finds the four librdkafka functions in the copy of librdkafka this process loaded
(``/proc/self/maps``: the one confluent_kafka's extension links to) and the producer's handle; it
returns None, and the writer keeps ``produce_batch``, whenever anything is not as expected: no
/proc, not one librdkafka, a symbol missing, or a handle that librdkafka does not recognise as this
Producer's. Delivery failures of these messages reach no ``on_delivery`` callback; librdkafka
fails the Kafka transaction's commit for them instead (see produce_direct.rs), so a failed
delivery still aborts and nothing of it is committed.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

import confluent_kafka
from confluent_kafka import Producer
from headwater_native import PackedMessages, RawProducer

__all__ = ["PackedMessages", "RawProducer", "librdkafka_functions", "librdkafka_path", "raw_producer"]

log = logging.getLogger(__name__)

_FUNCTIONS = ("rd_kafka_opaque", "rd_kafka_topic_new", "rd_kafka_topic_destroy", "rd_kafka_produce_batch")


def librdkafka_path(maps: Path = Path("/proc/self/maps")) -> str | None:
    """The file of the one librdkafka mapped into this process, or None (none, several, no /proc)."""
    try:
        text = maps.read_text()
    except OSError:
        return None
    # address perms offset dev inode path: the path is the sixth field, absent for anonymous maps
    fields = (line.split(None, 5) for line in text.splitlines())
    found = {f[5] for f in fields if len(f) == 6 and os.path.basename(f[5]).startswith("librdkafka")}
    return found.pop() if len(found) == 1 else None


# The confluent_kafka releases whose Handle struct was read (src/confluent_kafka/src/confluent_kafka.h:
# ``PyObject_HEAD`` then ``rd_kafka_t *rk``, the same from 2.6.0 to 2.15.0; 2.16 was tested here).
# The handle is read from that private struct, and a wrong pointer would crash inside librdkafka
# before the opaque check could refuse it, so any other release keeps produce_batch.
CHECKED_RELEASES = ((2, 6), (2, 16))


def checked_release(version: str) -> bool:
    """``version`` (as confluent_kafka.version() names it) is one whose Handle layout was checked."""
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    low, high = CHECKED_RELEASES
    return low <= major_minor <= high


def _release() -> str:
    """confluent_kafka's release: ``version()`` gives a (text, number) tuple in some releases and the
    text alone in others."""
    version: object = confluent_kafka.version()
    return str(version[0] if isinstance(version, tuple) else version)


def librdkafka_functions(
    client: object, kind: type, names: tuple[str, ...], instead: str, logger: logging.Logger
) -> tuple[str, list[int]] | None:
    """The file of the librdkafka this process loaded and the addresses of ``names`` in it, when
    ``client``'s handle can be read: it is confluent_kafka's own ``kind`` (whose C struct has room
    for the handle after the object header) of a release whose struct was read. Else None, logged
    on ``logger`` as "kafka: messages through ``instead`` (why)". Shared by the capture's direct
    producer and `cdc sink`'s direct consumer."""
    if type(client) is not kind or kind.__basicsize__ < object.__basicsize__ + 8:
        logger.info("kafka: messages through %s (not a confluent_kafka %s)", instead, kind.__name__)
        return None
    release = _release()
    if not checked_release(release):
        logger.info(
            "kafka: messages through %s (confluent_kafka %s: its handle layout is unchecked)",
            instead,
            release,
        )
        return None
    path = librdkafka_path()
    if path is None:
        logger.info("kafka: messages through %s (librdkafka's file not found in this process)", instead)
        return None
    try:
        library = ctypes.CDLL(path)  # already loaded: the same copy, no second one
        return path, [ctypes.cast(getattr(library, name), ctypes.c_void_p).value or 0 for name in names]
    except (OSError, AttributeError) as exc:
        logger.info("kafka: messages through %s (%s)", instead, exc)
        return None


def raw_producer(producer: Producer) -> RawProducer | None:
    """The direct path into ``producer``'s librdkafka, or None when it cannot be trusted (logged)."""
    found = librdkafka_functions(producer, Producer, _FUNCTIONS, "produce_batch", log)
    if found is None:
        return None
    path, addresses = found
    try:
        raw = RawProducer(producer, *addresses)
    except (ValueError, RuntimeError) as exc:
        log.info("kafka: messages through produce_batch (%s)", exc)
        return None
    log.debug("kafka: runs of messages straight into %s", path)
    return raw
