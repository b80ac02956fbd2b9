"""KafkaStreamWriter.write_changes against the dev stack's Kafka: a run goes in through produce_batch,
in order, partitioned by key as produce() partitions, also when librdkafka's local queue is full."""

from __future__ import annotations

import uuid
import zlib

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from cdc.core.events import ChangeEvent, Op, SourceRecord, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.devstack.connections import StackConnections
from cdc.stream import KafkaStreamWriter
from tests.integration.test_stream_kafka import SCHEMA, config, read_committed

ROWS = 3000


def test_a_run_through_a_full_queue_keeps_order_and_partitions(stack: StackConnections) -> None:
    bootstrap = stack.kafka.bootstrap_servers
    pipeline = f"capwrite{uuid.uuid4().hex[:10]}"
    topic = f"{pipeline}.shop.items"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    # a local queue of 100 messages: the run's batches are refused part way, again and again
    cfg = config(bootstrap, properties={"queue.buffering.max.messages": "100"})
    writer = KafkaStreamWriter(cfg, pipeline, 7601)
    waits = 0
    wait_for_room = writer._wait_for_room

    def counting() -> None:
        nonlocal waits
        waits += 1
        wait_for_room()

    writer._wait_for_room = counting  # type: ignore[method-assign]
    try:
        writer.start()
        writer.begin()
        start = Position(Gtid(0, 1, 1), "mysql-bin.000001", 1000)
        records: list[SourceRecord] = []
        for i in range(ROWS):
            op = Op.DELETE if i % 10 == 9 else Op.CREATE
            image = (i, f"n{i}")
            before, after = (image, None) if op is Op.DELETE else (None, image)
            records.append(ChangeEvent(op, SCHEMA, (i,), before, after, start.at_row(i), 1, "0-1-1"))
        end = TransactionEnd("0-1-1", start.at_row(ROWS - 1), ROWS, 1)
        records.append(end)
        assert writer.write_changes(records, 0) == ROWS  # stops at the TransactionEnd
        writer.write(end)
        writer.commit(end.restart)
    finally:
        writer.close()
    assert waits > 0, "the queue never filled: the retry path was not exercised"
    got = read_committed(bootstrap, topic)
    deletes = ROWS // 10
    assert len(got) == ROWS + deletes  # a tombstone after each delete
    by_partition: dict[int, list[tuple[bytes | None, object]]] = {}
    for partition, key, value in got:
        assert key is not None
        # librdkafka's default partitioner (consistent_random): CRC-32 of the key
        assert partition == zlib.crc32(key) % 3
        by_partition.setdefault(partition, []).append((key, value))
    expected: dict[int, list[tuple[bytes, int, str | None]]] = {}
    for i in range(ROWS):
        key = b'{"id":%d}' % i
        kind = "d" if i % 10 == 9 else "c"
        expected.setdefault(zlib.crc32(key) % 3, []).append((key, i, kind))
        if kind == "d":
            expected[zlib.crc32(key) % 3].append((key, i, None))
    for partition, messages in by_partition.items():
        seen = [
            (key, i, None if value is None else value["op"])  # type: ignore[index]
            for (key, value), (_, i, _) in zip(messages, expected[partition], strict=True)
        ]
        assert seen == expected[partition]
        rows = [value["source"]["row"] for _, value in messages if value is not None]  # type: ignore[index]
        assert rows == sorted(rows)
