"""A writer whose start() failed (the broker was down while the daemon started) can be aborted: the
daemon's failure path calls abort() and must get back to its retry, not crash with exit 2."""

from __future__ import annotations

import pytest

from cdc.config.models import KafkaStreamConfig
from cdc.core.errors import StreamUnavailable
from cdc.stream import KafkaStreamWriter
from cdc.stream.topics import TopicSpec


class DownAdmin:
    def ensure(self, specs: tuple[TopicSpec, ...]) -> dict[str, int]:
        raise StreamUnavailable("no Kafka metadata from 127.0.0.1:1 within 30s")


def test_abort_after_a_failed_start_is_a_no_op() -> None:
    writer = KafkaStreamWriter(
        KafkaStreamConfig(bootstrap_servers="127.0.0.1:1"), "speedcapabort", 5299, topic_admin=DownAdmin()
    )
    with pytest.raises(StreamUnavailable):
        writer.start()
    writer.abort()  # was: RuntimeError("writer not started"), which the supervisor treats as fatal
    writer.close()
