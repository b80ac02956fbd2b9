"""The table versions a pipeline announced on its schema topic, for `cdc sink`'s reader.

The writer fills the schema topic in the same Kafka transaction as the first event of each table
version, so a version the reader does not know yet is on the topic: it is read again from its start
then (a few times per run), never per message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from cdc.config.models import KafkaStreamConfig
from cdc.core.errors import SourceProtocolError, StreamUnavailable
from cdc.core.events import RowImage
from cdc.core.schemas import TableRef, TableSchema
from cdc.stream.json_decode import row_decoder, table_schema_from_record
from cdc.stream.kafka_clients import consume_ready, consumer_config
from cdc.stream.topics import TopicNames

__all__ = ["TableVersions", "Version"]

# how long the broker holds this reader's fetch when the topic has nothing more (see _reload)
_FETCH_WAIT_MS = 10

Version = tuple[TableSchema, Callable[[Mapping[str, Any] | None], RowImage | None], tuple[int, ...]]


class TableVersions:
    """Table versions announced on the schema topic, read again whenever an unknown one shows up."""

    def __init__(self, config: KafkaStreamConfig, pipeline: str) -> None:
        self._config = config
        self._topic = TopicNames(pipeline).schema
        self._pipeline = pipeline
        # version -> (schema, row decoder, primary-key column indexes), built once per version
        self.known: dict[str, Version] = {}
        self.read_to = 0  # the schema topic's end when it was last read

    def tables(self, high: int) -> set[TableRef]:
        """The tables of every version announced before offset ``high`` (the topic's end now); the
        topic is read again only if it grew since it was last read."""
        if high > self.read_to:
            self._reload()
        return {version[0].ref for version in self.known.values()}

    def get(self, version: str) -> Version:
        found = self.known.get(version)
        if found is None:
            self._reload()
            found = self.known.get(version)
            if found is None:
                raise SourceProtocolError(
                    f"schema version {version} is not on {self._topic}: the topic was deleted or truncated"
                )
        return found

    def add(self, schema: TableSchema) -> None:
        """A version read from the topic elsewhere (the reader's follower: schema_follow.py)."""
        if schema.version not in self.known:
            self.known[schema.version] = (schema, row_decoder(schema), schema.key_indexes())

    def _reload(self) -> None:
        group = f"headwater-{self._pipeline}-schema-{uuid.uuid4().hex}"
        settings = consumer_config(self._config, group)
        # The topic's last record is followed by its transaction's marker, which takes an offset:
        # the position passes it only with the end-of-partition mark, which librdkafka gives when a
        # fetch comes back empty, and the broker holds an empty fetch this long (default 500 ms).
        # This consumer only reads the topic to its end once.
        settings.setdefault("fetch.wait.max.ms", _FETCH_WAIT_MS)
        consumer = Consumer(settings)
        timeout = self._config.request_timeout_ms / 1000
        try:
            tp = TopicPartition(self._topic, 0)
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            except KafkaException as exc:
                raise StreamUnavailable(f"cannot read {self._topic}: {exc}") from exc
            consumer.assign([TopicPartition(self._topic, 0, low)])
            deadline = time.monotonic() + timeout
            position = low
            while position < high and (left := deadline - time.monotonic()) > 0:
                for msg in consume_ready(consumer, 1000, min(left, 0.5)):
                    if msg.error():
                        continue
                    position = (msg.offset() or 0) + 1
                    value = msg.value()
                    if not value:
                        continue
                    record = orjson.loads(value)
                    if record.get("type") == "table_schema":
                        self.add(table_schema_from_record(record))
                if position < high:
                    position = max(position, consumer.position([tp])[0].offset)
            if position < high:
                raise StreamUnavailable(f"could not read {self._topic} to its end within {timeout:g}s")
            self.read_to = high
        finally:
            consumer.close()
