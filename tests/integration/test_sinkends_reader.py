"""The fixed waits at the ends of `cdc sink --until-caught-up`, against the real broker: the schema
topic is read without waiting out a consume() timeout (0.5 s before the first batch of every run),
the end of a partition is marked promptly after its last message (librdkafka marks it only when the
next fetch comes back empty, which the broker parks fetch.wait.max.ms: 500 ms by default), and the
offsets of the caught-up check are not asked of the consuming consumer (its requests wait behind
that parked fetch: about 0.5 s per call)."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from cdc.config.models import KafkaStreamConfig
from cdc.devstack.connections import StackConnections
from cdc.stream import KafkaStreamWriter
from cdc.stream.kafka_clients import consumer_config
from cdc.stream.kafka_reader import KafkaChangeReader, Watermarks
from cdc.stream.kafka_schemas import TableVersions
from tests.integration.test_speedsink_reader import SCHEMA, write_transaction


def _writer(stack: StackConnections, partitions: int) -> tuple[KafkaStreamConfig, str, KafkaStreamWriter]:
    pipeline = f"sinkends{uuid.uuid4().hex[:8]}"
    config = KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers, partitions=partitions)
    return config, pipeline, KafkaStreamWriter(config, pipeline, random.randrange(7100, 7200))


def test_the_schema_topic_is_read_without_waiting_out_a_timeout(stack: StackConnections) -> None:
    config, pipeline, writer = _writer(stack, 1)
    try:
        writer.start()
        write_transaction(writer, 1, 2)  # the table's version is announced on the schema topic
        took = []
        for _ in range(3):
            versions = TableVersions(config, pipeline)
            started = time.monotonic()
            schema = versions.get(SCHEMA.version)[0]
            took.append(time.monotonic() - started)
            assert schema == SCHEMA
        # before: each read waited out consume(1000, timeout=0.5) for a batch of 1,000 records
        assert min(took) < 0.3, took
    finally:
        writer.close()


class _Recording:
    """The reader's consumer, with every offset or metadata request noted."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.asked: list[str] = []

    def get_watermark_offsets(self, *args: Any, **kwargs: Any) -> Any:
        self.asked.append("get_watermark_offsets")
        return self.consumer.get_watermark_offsets(*args, **kwargs)

    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        self.asked.append("list_topics")
        return self.consumer.list_topics(*args, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self.consumer, name)


def test_a_caught_up_reader_knows_it_promptly(stack: StackConnections) -> None:
    config, pipeline, writer = _writer(stack, 1)
    reader = KafkaChangeReader(config, pipeline, lambda parts: {})
    partition = f"{pipeline}.speedsink.items:0"
    try:
        writer.start()
        write_transaction(writer, 1, 3)
        reader.start()
        got, last = 0, 0.0
        deadline = time.monotonic() + 60
        while not (got == 3 and reader.at_end) and time.monotonic() < deadline:
            chunks = reader.poll_chunks(10_000, 0.02)
            if chunks:
                got += sum(len(chunk) for chunk in chunks)
                last = time.monotonic()
        assert got == 3 and reader.at_end == {partition}
        # before: 0.5 s, librdkafka's fetch.wait.max.ms, after the last message
        assert time.monotonic() - last < 0.3

        recording = _Recording(reader._consumer)  # type: ignore[arg-type]
        reader._consumer = recording  # type: ignore[assignment]
        probe = Consumer(consumer_config(config, f"sinkends-{uuid.uuid4().hex}"))
        try:
            low, high = probe.get_watermark_offsets(TopicPartition(f"{pipeline}.speedsink.items", 0), 10)
        finally:
            probe.close()
        assert high > 3  # three changes and the transaction's marker
        assert reader.watermarks([partition]) == {partition: Watermarks(low, high)}
        assert reader.table_partitions() == {partition}
        # it waited about 0.5 s for each answer behind the consumer's parked fetch
        assert not recording.asked, "the consuming consumer was asked for offsets or metadata"
    finally:
        reader.close()
        writer.close()
