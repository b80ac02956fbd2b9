"""TopicAdmin: creates a pipeline's missing topics and says how many partitions each has."""

from __future__ import annotations

from typing import Protocol

from cdc.config.models import KafkaStreamConfig
from cdc.stream.kafka_clients import admin_client, ensure_topics
from cdc.stream.topics import TopicSpec

__all__ = ["KafkaTopicAdmin", "TopicAdmin"]


class TopicAdmin(Protocol):
    """Creates missing topics; returns each topic's partition count."""

    def ensure(self, specs: tuple[TopicSpec, ...]) -> dict[str, int]: ...


class KafkaTopicAdmin:
    """TopicAdmin over librdkafka's AdminClient."""

    def __init__(self, config: KafkaStreamConfig, pipeline: str) -> None:
        self._config = config
        self._pipeline = pipeline
        self._admin = admin_client(config)

    def ensure(self, specs: tuple[TopicSpec, ...]) -> dict[str, int]:
        return ensure_topics(self._admin, specs, self._config, self._pipeline)
