"""`cdc sink`'s compiled chunking of a consume() batch (message_chunks.chunk_messages, through
headwater_native.message_runs) against the per-message Python loop it replaced, on a real broker:
a three-partition topic with committed transactions, a delete's tombstone, an aborted transaction
between them (its messages and every transaction marker take offsets but are no messages under
read_committed) and the end-of-partition marks."""

from __future__ import annotations

import random
import time
import uuid

from confluent_kafka import Consumer, Message, Producer

from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import TableRef, TableSchema
from cdc.devstack.connections import StackConnections
from cdc.stream import KafkaStreamWriter
from cdc.stream.kafka_chunks import ChangeChunk
from cdc.stream.kafka_reader import KafkaChangeReader, reader_settings, table_topic_pattern
from cdc.stream.message_chunks import PartitionState, chunk_messages, chunk_messages_per_message
from tests.integration.test_speedsink_reader import SCHEMA

PARTITIONS = 3


def _committed(writer: KafkaStreamWriter, seq: int, keys: range, delete: int | None) -> None:
    start = Position(Gtid(0, 1, seq), "mysql-bin.000001", 1000 * seq)
    writer.begin()
    row = 0
    for key in keys:
        writer.write(
            ChangeEvent(Op.CREATE, SCHEMA, (key,), None, (key, f"n{key}"), start.at_row(row), 1, f"0-1-{seq}")
        )
        row += 1
    if delete is not None:  # its tombstone follows it on the key's partition
        writer.write(
            ChangeEvent(
                Op.DELETE, SCHEMA, (delete,), (delete, f"n{delete}"), None, start.at_row(row), 1, f"0-1-{seq}"
            )
        )
        row += 1
    end = TransactionEnd(f"0-1-{seq}", start.at_row(row - 1), row, 1)
    writer.write(end)
    writer.commit(end.restart)


def _aborted(bootstrap: str, topic: str) -> None:
    """Messages in every partition that reach the log and are then aborted."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"consume-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(12):
        producer.produce(topic, key=b'{"id":%d}' % i, value=b'{"aborted":%d}' % i, partition=i % PARTITIONS)
    producer.flush(30)
    producer.abort_transaction(30)


def _state(config: KafkaStreamConfig, pipeline: str, limit: int) -> PartitionState:
    """A reader's partition state (its end-of-partition marks), chunks of at most ``limit``."""
    state = KafkaChangeReader(config, pipeline, lambda parts: {})._partition_state
    return PartitionState(state.own, state.names, state.at_end, state.on_error, state.decoder, limit)


def _shape(chunks: list[ChangeChunk]) -> list[tuple[str, list[bytes], list[int]]]:
    return [(c.partition, list(c.values), list(c.next_offsets)) for c in chunks]


def test_the_compiled_chunking_equals_the_per_message_loop(stack: StackConnections) -> None:
    pipeline = f"consume{uuid.uuid4().hex[:8]}"
    bootstrap = stack.kafka.bootstrap_servers
    config = KafkaStreamConfig(bootstrap_servers=bootstrap, partitions=PARTITIONS)
    writer = KafkaStreamWriter(config, pipeline, random.randrange(8200, 8300))
    topic = f"{pipeline}.speedsink.items"
    settings = reader_settings(config, f"consume-{uuid.uuid4().hex}")
    settings["auto.offset.reset"] = "earliest"  # the reader seeks on assignment; this consumer does not
    consumer = Consumer(settings)
    try:
        writer.start()
        _committed(writer, 1, range(0, 30), delete=4)
        _aborted(bootstrap, topic)
        _committed(writer, 2, range(30, 45), delete=31)
        consumer.subscribe([table_topic_pattern(pipeline)])
        batches: list[list[Message]] = []
        ends: set[int] = set()
        deadline = time.monotonic() + 60
        while len(ends) < PARTITIONS and time.monotonic() < deadline:
            batch = consumer.consume(7, timeout=0.5)  # small batches: runs end inside partitions
            for msg in batch:
                if msg.error() is not None:
                    ends.add(msg.partition() or 0)
            if batch:
                batches.append(batch)
        assert len(ends) == PARTITIONS
        for limit in (4, 2_500):  # chunks split inside a run, and whole runs
            fast, slow = _state(config, pipeline, limit), _state(config, pipeline, limit)
            got = [_shape(chunk_messages(b, fast)) for b in batches]
            want = [_shape(chunk_messages_per_message(b, slow)) for b in batches]
            assert got == want
            assert fast.at_end == slow.at_end == {f"{topic}:{p}" for p in range(PARTITIONS)}
        values = [v for shapes in got for _p, vs, _o in shapes for v in vs]
        assert len(values) == 30 + 1 + 15 + 1  # the changes: no tombstone, nothing aborted
        assert not any(b"aborted" in v for v in values)
        offsets: dict[str, list[int]] = {}
        for shapes in got:
            for name, _vs, next_offsets in shapes:
                offsets.setdefault(name, []).extend(next_offsets)
        for name, held in offsets.items():
            assert held == sorted(set(held)), name
        # the aborted messages and the markers left gaps in every partition's offsets
        assert all(max(o) > len(o) + 1 for o in offsets.values())
    finally:
        consumer.close()
        writer.close()


class _Recording:
    """The reader's consumer, with every list_topics call noted."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.listed: list[str | None] = []

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> object:
        self.listed.append(topic)
        return self.consumer.list_topics(topic, timeout=timeout)

    def __getattr__(self, name: str) -> object:
        return getattr(self.consumer, name)


def test_table_partitions_asks_for_the_pipelines_topics_only(stack: StackConnections) -> None:
    """`--until-caught-up`'s last check: every table partition that exists, without listing the
    broker's every topic (0.2-0.8 s on the shared broker), and without asking the consuming
    consumer (a named lookup there waits about 0.5 s per topic: 2 s of a 7 s bench run with four
    tables); a table whose first change arrives after the first check is found by the next."""
    pipeline = f"consume{uuid.uuid4().hex[:8]}"
    config = KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers, partitions=2)
    writer = KafkaStreamWriter(config, pipeline, random.randrange(8200, 8300))
    reader = KafkaChangeReader(config, pipeline, lambda parts: {})
    other = TableSchema.build(TableRef("speedsink", "others"), SCHEMA.columns, ("id",))
    try:
        writer.start()
        _committed(writer, 1, range(0, 4), delete=None)
        reader.start()
        recording = _Recording(reader._consumer)  # type: ignore[arg-type]
        reader._consumer = recording  # type: ignore[assignment]
        items = {f"{pipeline}.speedsink.items:{p}" for p in range(2)}
        assert reader.table_partitions() == items
        start = Position(Gtid(0, 1, 9), "mysql-bin.000001", 9000)
        writer.begin()
        writer.write(ChangeEvent(Op.CREATE, other, (1,), None, (1, "x"), start.at_row(0), 1, "0-1-9"))
        end = TransactionEnd("0-1-9", start.at_row(0), 1, 1)
        writer.write(end)
        writer.commit(end.restart)
        both = items | {f"{pipeline}.speedsink.others:{p}" for p in range(2)}
        # the commit's markers reach the schema topic a moment after commit() returns (Kafka writes
        # them after the coordinator's prepare): a read_committed reader sees the table then
        deadline = time.monotonic() + 10
        while (found := reader.table_partitions()) != both and time.monotonic() < deadline:
            time.sleep(0.1)
        assert found == both
        assert not recording.listed, "the consuming consumer was asked for metadata"
    finally:
        reader.close()
        writer.close()
