"""The capture producer's settings: what exactly-once needs always, the rest overridable."""

from __future__ import annotations

from cdc.config.models import KafkaStreamConfig
from cdc.stream.kafka_clients import producer_config


def stream(**properties: object) -> KafkaStreamConfig:
    return KafkaStreamConfig.model_validate({"bootstrap_servers": "127.0.0.1:9092", "properties": properties})


def test_a_refused_transaction_start_is_retried_soon() -> None:
    # librdkafka's default (100 ms) held one commit in ~400 for 100-300 ms: the end-to-end p99
    assert producer_config(stream(), "p")["retry.backoff.ms"] == 10


def test_an_operator_setting_wins_but_not_over_exactly_once() -> None:
    settings = producer_config(
        stream(**{"retry.backoff.ms": "250", "enable.idempotence": "false", "acks": "1"}), "p"
    )
    assert settings["retry.backoff.ms"] == "250"
    assert settings["enable.idempotence"] is True
    assert settings["acks"] == "all"
