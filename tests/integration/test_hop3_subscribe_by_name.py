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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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


@dataclass
class _Rig:
    pipeline: str
    writer: KafkaStreamWriter
    readers: list[KafkaChangeReader]


@contextmanager
def _rig(stack: StackConnections, partitions: int, readers: int = 1) -> Iterator[_Rig]:
    """A new pipeline's writer and ``readers`` readers in one group; closed and its topics deleted
    after the block."""
    pipeline = f"hop3sub{uuid.uuid4().hex[:8]}"
    config = KafkaStreamConfig(
        bootstrap_servers=stack.kafka.bootstrap_servers, partitions=partitions, properties=NO_REFRESH
    )
    group = f"hop3sub-{uuid.uuid4().hex[:8]}"
    rig = _Rig(
        pipeline,
        KafkaStreamWriter(config, pipeline, random.randrange(7300, 7400)),
        [KafkaChangeReader(config, pipeline, lambda parts: {}, group) for _ in range(readers)],
    )
    try:
        yield rig
    finally:
        for reader in rig.readers:
            reader.close()
        rig.writer.close()
        _cleanup(stack, pipeline)


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


def _read_settled(reader: KafkaChangeReader, partitions: int, settle_s: float) -> set:
    """Poll one reader until it holds ``partitions`` partitions, then ``settle_s`` more: the keys."""
    got = _poll_until([reader], lambda: len(reader.assigned) == partitions, 30)[0]
    return got | _poll_until([reader], lambda: False, settle_s)[0]


def _cleanup(stack: StackConnections, pipeline: str) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{pipeline}.")]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=10).values():
            future.result()


def test_tables_announced_after_the_reader_started_are_consumed(stack: StackConnections) -> None:
    with _rig(stack, 1) as rig:
        reader, writer, pipeline = rig.readers[0], rig.writer, rig.pipeline
        reader.start()  # a new pipeline: not even the schema topic exists yet
        reader.poll(10_000, 0.1)
        writer.start()
        _write(writer, SCHEMA, 1, 3)
        got = _read_settled(reader, 1, 0.5)
        assert got == {1000, 1001, 1002}, f"first table: {sorted(got)}"

        _write(writer, OTHER, 2, 2)  # a second table: its topic is created now
        got = _read_settled(reader, 2, 0.5)
        # before: the pattern matched the new topic only at the next metadata refresh
        assert reader.assigned == {f"{pipeline}.speedsink.items:0", f"{pipeline}.speedsink.others:0"}
        assert got == {2000, 2001}, f"second table: {sorted(got)}"


def test_a_topic_the_schema_topic_does_not_announce_is_not_consumed(stack: StackConnections) -> None:
    with _rig(stack, 1) as rig:
        reader, writer, pipeline = rig.readers[0], rig.writer, rig.pipeline
        stray = f"{pipeline}.speedsink.stray"  # named like a table topic of the pipeline
        admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers})
        admin.create_topics([NewTopic(stray, 1, 1)])[stray].result()
        producer = Producer({"bootstrap.servers": stack.kafka.bootstrap_servers})
        producer.produce(stray, b"not a change")
        producer.flush(10)
        writer.start()
        _write(writer, SCHEMA, 1, 2)
        reader.start()
        got = _read_settled(reader, 1, 1.0)
        assert reader.assigned == {f"{pipeline}.speedsink.items:0"}
        assert got == {1000, 1001}


def test_two_readers_of_a_group_share_a_table_announced_while_they_run(stack: StackConnections) -> None:
    with _rig(stack, 4, readers=2) as rig:
        readers, writer, pipeline = rig.readers, rig.writer, rig.pipeline

        def shared(count: int) -> Callable[[], bool]:
            def done() -> bool:
                a, b = (r.assigned for r in readers)
                return len(a | b) == count and not a & b and bool(a) and bool(b)

            return done

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
