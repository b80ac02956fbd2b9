"""The checkpoints topic's partition joins each Kafka transaction when it begins, not at commit.

KafkaStreamWriter.begin() writes a tombstone under ``<pipeline>:open`` to the checkpoints partition,
so librdkafka registers that partition with the transaction (and the broker verifies its first
batch) together with the first changes' partition, off the commit's path. read_checkpoint reads
only the pipeline's own key, so the tombstones change nothing it returns.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.devstack.connections import StackConnections
from cdc.stream import KafkaStreamWriter, read_checkpoint
from cdc.stream.kafka_writer import OPENING_KEY_SUFFIX
from tests.support.shop_items import SHOP_ITEMS

SCHEMA = SHOP_ITEMS


@pytest.fixture
def writer(stack: StackConnections) -> Iterator[KafkaStreamWriter]:
    pipeline = f"it{uuid.uuid4().hex[:10]}"
    made = KafkaStreamWriter(
        KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers), pipeline, 5401
    )
    yield made
    made.close()


def _transaction(writer: KafkaStreamWriter, seq: int, rows: int) -> TransactionEnd:
    start = Position(Gtid(0, 1, seq), "mysql-bin.000001", 1000 * seq)
    for i in range(rows):
        row = (seq * 1000 + i, f"n{i}")
        writer.write(ChangeEvent(Op.CREATE, SCHEMA, (row[0],), None, row, start.at_row(i), 1, f"0-1-{seq}"))
    end = TransactionEnd(f"0-1-{seq}", start.at_row(rows - 1), rows, 1)
    writer.write(end)
    return end


def _records(
    writer: KafkaStreamWriter, isolation: str, until: int, wait_s: float
) -> list[tuple[bytes, bool]]:
    """(key, has a value) of the checkpoints partition's records, read with ``isolation`` until
    ``until`` of them were seen or ``wait_s`` passed."""
    consumer = Consumer(
        {
            "bootstrap.servers": writer.config.bootstrap_servers,
            "group.id": uuid.uuid4().hex,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    out: list[tuple[bytes, bool]] = []
    deadline = time.monotonic() + wait_s
    try:
        consumer.assign([TopicPartition(writer.topics.checkpoints, 0, -2)])
        while len(out) < until and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                continue
            out.append((message.key() or b"", message.value() is not None))
        return out
    finally:
        consumer.close()


def test_the_checkpoint_partition_is_in_the_transaction_before_the_commit(writer: KafkaStreamWriter) -> None:
    opening = (f"{writer.pipeline}{OPENING_KEY_SUFFIX}".encode(), False)
    assert writer.start() is None
    writer.begin()
    first = _transaction(writer, 1, 5)
    # before commit() writes the checkpoint, the transaction already holds a record on its partition
    assert _records(writer, "read_uncommitted", 1, 10) == [opening]
    writer.commit(first.restart)
    writer.begin()
    _transaction(writer, 2, 3)
    writer.abort()
    # committed: the opening tombstone, then the checkpoint; the aborted transaction left nothing
    assert _records(writer, "read_committed", 4, 3) == [opening, (writer.pipeline.encode(), True)]
    checkpoint = read_checkpoint(writer.config, writer.pipeline)
    assert checkpoint is not None
    assert (checkpoint.restart, checkpoint.events) == (first.restart, 5)
