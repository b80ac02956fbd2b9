"""The capture's local producer queue is bounded at 16 MiB: what a broker stall lets it grow by.

With 64 MiB, a 1M-row source transaction peaked at 205 MiB against 120 in one full benchmark run
(kafka_clients.QUEUE_MAX_KBYTES explains the figures); the bound is what caps that growth.
"""

from __future__ import annotations

from cdc.config.models import KafkaStreamConfig
from cdc.stream.kafka_clients import QUEUE_MAX_KBYTES, QUEUE_MAX_MESSAGES, producer_config


def test_the_local_queue_holds_at_most_16_mib() -> None:
    settings = producer_config(KafkaStreamConfig(bootstrap_servers="127.0.0.1:9092"), "p")
    assert settings["queue.buffering.max.kbytes"] == QUEUE_MAX_KBYTES == 16 * 1024
    assert settings["queue.buffering.max.messages"] == QUEUE_MAX_MESSAGES


def test_an_operator_may_still_set_the_bound() -> None:
    config = KafkaStreamConfig(
        bootstrap_servers="127.0.0.1:9092", properties={"queue.buffering.max.kbytes": "65536"}
    )
    assert producer_config(config, "p")["queue.buffering.max.kbytes"] == "65536"
