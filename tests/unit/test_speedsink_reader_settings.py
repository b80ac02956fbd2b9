"""`cdc sink`'s consumer holds a bounded prefetch (most of its peak RSS was librdkafka's queue, 64 MiB
and 100k messages per partition by default); a librdkafka property set in the config still wins."""

from cdc.config.models import KafkaStreamConfig
from cdc.stream.kafka_reader import reader_settings


def test_the_prefetch_is_bounded() -> None:
    settings = reader_settings(KafkaStreamConfig(bootstrap_servers="127.0.0.1:1"), "g")
    assert settings["queued.max.messages.kbytes"] <= 16_384
    assert settings["queued.min.messages"] <= 20_000
    assert settings["fetch.max.bytes"] <= 8_388_608
    # a change up to max_message_bytes is still accepted in a fetch response
    assert settings["receive.message.max.bytes"] > 16_777_216
    assert settings["isolation.level"] == "read_committed"


def test_a_configured_property_wins() -> None:
    config = KafkaStreamConfig(
        bootstrap_servers="127.0.0.1:1", properties={"queued.max.messages.kbytes": "65536"}
    )
    settings = reader_settings(config, "g")
    assert settings["queued.max.messages.kbytes"] == "65536"
    assert settings["queued.min.messages"] <= 20_000
