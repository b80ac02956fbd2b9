"""`cdc sink`'s bounded prefetch does not stall the consumer: librdkafka postpones a partition's next
fetch by ``fetch.queue.backoff.ms`` (1000 ms by default) once the queue is at its bounds, and the sink
waited out that second after emptying the queue (a plain consumer with the bounds read 30-35k
messages/s, 217-229k with 10 ms; see kafka_reader._PREFETCH)."""

from cdc.config.models import KafkaStreamConfig
from cdc.stream.kafka_reader import reader_settings


def test_a_full_prefetch_queue_is_fetched_again_promptly() -> None:
    settings = reader_settings(KafkaStreamConfig(bootstrap_servers="127.0.0.1:1"), "g")
    assert int(settings.get("fetch.queue.backoff.ms", 1000)) <= 50


def test_a_configured_backoff_wins() -> None:
    config = KafkaStreamConfig(bootstrap_servers="127.0.0.1:1", properties={"fetch.queue.backoff.ms": "500"})
    assert reader_settings(config, "g")["fetch.queue.backoff.ms"] == "500"


def test_a_run_into_sinks_that_ask_for_it_prefetches_more_and_a_configured_bound_still_wins() -> None:
    """16 MiB queued for the Iceberg history (kafka_reader._LARGE_PREFETCH), 2 MiB otherwise."""
    config = KafkaStreamConfig(bootstrap_servers="127.0.0.1:1")
    assert reader_settings(config, "g")["queued.max.messages.kbytes"] == 2_048
    assert reader_settings(config, "g", large_prefetch=True)["queued.max.messages.kbytes"] == 16_384
    assert reader_settings(config, "g", large_prefetch=True)["fetch.queue.backoff.ms"] == 10
    bounded = KafkaStreamConfig(
        bootstrap_servers="127.0.0.1:1", properties={"queued.max.messages.kbytes": "4096"}
    )
    assert reader_settings(bounded, "g", large_prefetch=True)["queued.max.messages.kbytes"] == "4096"
