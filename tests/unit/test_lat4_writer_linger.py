"""`cdc run`'s producer lingers TRANSACTION_LINGER_MS (its commits send what waits), unless the
operator's stream.properties sets linger.ms or its alias; exactly-once settings stay."""

from __future__ import annotations

from cdc.config.models import KafkaStreamConfig
from cdc.stream.kafka_writer import TRANSACTION_LINGER_MS, writer_producer_config


def test_the_writer_lingers_until_its_commit_by_default() -> None:
    settings = writer_producer_config(KafkaStreamConfig(bootstrap_servers="127.0.0.1:9092"), "p")
    assert settings["linger.ms"] == TRANSACTION_LINGER_MS == 100
    assert settings["enable.idempotence"] is True and settings["acks"] == "all"
    assert settings["transactional.id"].endswith("p")


def test_the_operators_linger_wins_under_either_name() -> None:
    for key in ("linger.ms", "queue.buffering.max.ms"):
        config = KafkaStreamConfig(bootstrap_servers="127.0.0.1:9092", properties={key: "5"})
        settings = writer_producer_config(config, "p")
        assert settings[key] == "5"
        assert settings.get("linger.ms") != TRANSACTION_LINGER_MS
