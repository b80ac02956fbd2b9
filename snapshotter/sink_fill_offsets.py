"""Kafka mode of `cdc bootstrap --sink`: the end offsets of the tables' topics, taken before the view."""

from __future__ import annotations

from collections.abc import Sequence

from cdc.config.models import KafkaStreamConfig
from cdc.core.schemas import TableRef
from cdc.stream.topics import TopicNames

__all__ = ["end_offsets", "table_topic"]


def table_topic(pipeline: str, ref: TableRef) -> str:
    return TopicNames(pipeline).table(ref)


def end_offsets(stream: KafkaStreamConfig, pipeline: str, tables: Sequence[TableRef]) -> dict[str, int]:
    """``"topic:partition" -> end offset`` of each table's topic as it stands now (a table whose topic
    does not exist yet has none: `cdc sink` reads it from its start once `cdc run` creates it)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from cdc.core.errors import StreamUnavailable
    from cdc.stream.kafka_clients import consumer_config
    from cdc.stream.kafka_reader import partition_name

    timeout = stream.request_timeout_ms / 1000
    consumer = Consumer(consumer_config(stream, f"headwater-{pipeline}-sink-fill"))
    try:
        try:
            topics = consumer.list_topics(timeout=timeout).topics
        except KafkaException as exc:
            raise StreamUnavailable(f"no metadata from {stream.bootstrap_servers}: {exc}") from exc
        out: dict[str, int] = {}
        for ref in tables:
            name = table_topic(pipeline, ref)
            meta = topics.get(name)
            if meta is None or meta.error is not None:
                continue
            for p in sorted(meta.partitions):
                try:
                    # read_committed: the last stable offset; a transaction still open below the
                    # high watermark holds binlog changes already committed, hence in the view
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(name, p), timeout=timeout, cached=False
                    )
                except KafkaException as exc:
                    raise StreamUnavailable(
                        f"no end offset of {partition_name(name, p)} within {timeout:g}s: {exc}"
                    ) from exc
                out[partition_name(name, p)] = int(high)
        return out
    finally:
        consumer.close()
