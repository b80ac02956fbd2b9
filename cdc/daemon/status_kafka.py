"""`cdc status` in Kafka mode: how many messages each sink's stored offsets are behind the topics.

One consumer (no group membership: it only asks for metadata and watermarks), one watermark request
per partition of the captured tables' topics. A partition a sink holds no offset for counts from its
log start, as a new `cdc sink` would read it. Kafka's transaction markers take an offset each, so a
caught-up partition may show one message behind; the byte and second lag from the sink's position
are the exact measures, this one says where in Kafka a slow sink stands.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from confluent_kafka import Consumer, KafkaException, TopicPartition

from cdc.config.models import KafkaStreamConfig
from cdc.core.errors import StreamUnavailable
from cdc.core.schemas import TableRef
from cdc.stream.kafka_clients import consumer_config
from cdc.stream.topics import TopicNames


def offsets_lag(
    config: KafkaStreamConfig, pipeline: str, tables: Sequence[str], held: Sequence[Mapping[str, int]]
) -> list[int]:
    """For each map of stored offsets ("topic:partition" -> next offset), the messages behind."""
    names = TopicNames(pipeline)
    topics = [names.table(TableRef(*table.split(".", 1))) for table in tables]
    timeout = config.request_timeout_ms / 1000
    consumer = Consumer(consumer_config(config, f"headwater-{pipeline}-status-{uuid.uuid4().hex}"))
    marks: dict[str, tuple[int, int]] = {}
    try:
        metadata = consumer.list_topics(timeout=timeout)
        for topic in topics:
            described = metadata.topics.get(topic)
            if described is None or described.error is not None:
                continue  # not created yet: nothing captured for that table
            for partition in described.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
                marks[f"{topic}:{partition}"] = (low, high)
    except KafkaException as exc:
        raise StreamUnavailable(
            f"no watermarks for {pipeline}'s topics from {config.bootstrap_servers}: {exc}"
        ) from exc
    finally:
        consumer.close()
    return [
        sum(max(0, high - max(offsets.get(key, low), low)) for key, (low, high) in marks.items())
        for offsets in held
    ]
