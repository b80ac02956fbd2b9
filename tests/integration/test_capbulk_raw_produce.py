"""The capture writer's runs go straight into librdkafka (cdc.stream.raw_produce) with no delivery
callback of their own: a run the broker refuses must still fail the Kafka transaction's commit
(librdkafka counts the failed deliveries of the transaction), so nothing of it is committed and the
checkpoint stays where it was. Against the dev stack's real broker."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from cdc.core.errors import StreamUnavailable
from cdc.core.events import ChangeEvent, Op, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.devstack.connections import StackConnections
from cdc.stream import KafkaStreamWriter, read_checkpoint
from cdc.stream.raw_produce import PackedMessages
from tests.integration.test_stream_kafka import SCHEMA, config, read_committed


@pytest.fixture
def writer(stack: StackConnections) -> Iterator[KafkaStreamWriter]:
    w = KafkaStreamWriter(config(stack.kafka.bootstrap_servers), f"capbulk{uuid.uuid4().hex[:8]}", 8400)
    yield w
    w.close()


def source_txn(seq: int, rows: int, text: str) -> list[ChangeEvent | TransactionEnd]:
    start = Position(Gtid(0, 1, seq), "mysql-bin.000001", 1000 * seq)
    out: list[ChangeEvent | TransactionEnd] = [
        ChangeEvent(
            Op.CREATE, SCHEMA, (seq * 100 + i,), None, (seq * 100 + i, text), start.at_row(i), 1, f"0-1-{seq}"
        )
        for i in range(rows)
    ]
    out.append(TransactionEnd(f"0-1-{seq}", start.at_row(rows - 1), rows, 1))
    return out


def test_a_refused_run_fails_the_commit_and_nothing_of_it_is_committed(
    stack: StackConnections, writer: KafkaStreamWriter
) -> None:
    bootstrap = stack.kafka.bootstrap_servers
    assert writer.start() is None
    writer.begin()
    first = source_txn(1, 2, "small") + source_txn(3, 2, "small")
    # the table's first transaction goes the per-row way (it publishes the schema), the next a run
    assert writer.write_transactions(first, 0, 1_000).stop == 2
    writer.write(first[2])
    run = writer.write_transactions(first, 3, 1_000)
    assert (run.stop, run.ends) == (len(first), 1)
    assert isinstance(run.messages, PackedMessages) and writer._raw is not None  # the direct path
    end = first[-1]
    assert isinstance(end, TransactionEnd)
    writer.commit(end.restart)
    topic = writer.topics.table(SCHEMA.ref)
    assert len(read_committed(bootstrap, topic)) == 4

    # the broker now refuses messages over 1000 bytes: the next run's deliveries fail
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry("max.message.bytes", "1000", incremental_operation=AlterConfigOpType.SET)
    for future in admin.incremental_alter_configs(
        [ConfigResource("topic", topic, incremental_configs=[entry])]
    ).values():
        future.result(timeout=30)
    writer.begin()
    big = source_txn(2, 3, os.urandom(1500).hex())  # 3000 bytes of text lz4 cannot shrink below 1000
    run = writer.write_transactions(big, 0, 1_000)
    assert run.stop == len(big) and isinstance(run.messages, PackedMessages)
    with pytest.raises(StreamUnavailable) as failed:  # aborted: resume from the checkpoint
        big_end = big[-1]
        assert isinstance(big_end, TransactionEnd)
        writer.commit(big_end.restart)

    assert "Message size too large" in str(failed.value)  # the broker's refusal, named
    assert [(key, value["after"]["name"]) for _, key, value in read_committed(bootstrap, topic)] == [
        (f'{{"id":{seq * 100 + i}}}'.encode(), "small") for seq in (1, 3) for i in range(2)
    ]
    checkpoint = read_checkpoint(writer.config, writer.pipeline)
    assert checkpoint is not None and checkpoint.restart == end.restart
