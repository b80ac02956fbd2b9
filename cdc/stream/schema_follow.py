"""The pipeline's schema topic followed as it grows, for `cdc sink`'s subscription by topic name.

`cdc sink` subscribes to the table topics the schema topic announces, by name, and subscribes again
when a new one is announced. Subscribed by pattern, librdkafka asked the broker for the metadata of
*every* topic on each ``topic.metadata.refresh.interval.ms`` (5 s): with 2,800 topics on the broker,
~30 ms of the broker's CPU and ~27 ms of the sink's per refresh (benchmarks/results, hop2 section 4),
growing with the user's broker; and a table whose topic was created after the subscription was
assigned only at the next refresh, up to 5 s later. By name, the refresh covers the pipeline's
topics only, and a new table is subscribed as soon as its announcement is committed.

The writer announces a table version on the schema topic in the same Kafka transaction as the
version's first change, so a table topic is subscribed before any change of it can be read
(read_committed): nothing is missed, as the sinks' offsets say where each partition starts anyway.

A consumer of its own, assigned to the topic's one partition (no group), read without waiting on
each poll of the reader: its fetch is parked by the broker until the topic grows (a read_committed
fetch returns when the last stable offset moves), so it costs one small request per
``fetch.wait.max.ms`` while nothing happens.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from cdc.config.models import KafkaStreamConfig
from cdc.core.errors import StreamUnavailable
from cdc.stream.json_decode import table_schema_from_record
from cdc.stream.kafka_clients import consumer_config
from cdc.stream.kafka_schemas import TableVersions
from cdc.stream.topics import TopicNames

__all__ = ["SchemaFollower", "follower_settings"]

log = logging.getLogger(__name__)

# records taken per poll (the topic holds one per table version: a few per table)
_BATCH = 500


def follower_settings(config: KafkaStreamConfig, pipeline: str) -> dict[str, Any]:
    """The follower's librdkafka settings (a configured ``stream.properties`` entry wins, as for
    every client, except the isolation level)."""
    settings = consumer_config(config, f"headwater-{pipeline}-schema-{uuid.uuid4().hex}")
    settings["enable.partition.eof"] = False  # nothing waits for its end
    # a few KiB per table version: no need for librdkafka's 64 MiB of prefetch
    settings.setdefault("queued.max.messages.kbytes", 1024)
    # Until the schema topic exists (a new pipeline whose `cdc run` has not started), librdkafka
    # asks for its metadata again this often; once it exists, only the periodic refresh of this one
    # topic remains (librdkafka's default interval, 5 minutes, unless configured).
    settings.setdefault("topic.metadata.refresh.fast.interval.ms", 250)
    return settings


class SchemaFollower:
    """The table topics announced on the pipeline's schema topic so far (``topics``); the versions
    read go into ``versions`` as well, so that the reader does not read the topic again for them."""

    def __init__(self, config: KafkaStreamConfig, pipeline: str, versions: TableVersions) -> None:
        self._config = config
        self._pipeline = pipeline
        self._names = TopicNames(pipeline)
        self._versions = versions
        self._consumer: Consumer | None = None
        self.topics: set[str] = set()

    def start(self) -> None:
        consumer = Consumer(follower_settings(self._config, self._pipeline))
        consumer.assign([TopicPartition(self._names.schema, 0, OFFSET_BEGINNING)])
        self._consumer = consumer

    def poll(self) -> bool:
        """Take what the topic delivered since the last poll, without waiting; True when it
        announced a table topic not in ``topics`` before."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        grew = False
        while messages := consumer.consume(_BATCH, timeout=0):
            for msg in messages:
                error = msg.error()
                if error is not None:
                    self._on_error(error)
                    continue
                value = msg.value()
                if not value:
                    continue
                record = orjson.loads(value)
                if record.get("type") != "table_schema":
                    continue
                schema = table_schema_from_record(record)
                self._versions.add(schema)
                topic = self._names.table(schema.ref)
                if topic not in self.topics:
                    self.topics.add(topic)
                    grew = True
            if len(messages) < _BATCH:
                break
        return grew

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise StreamUnavailable(f"reading {self._names.schema}: {error.str()}")
        # The topic does not exist yet (a new pipeline), or a broker is briefly away: librdkafka
        # keeps asking, and the topic is read once it is there.
        log.debug("reading %s: %s", self._names.schema, error.str())

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
