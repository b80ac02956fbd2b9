"""librdkafka client settings and error classification shared by the writer and the checkpoint reader.

Producer choices: idempotent transactional producer, ``acks=all``, ``linger.ms=5``, and a bounded
local queue (``queue.buffering.max.*``) that turns a huge source transaction into backpressure
instead of memory. Compression is lz4: with ``benchmarks/stream_produce_bench.py`` (300k events,
~600-byte JSON values, local broker) lz4 gave 47k events/s, zstd 42k and none 43k; the writer's
Python side is the bottleneck, so the cheapest codec wins and still shrinks JSON several-fold on
the wire and on disk. Operators may override it through ``properties``. Measured again on the
capture benchmark's 1M rows of 1000-row statements (capbulk, pinned, load 11-14, two runs each):
4.4 bytes stored per byte with lz4 (211 MB on the broker), 5.7 with zstd level 1 (161 MB), 4.2 with
snappy (221 MB), 1 with none (920 MB), at capture CPU within the noise of each other (5.6-6.5
us/row); lz4 stays, as it is also the cheapest for ``cdc sink`` to decompress. ``linger.ms`` 1 cost
more CPU (6.1-6.7 us/row); 20 ms with 4 MB batches gave nothing measurable (commits every 25 ms
bound the batches anyway).
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.cimpl import NewTopic

from cdc.config.models import KafkaStreamConfig
from cdc.core.errors import (
    HeadwaterError,
    MessageTooLarge,
    ProducerFenced,
    StreamAccessDenied,
    StreamUnavailable,
)
from cdc.stream.topics import MAX_MESSAGE_BYTES, TopicSpec, topic_max_message_bytes

__all__ = [
    "QUEUE_MAX_KBYTES",
    "QUEUE_MAX_MESSAGES",
    "admin_client",
    "base_config",
    "consume_ready",
    "consumer_config",
    "ensure_topics",
    "is_fenced",
    "producer_config",
    "stream_error",
    "transactional_id",
]

log = logging.getLogger(__name__)

QUEUE_MAX_MESSAGES = 100_000
# 16 MiB of messages waiting locally (not yet acknowledged by the broker), at most. What the queue
# holds is the capture's memory above its floor (~120 MiB): caught up or behind it holds a few MiB
# (a 1M-row transaction sampled every 10 ms: at most ~7,400 messages of ~825 bytes), but while the
# broker is slow the capture keeps producing until the bound. With 64 MiB a 1M-row transaction
# peaked at 205 MiB against 120 in one full benchmark run; benchmarks/capture_txn_memory.py, 11
# alternated rounds at load 4-8: worst peaks 167 and 180 MiB with 64, 143 and 149 with 16 (which
# the capture reached 7-13 times in some runs); CPU per row, paired medians 0.96 (1M-row
# transaction) and 1.12 / 1.03 (1000-row transactions), rows/s 1.06 / 0.89 / 1.01: within the noise.
QUEUE_MAX_KBYTES = 16 * 1024

_FENCED_CODES = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
}
_DENIED_CODES = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
}


def transactional_id(pipeline: str) -> str:
    return f"headwater-{pipeline}"


# librdkafka's own log lines go through Python logging (formatted and filtered like ours) instead of
# raw "%3|...|FATAL|..." lines on stderr
LIBRDKAFKA_LOG = logging.getLogger("cdc.stream.librdkafka")


def base_config(config: KafkaStreamConfig) -> dict[str, Any]:
    return {"bootstrap.servers": config.bootstrap_servers, "logger": LIBRDKAFKA_LOG, **config.properties}


def producer_config(config: KafkaStreamConfig, pipeline: str) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "logger": LIBRDKAFKA_LOG,
        "transactional.id": transactional_id(pipeline),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": QUEUE_MAX_MESSAGES,
        "queue.buffering.max.kbytes": QUEUE_MAX_KBYTES,
        "transaction.timeout.ms": config.transaction_timeout_ms,
        # a delivery stuck this long fails the transaction (abort, resume) rather than hang until
        # the transaction itself times out; must not exceed transaction.timeout.ms
        "message.timeout.ms": min(config.transaction_timeout_ms, 120_000),
        "socket.timeout.ms": config.request_timeout_ms,
        # a request holds at least one whole message: room for the largest change let through
        "message.max.bytes": topic_max_message_bytes(config.max_message_bytes),
        # The next transaction's first AddPartitionsToTxn is refused with CONCURRENT_TRANSACTIONS
        # while the broker still writes the previous commit's markers (about one commit in 400 at
        # 10k changes/s); librdkafka resends after this backoff, 100 ms by default (the Java client
        # retries that case after 20 ms), and those commits made the end-to-end p99. Later retries
        # still back off exponentially up to retry.backoff.max.ms (1 s). benchmarks/results/latest.md
        # ("e2etail"): commit p99 25.8 -> 10.4 ms, max 93.6 -> 31.4 ms.
        "retry.backoff.ms": 10,
    }
    # Operator passthrough wins (security.protocol, sasl.*, a different compression...), except the
    # settings exactly-once depends on.
    settings.update(config.properties)
    settings["transactional.id"] = transactional_id(pipeline)
    settings["enable.idempotence"] = True
    settings["acks"] = "all"
    return settings


def consumer_config(config: KafkaStreamConfig, group: str) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "logger": LIBRDKAFKA_LOG,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }
    # A fetch returns at least one whole record batch whatever the limits, but librdkafka refuses
    # a response over receive.message.max.bytes: both leave room for the largest change.
    fetch_max = max(_FETCH_MAX_BYTES, topic_max_message_bytes(config.max_message_bytes))
    settings["fetch.max.bytes"] = fetch_max
    settings["receive.message.max.bytes"] = max(_RECEIVE_MAX_BYTES, fetch_max + 1024 * 1024)
    settings.update(config.properties)
    settings["isolation.level"] = "read_committed"
    return settings


def consume_ready(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """Up to ``max_messages``: what is queued now, else the first to arrive within ``timeout_s`` and
    what came with it. ``consume(n, timeout)`` alone waits out its whole timeout unless n messages
    come (0.5 s before every `cdc sink` run's first batch, from the schema topic's few records)."""
    messages = consumer.consume(max_messages, timeout=0)
    if not messages:
        messages = consumer.consume(1, timeout=timeout_s)
        if messages and max_messages > 1:
            messages += consumer.consume(max_messages - 1, timeout=0)
    return messages


_FETCH_MAX_BYTES = 52_428_800  # librdkafka's defaults
_RECEIVE_MAX_BYTES = 100_000_000


def admin_client(config: KafkaStreamConfig) -> AdminClient:
    return AdminClient(base_config(config))


def is_fenced(error: KafkaError) -> bool:
    if error.code() in _FENCED_CODES:
        return True
    # A fatal error is reported as _FATAL with the underlying cause in the text.
    text = error.str().lower()
    return error.code() == KafkaError._FATAL and ("fenced" in text or "epoch" in text)


def stream_error(error: KafkaError, pipeline: str, doing: str) -> HeadwaterError:
    """The Headwater error for a librdkafka error met while ``doing`` something."""
    if is_fenced(error):
        return ProducerFenced(pipeline, error.str())
    if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        # The writer refuses changes over stream.max_message_bytes before producing them, so this
        # is a topic (or broker) limit below it: a retry would fail the same way.
        return MessageTooLarge(
            f"{doing}: {error.str()} (pipeline {pipeline!r}): a table topic, or the broker, accepts "
            "less than stream.max_message_bytes; raise the topic's max.message.bytes (cdc run does so "
            "when it may alter topic configs) or the broker's message.max.bytes"
        )
    if error.code() in _DENIED_CODES:
        return StreamAccessDenied(f"{doing}: {error.str()} (pipeline {pipeline!r})")
    return StreamUnavailable(f"{doing}: {error.str()} (pipeline {pipeline!r})")


def _kafka_error(exc: KafkaException) -> KafkaError:
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, KafkaError):
        return arg
    return KafkaError(KafkaError._FAIL, str(exc))


def ensure_topics(
    admin: AdminClient, specs: tuple[TopicSpec, ...], config: KafkaStreamConfig, pipeline: str
) -> dict[str, int]:
    """Create the topics of ``specs`` that are missing; return every spec's topic -> partition count.

    Of an existing topic, the partition count is read, not changed; its max.message.bytes is raised
    to the spec's when lower (a topic created before stream.max_message_bytes, or with a smaller
    one). Raises StreamUnavailable naming the bootstrap servers when there is no metadata in time.
    """
    timeout = config.request_timeout_ms / 1000
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise StreamUnavailable(
            f"no Kafka metadata from {config.bootstrap_servers} within {timeout:g}s: {exc}"
        ) from exc
    partitions: dict[str, int] = {}
    missing: list[TopicSpec] = []
    existing: list[TopicSpec] = []
    for spec in specs:
        topic = metadata.topics.get(spec.name)
        if topic is not None and topic.error is None and topic.partitions:
            partitions[spec.name] = len(topic.partitions)
            existing.append(spec)
        else:
            missing.append(spec)
    _raise_message_limits(admin, [s for s in existing if dict(s.config).get(MAX_MESSAGE_BYTES)], timeout)
    if not missing:
        return partitions
    new_topics = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=s.replication_factor,
            config=dict(s.config),
        )
        for s in missing
    ]
    futures = admin.create_topics(new_topics, operation_timeout=timeout, request_timeout=timeout)
    for spec in missing:
        try:
            futures[spec.name].result(timeout=timeout)
        except TimeoutError as exc:
            raise StreamUnavailable(
                f"creating topic {spec.name} on {config.bootstrap_servers} timed out after {timeout:g}s"
            ) from exc
        except KafkaException as exc:
            error = _kafka_error(exc)
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise stream_error(error, pipeline, f"creating topic {spec.name}") from exc
            partitions[spec.name] = _existing_partitions(admin, spec, timeout)
            continue
        partitions[spec.name] = spec.partitions
    return partitions


def _existing_partitions(admin: AdminClient, spec: TopicSpec, timeout: float) -> int:
    topic = admin.list_topics(topic=spec.name, timeout=timeout).topics.get(spec.name)
    return len(topic.partitions) if topic is not None and topic.partitions else spec.partitions


def _raise_message_limits(admin: AdminClient, specs: list[TopicSpec], timeout: float) -> None:
    """Raise max.message.bytes of existing topics that are below their spec's.

    A topic that cannot be altered (no ALTER_CONFIGS permission) is left as it is, with a warning
    saying what to run; a change too large for it then stops capture with MessageTooLarge naming
    the topic's limit, instead of being retried.
    """
    if not specs:
        return
    resources = {s.name: ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs}
    try:
        described = admin.describe_configs(list(resources.values()), request_timeout=timeout)
    except KafkaException as exc:
        log.warning("could not read the configs of %d topics: %s", len(specs), exc)
        return
    for spec in specs:
        wanted = int(dict(spec.config)[MAX_MESSAGE_BYTES])
        resource = resources[spec.name]
        current: int | None = None
        try:
            entry = described[resource].result(timeout=timeout).get(MAX_MESSAGE_BYTES)
            current = int(entry.value) if entry is not None and entry.value is not None else 0
            if current >= wanted:
                continue
            change = ConfigResource(
                ConfigResource.Type.TOPIC,
                spec.name,
                incremental_configs=[
                    ConfigEntry(MAX_MESSAGE_BYTES, str(wanted), incremental_operation=AlterConfigOpType.SET)
                ],
            )
            admin.incremental_alter_configs([change], request_timeout=timeout)[change].result(timeout=timeout)
            log.info("topic %s: max.message.bytes raised from %d to %d", spec.name, current, wanted)
        except (KafkaException, TimeoutError) as exc:
            log.warning(
                "topic %s accepts messages of at most %s bytes and could not be altered (%s): rows "
                "larger than that will stop capture; run `kafka-configs.sh --alter --entity-type topics "
                "--entity-name %s --add-config max.message.bytes=%d`",
                spec.name,
                "?" if current is None else current,
                exc,
                spec.name,
                wanted,
            )
