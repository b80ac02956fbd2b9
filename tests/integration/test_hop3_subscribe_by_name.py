"""`cdc sink`'s consumer subscribes to the table topics its pipeline's schema topic announces, by
name, and again when a new table is announced: a new table's topic is found without librdkafka's
periodic metadata refresh (which, for a pattern, asked for every topic on the broker), and a topic
that only looks like one of the pipeline's is not consumed. Against the real broker; the periodic
refresh is set to 10 minutes here, so that only the announcement can find a topic within the test.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import TableRef, TableSchema
from cdc.devstack.connections import StackConnections
from cdc.stream import KafkaStreamWriter
from cdc.stream.kafka_reader import KafkaChangeReader
from tests.integration.test_speedsink_reader import SCHEMA

OTHER = TableSchema.build(TableRef("speedsink", "others"), SCHEMA.columns, SCHEMA.primary_key)
NO_REFRESH = {"topic.metadata.refresh.interval.ms": "600000"}


def _write(writer: KafkaStreamWriter, schema: TableSchema, seq: int, rows: int) -> None:
    start = Position(Gtid(0, 1, seq), "mysql-bin.000001", 1000 * seq)
    writer.begin()
    for i in range(rows):
        key = seq * 1000 + i
        writer.write(
            ChangeEvent(Op.CREATE, schema, (key,), None, (key, f"n{i}"), start.at_row(i), 1, f"0-1-{seq}")
        )
    end = TransactionEnd(f"0-1-{seq}", start.at_row(rows - 1), rows, 1)
    writer.write(end)
    writer.commit(end.restart)


def _setup(stack: StackConnections, partitions: int) -> tuple[KafkaStreamConfig, str, KafkaStreamWriter]:
    pipeline = f"hop3sub{uuid.uuid4().hex[:8]}"
    config = KafkaStreamConfig(
        bootstrap_servers=stack.kafka.bootstrap_servers, partitions=partitions, properties=NO_REFRESH
    )
    return config, pipeline, KafkaStreamWriter(config, pipeline, random.randrange(7300, 7400))


def _poll_until(readers: list[KafkaChangeReader], done: Callable[[], bool], seconds: float) -> dict[int, set]:
    """Poll every reader until ``done()``; the keys each one consumed."""
    keys: dict[int, set] = {i: set() for i in range(len(readers))}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for i, reader in enumerate(readers):
            keys[i].update(c.event.key[0] for c in reader.poll(10_000, 0.05) if c.event.key)
        if done():
            break
    return keys


def _cleanup(stack: StackConnections, pipeline: str) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{pipeline}.")]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=10).values():
            future.result()


def test_tables_announced_after_the_reader_started_are_consumed(stack: StackConnections) -> None:
    config, pipeline, writer = _setup(stack, 1)
    reader = KafkaChangeReader(config, pipeline, lambda parts: {})
    try:
        reader.start()  # a new pipeline: not even the schema topic exists yet
        reader.poll(10_000, 0.1)
        writer.start()
        _write(writer, SCHEMA, 1, 3)
        got = _poll_until([reader], lambda: len(reader.assigned) == 1, 30)
        got[0] |= _poll_until([reader], lambda: False, 0.5)[0]
        assert got[0] == {1000, 1001, 1002}, f"first table: {sorted(got[0])}"

        _write(writer, OTHER, 2, 2)  # a second table: its topic is created now
        got = _poll_until([reader], lambda: len(reader.assigned) == 2, 30)
        got[0] |= _poll_until([reader], lambda: False, 0.5)[0]
        # before: the pattern matched the new topic only at the next metadata refresh
        assert reader.assigned == {f"{pipeline}.speedsink.items:0", f"{pipeline}.speedsink.others:0"}
        assert got[0] == {2000, 2001}, f"second table: {sorted(got[0])}"
    finally:
        reader.close()
        writer.close()
        _cleanup(stack, pipeline)


def test_a_topic_the_schema_topic_does_not_announce_is_not_consumed(stack: StackConnections) -> None:
    config, pipeline, writer = _setup(stack, 1)
    stray = f"{pipeline}.speedsink.stray"  # named like a table topic of the pipeline
    reader = KafkaChangeReader(config, pipeline, lambda parts: {})
    try:
        admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers})
        admin.create_topics([NewTopic(stray, 1, 1)])[stray].result()
        producer = Producer({"bootstrap.servers": stack.kafka.bootstrap_servers})
        producer.produce(stray, b"not a change")
        producer.flush(10)
        writer.start()
        _write(writer, SCHEMA, 1, 2)
        reader.start()
        got = _poll_until([reader], lambda: len(reader.assigned) >= 1, 30)
        got[0] |= _poll_until([reader], lambda: False, 1.0)[0]
        assert reader.assigned == {f"{pipeline}.speedsink.items:0"}
        assert got[0] == {1000, 1001}
    finally:
        reader.close()
        writer.close()
        _cleanup(stack, pipeline)


def test_two_readers_of_a_group_share_a_table_announced_while_they_run(stack: StackConnections) -> None:
    config, pipeline, writer = _setup(stack, 4)
    group = f"hop3sub-{uuid.uuid4().hex[:8]}"
    readers = [KafkaChangeReader(config, pipeline, lambda parts: {}, group) for _ in range(2)]

    def shared(count: int) -> Callable[[], bool]:
        def done() -> bool:
            a, b = (r.assigned for r in readers)
            return len(a | b) == count and not a & b and bool(a) and bool(b)

        return done

    try:
        writer.start()
        _write(writer, SCHEMA, 1, 8)
        for reader in readers:
            reader.start()
        first = _poll_until(readers, shared(4), 40)
        assert shared(4)(), [r.assigned for r in readers]

        _write(writer, OTHER, 2, 8)
        second = _poll_until(readers, shared(8), 40)
        rest = _poll_until(readers, lambda: False, 1.0)
        keys = [first[i] | second[i] | rest[i] for i in range(2)]
        assert shared(8)(), [r.assigned for r in readers]
        every = {r for reader in readers for r in reader.assigned}
        assert {p.rpartition(":")[0] for p in every} == {
            f"{pipeline}.speedsink.items",
            f"{pipeline}.speedsink.others",
        }
        # every change reached one of the two (a partition that moved was read from the start again
        # by its new owner: these readers store no offsets)
        assert keys[0] | keys[1] == set(range(1000, 1008)) | set(range(2000, 2008))
    finally:
        for reader in readers:
            reader.close()
        writer.close()
        _cleanup(stack, pipeline)
