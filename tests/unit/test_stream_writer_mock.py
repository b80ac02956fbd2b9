"""KafkaStreamWriter against librdkafka's in-process mock cluster (no services needed).

The mock cluster runs transactions, produce and read_committed fetches (without hiding aborted
records that were already delivered), but not admin calls (topics are auto-created there, so a
static TopicAdmin stands in) and not producer fencing: those are covered by the integration tests
against a real broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from cdc.config.models import KafkaStreamConfig
from cdc.core.errors import (
    CommitStateUnknown,
    MessageTooLarge,
    ProducerFenced,
    StreamUnavailable,
    TerminalError,
    TransientError,
)
from cdc.core.events import ChangeEvent, Op, SchemaChange, SchemaChangeKind, TransactionEnd
from cdc.core.positions import Gtid, Position, RestartPoint
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream import KafkaStreamWriter, TopicSpec, read_checkpoint

SCHEMA = TableSchema.build(
    TableRef("db", "t"),
    (
        Column("id", "int", ArrowType(ArrowKind.INT32), False),
        Column("v", "varchar", ArrowType(ArrowKind.STRING)),
    ),
    ("id",),
)


MOCK_PARTITIONS = 4  # what the mock cluster gives an auto-created topic


class StaticAdmin:
    """The mock cluster auto-creates topics; admin requests are not implemented there."""

    def ensure(self, specs: tuple[TopicSpec, ...]) -> dict[str, int]:
        return {s.name: MOCK_PARTITIONS for s in specs}


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    host = Producer({"test.mock.num.brokers": 1, "log_level": 2})
    brokers = host.list_topics(timeout=10).brokers.values()
    yield ",".join(f"{b.host}:{b.port}" for b in brokers)
    host.close()


def config(bootstrap: str, **extra: Any) -> KafkaStreamConfig:
    props = {"log_level": "2", **extra.pop("properties", {})}
    return KafkaStreamConfig(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, properties=props, **extra
    )


def writer(cfg: KafkaStreamConfig, pipeline: str) -> KafkaStreamWriter:
    return KafkaStreamWriter(cfg, pipeline, 5401, topic_admin=StaticAdmin())


def transaction(seq: int, rows: int, first_id: int = 0) -> list[ChangeEvent | TransactionEnd]:
    start = Position(Gtid(0, 1, seq), "bin.000001", 1000 + seq * 100)
    out: list[ChangeEvent | TransactionEnd] = [
        ChangeEvent(
            Op.CREATE,
            SCHEMA,
            (first_id + i,),
            None,
            (first_id + i, f"row {i}"),
            start.at_row(i),
            1,
            f"0-1-{seq}",
        )
        for i in range(rows)
    ]
    out.append(TransactionEnd(f"0-1-{seq}", start.at_row(rows - 1), rows, 1))
    return out


def committed_values(bootstrap: str, topic: str) -> list[Any]:
    return [value for _, value in committed_messages(bootstrap, topic)]


def committed_messages(bootstrap: str, topic: str) -> list[tuple[int, Any]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "log_level": 2,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        remaining, values = set(partitions), []
        while remaining:
            message = consumer.poll(10)
            assert message is not None, f"no end of {topic} in sight"
            if message.error():
                assert message.error().code() == KafkaError._PARTITION_EOF
                remaining.discard(message.partition())
            else:
                value = message.value()
                values.append((message.partition(), None if value is None else orjson.loads(value)))
        return values
    finally:
        consumer.close()


def test_commit_then_restart_returns_the_checkpoint(bootstrap: str) -> None:
    pipeline = f"m{uuid.uuid4().hex[:8]}"
    cfg = config(bootstrap, transaction_metadata=True)
    w = writer(cfg, pipeline)
    assert w.start() is None
    w.begin()
    records = transaction(1, 3) + transaction(2, 2, first_id=100)
    for record in records:
        w.write(record)
    end = records[-1]
    assert isinstance(end, TransactionEnd)
    w.commit(end.restart)
    w.close()

    checkpoint = read_checkpoint(cfg, pipeline)
    assert checkpoint is not None
    assert checkpoint.restart == end.restart
    assert (checkpoint.events, checkpoint.source_transactions) == (5, 2)
    assert checkpoint.tables == (("db.t", 5),)

    again = writer(cfg, pipeline)
    assert again.start() == end.restart
    again.close()

    values = committed_values(bootstrap, f"{pipeline}.db.t")
    assert sorted(v["after"]["id"] for v in values) == [0, 1, 2, 100, 101]
    assert {v["transaction"]["id"] for v in values} == {"0-1-1", "0-1-2"}
    marks = committed_values(bootstrap, f"{pipeline}.__transactions")
    # the mock auto-creates topics with several partitions (keyed by id): order holds per transaction
    assert sorted((m["id"], m["status"], m["event_count"]) for m in marks) == [
        ("0-1-1", "BEGIN", None),
        ("0-1-1", "END", 3),
        ("0-1-2", "BEGIN", None),
        ("0-1-2", "END", 2),
    ]
    schemas = committed_values(bootstrap, f"{pipeline}.__schema")
    assert [s["version"] for s in schemas] == [SCHEMA.version]  # published once


def test_abort_keeps_the_checkpoint(bootstrap: str) -> None:
    pipeline = f"m{uuid.uuid4().hex[:8]}"
    cfg = config(bootstrap)
    w = writer(cfg, pipeline)
    w.start()
    w.begin()
    first = transaction(1, 2)
    for record in first:
        w.write(record)
    first_end = first[-1]
    assert isinstance(first_end, TransactionEnd)
    w.commit(first_end.restart)
    w.begin()
    for record in transaction(2, 4, first_id=50):
        w.write(record)
    w.abort()
    # the schema version published in the aborted transaction is published again next time
    w.begin()
    w.write(
        SchemaChange(
            SchemaChangeKind.ALTER,
            SCHEMA.ref,
            "ALTER TABLE t ADD x INT",
            Position(Gtid(0, 1, 3), "bin.000001", 5000),
            1,
            "0-1-3",
        )
    )
    w.abort()
    w.close()
    checkpoint = read_checkpoint(cfg, pipeline)
    assert checkpoint is not None and checkpoint.restart == first_end.restart
    # The mock cluster does not hide delivered records of aborted transactions from read_committed
    # fetches; that half is covered against the real broker (tests/integration/test_stream_kafka.py).


def test_deletes_get_tombstones_and_truncates_reach_every_partition(bootstrap: str) -> None:
    pipeline = f"m{uuid.uuid4().hex[:8]}"
    cfg = config(bootstrap)
    w = writer(cfg, pipeline)
    w.start()
    w.begin()
    pos = Position(Gtid(0, 1, 9), "bin.000001", 900)
    w.write(ChangeEvent(Op.DELETE, SCHEMA, (7,), (7, "x"), None, pos, 1, "0-1-9"))
    w.write(ChangeEvent(Op.TRUNCATE, SCHEMA, None, None, None, pos.at_row(1), 1, "0-1-9"))
    w.commit(RestartPoint.after(pos.at_row(1)))
    w.close()
    messages = committed_messages(bootstrap, f"{pipeline}.db.t")
    by_partition: dict[int, list[str | None]] = {}
    for partition, value in messages:
        by_partition.setdefault(partition, []).append(None if value is None else value["op"])
    assert sorted(by_partition) == list(range(MOCK_PARTITIONS))
    assert sorted(by_partition.values(), key=len) == [["t"]] * (MOCK_PARTITIONS - 1) + [["d", None, "t"]]


def test_no_tombstones_when_disabled(bootstrap: str) -> None:
    pipeline = f"m{uuid.uuid4().hex[:8]}"
    cfg = config(bootstrap, tombstones_on_delete=False)
    w = writer(cfg, pipeline)
    w.start()
    w.begin()
    pos = Position(Gtid(0, 1, 9), "bin.000001", 900)
    w.write(ChangeEvent(Op.DELETE, SCHEMA, (7,), (7, "x"), None, pos, 1, "0-1-9"))
    w.commit(RestartPoint.after(pos))
    w.close()
    assert [v["op"] for v in committed_values(bootstrap, f"{pipeline}.db.t")] == ["d"]


def test_a_tiny_local_queue_is_backpressure_not_an_error(bootstrap: str) -> None:
    pipeline = f"m{uuid.uuid4().hex[:8]}"
    cfg = config(bootstrap, properties={"queue.buffering.max.messages": "50"})
    w = writer(cfg, pipeline)
    w.start()
    w.begin()
    records = transaction(1, 5_000)
    for record in records:
        w.write(record)
    end = records[-1]
    assert isinstance(end, TransactionEnd)
    w.commit(end.restart)
    w.close()
    assert len(committed_values(bootstrap, f"{pipeline}.db.t")) == 5_000


def test_a_message_the_producer_refuses_aborts_and_is_terminal(bootstrap: str) -> None:
    # a producer (or topic) limit below stream.max_message_bytes: retrying cannot help
    pipeline = f"m{uuid.uuid4().hex[:8]}"
    cfg = config(bootstrap, properties={"message.max.bytes": "1000"})
    w = writer(cfg, pipeline)
    w.start()
    w.begin()
    big = ChangeEvent(
        Op.CREATE, SCHEMA, (1,), None, (1, "x" * 5000), Position(Gtid(0, 1, 1), "bin.000001", 4), 1, "0-1-1"
    )
    with pytest.raises(MessageTooLarge, match=r"max\.message\.bytes") as info:
        w.write(big)
    assert isinstance(info.value, TerminalError)
    w.begin()  # the failed transaction was aborted: a new one can start
    w.abort()
    w.close()
    assert read_checkpoint(cfg, pipeline) is None


def test_a_change_over_max_message_bytes_is_refused_before_producing(bootstrap: str) -> None:
    pipeline = f"m{uuid.uuid4().hex[:8]}"
    cfg = config(bootstrap, max_message_bytes=1_048_576)
    w = writer(cfg, pipeline)
    w.start()
    w.begin()
    for record in transaction(1, 3):
        w.write(record)
    huge = ChangeEvent(
        Op.CREATE,
        SCHEMA,
        (42,),
        None,
        (42, "x" * 1_100_000),
        Position(Gtid(0, 1, 2), "bin.000001", 9),
        1,
        "0-1-2",
    )
    with pytest.raises(MessageTooLarge, match=r'db\.t with key \{"id":42\} .* is 11\d{5} bytes') as info:
        w.write(huge)
    assert "stream.max_message_bytes (1048576)" in str(info.value)
    w.abort()
    w.close()
    # never produced (the mock cluster shows aborted records, so only the big one's absence is
    # checked here; tests/integration/test_kafka_large_rows.py checks the whole transaction)
    # (sorted: the mock cluster's topic may have several partitions)
    assert sorted(v["after"]["id"] for v in committed_values(bootstrap, f"{pipeline}.db.t")) == [0, 1, 2]
    assert read_checkpoint(cfg, pipeline) is None


def test_unreachable_broker_is_transient_and_names_the_servers() -> None:
    cfg = KafkaStreamConfig(
        bootstrap_servers="127.0.0.1:1", request_timeout_ms=1_000, properties={"log_level": "0"}
    )
    w = KafkaStreamWriter(cfg, "nobroker", 1)
    with pytest.raises(StreamUnavailable, match=r"127\.0\.0\.1:1") as info:
        w.start()
    assert isinstance(info.value, TransientError)


def test_calls_out_of_order_are_programming_errors(bootstrap: str) -> None:
    w = writer(config(bootstrap), f"m{uuid.uuid4().hex[:8]}")
    with pytest.raises(RuntimeError):
        w.begin()
    w.start()
    with pytest.raises(RuntimeError):
        w.write(transaction(1, 1)[0])
    w.close()
    w.close()


class StubProducer:
    """Stands in for the producer to drive commit_transaction's error paths."""

    def __init__(self, errors: list[KafkaError]) -> None:
        self.errors = errors
        self.commits = 0
        self.aborted = False

    def produce(self, *args: Any) -> None:
        pass

    def poll(self, timeout: float) -> int:
        return 0

    def commit_transaction(self, timeout: float) -> None:
        self.commits += 1
        if self.errors:
            raise KafkaException(self.errors.pop(0))

    def flush(self, timeout: float) -> int:
        return 0

    def abort_transaction(self, timeout: float) -> None:
        self.aborted = True

    def close(self) -> None:
        pass


def stubbed(errors: list[KafkaError]) -> tuple[KafkaStreamWriter, StubProducer]:
    w = KafkaStreamWriter(KafkaStreamConfig(bootstrap_servers="127.0.0.1:1"), "stub", 1)
    stub = StubProducer(errors)
    w._producer = stub  # type: ignore[assignment]
    w._in_transaction = True
    return w, stub


RESTART = RestartPoint(Position(Gtid(0, 1, 1), "bin.000001", 4), 1)


def test_retriable_commit_is_retried() -> None:
    w, stub = stubbed([KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True)])
    w.commit(RESTART)
    assert stub.commits == 2 and not stub.aborted


def test_commit_that_keeps_timing_out_is_state_unknown() -> None:
    w, stub = stubbed([KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True)] * 10)
    with pytest.raises(CommitStateUnknown) as info:
        w.commit(RESTART)
    assert isinstance(info.value, TransientError)
    assert not stub.aborted


def test_abortable_commit_error_aborts_and_is_transient() -> None:
    w, stub = stubbed([KafkaError(KafkaError._MSG_TIMED_OUT, "lost", txn_requires_abort=True)])
    with pytest.raises(StreamUnavailable):
        w.commit(RESTART)
    assert stub.aborted


@pytest.mark.parametrize(
    "code", [KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH]
)
def test_fenced_commit_is_terminal_and_sticks(code: int) -> None:
    w, _ = stubbed([KafkaError(code, "fenced", fatal=True)])
    with pytest.raises(ProducerFenced, match="another `cdc run` for pipeline 'stub'"):
        w.commit(RESTART)
    with pytest.raises(ProducerFenced):
        w.begin()


def test_checkpoint_found_behind_a_long_run_of_aborted_records(bootstrap: str) -> None:
    pipeline = f"m{uuid.uuid4().hex[:8]}"
    cfg = config(bootstrap)
    w = writer(cfg, pipeline)
    w.start()
    w.begin()
    records = transaction(1, 1)
    for record in records:
        w.write(record)
    end = records[-1]
    assert isinstance(end, TransactionEnd)
    w.commit(end.restart)
    w.close()
    # another producer leaves 200 aborted records after it: more than the tail the reader tries first
    other = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"x-{pipeline}", "log_level": 2})
    other.init_transactions(10)
    other.begin_transaction()
    for _ in range(200):
        other.produce(f"{pipeline}.__checkpoints", b"garbage", pipeline.encode(), 0)
    other.abort_transaction(10)
    other.close()
    checkpoint = read_checkpoint(cfg, pipeline)
    assert checkpoint is not None and checkpoint.restart == end.restart
