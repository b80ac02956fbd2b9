"""The capture writer's runs straight into librdkafka (cdc.stream.raw_produce, produce_direct.rs): the
packed messages are, byte for byte, the dicts ``produce_batch`` got, and what librdkafka stores of
them (key, value, partition, order) is what ``produce_batch`` stored. Against librdkafka's
in-process mock cluster: no services needed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, SourceRecord, TransactionEnd
from cdc.core.positions import Position
from cdc.stream.envelope import EnvelopeEncoder
from cdc.stream.kafka_batches import message_maker
from cdc.stream.kafka_writer import KafkaStreamWriter
from cdc.stream.native_rows import MessageMaker
from cdc.stream.raw_produce import PackedMessages, RawProducer, librdkafka_path, raw_producer
from tests.unit.test_capture_transaction_runs import transactions
from tests.unit.test_stream_writer_mock import StaticAdmin, committed_messages
from tests.unit.test_stream_writer_mock import config as mock_config
from tests.unit.test_stream_writer_mock import transaction as mock_transaction

Pair = tuple[bytes | None, bytes | None]


def runs(recs: list[SourceRecord], tombstones: bool, packed: bool) -> list[list[Pair]]:
    """The messages of each run EnvelopeEncoder.transactions takes, walking ``recs`` as the writer
    does (a record a run does not take is stepped over: both sides skip the same ones)."""
    encoder = EnvelopeEncoder("p")
    maker = message_maker(KafkaStreamConfig(bootstrap_servers="x:1", tombstones_on_delete=tombstones))
    out: list[list[Pair]] = []
    i = 0
    while i < len(recs):
        if not isinstance(recs[i], ChangeEvent):
            i += 1
            continue
        run = encoder.transactions(maker, recs, i, 50, 123, packed=packed)
        if run.stop == i:
            i += 1
            continue
        messages = run.messages
        if isinstance(messages, list):
            out.append([(m["key"], m["value"]) for m in messages])
        else:
            assert [(m["key"], m["value"]) for m in messages.dicts()] == messages.pairs()
            assert messages.pairs(2) == messages.pairs()[2:]
            out.append(messages.pairs())
        i = run.stop
    return out


@pytest.mark.parametrize("tombstones", [True, False])
def test_packed_runs_are_the_dicts_byte_for_byte(tombstones: bool) -> None:
    for seed in range(6):
        recs = transactions(seed, 300)
        expected = runs(recs, tombstones, packed=False)
        assert sum(len(r) for r in expected) > 200
        assert runs(recs, tombstones, packed=True) == expected


def test_the_one_librdkafka_of_the_process_is_found(tmp_path: Path) -> None:
    lib = "/x/confluent_kafka.libs/librdkafka-0cb94173.so.1"
    maps = tmp_path / "maps"
    head = "7f00-7f01 r-xp 00000000 08:01 42"
    maps.write_text(f"{head} {lib}\n{head} {lib}\n7f02-7f03 rw-p 00000000 00:00 0 \n{head} /x/libc.so.6\n")
    assert librdkafka_path(maps) == lib
    maps.write_text(f"{head} {lib}\n{head} /usr/lib/librdkafka.so.1\n")
    assert librdkafka_path(maps) is None  # two copies: which one is the producer's is not known
    assert librdkafka_path(tmp_path / "absent") is None
    assert librdkafka_path() is not None  # this process: confluent_kafka's


@pytest.fixture(scope="module")
def mock_bootstrap() -> Iterator[str]:
    host = Producer({"test.mock.num.brokers": 1, "log_level": 2})
    brokers = host.list_topics(timeout=10).brokers.values()
    yield ",".join(f"{b.host}:{b.port}" for b in brokers)
    host.close()


def stored(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "log_level": 2,
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        remaining, out = set(partitions), []
        while remaining:
            message = consumer.poll(10)
            assert message is not None, f"no end of {topic} in sight"
            if message.error():
                assert message.error().code() == KafkaError._PARTITION_EOF
                remaining.discard(message.partition())
            else:
                out.append((message.partition(), message.key(), message.value()))
        return sorted(out, key=lambda m: m[0])  # a partition's messages stay in their order
    finally:
        consumer.close()


def test_librdkafka_stores_what_produce_batch_stored(mock_bootstrap: str) -> None:
    recs = transactions(3, 300)
    encoder = EnvelopeEncoder("p")
    maker = message_maker(KafkaStreamConfig(bootstrap_servers="x:1"))
    packs: list[PackedMessages] = []
    i = 0
    while i < len(recs):
        run = (
            encoder.transactions(maker, recs, i, 10_000, 123, packed=True)
            if isinstance(recs[i], ChangeEvent)
            else None
        )
        if run is None or run.stop == i:
            i += 1
            continue
        assert not isinstance(run.messages, list)
        packs.append(run.messages)
        i = run.stop
    producer = Producer({"bootstrap.servers": mock_bootstrap, "log_level": 2})
    raw = raw_producer(producer)
    assert raw is not None
    direct, batch = f"d{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
    for pack in packs:
        assert pack.produce(raw, direct, 0) == (len(pack), 0)
        dicts = pack.dicts()
        assert producer.produce_batch(batch, dicts) == len(dicts)
    assert pack.produce(raw, direct, len(pack)) == (0, 0)  # nothing from the end on
    assert producer.flush(10) == 0
    got, expected = stored(mock_bootstrap, direct), stored(mock_bootstrap, batch)
    # keyless messages go to a random partition either way: compare those without it
    assert [m for m in got if m[1] is not None] == [m for m in expected if m[1] is not None]
    assert sorted(m[1:] for m in got if m[1] is None) == sorted(m[1:] for m in expected if m[1] is None)
    assert len(got) == sum(len(p) for p in packs) > 200
    producer.close()
    with pytest.raises(RuntimeError, match="closed"):
        packs[0].produce(raw, direct, 0)  # no use of a destroyed handle


def test_anything_but_a_producer_is_refused() -> None:
    class NotAProducer:
        pass

    assert raw_producer(NotAProducer()) is None  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RawProducer(Producer({"log_level": 2}), 0, 0, 0, 0)


class CountingEvent(ChangeEvent):
    """A ChangeEvent whose every attribute read through getattr is counted."""

    __slots__ = ()
    reads = 0

    def __getattribute__(self, name: str) -> object:
        CountingEvent.reads += 1
        return object.__getattribute__(self, name)


def test_fields_are_read_from_their_slots_with_the_same_bytes() -> None:
    recs = transactions(5, 300)
    counted: list[SourceRecord] = [
        CountingEvent(r.op, r.schema, r.key, r.before, r.after, r.position, r.source_ts_ms, r.transaction_id)
        if isinstance(r, ChangeEvent)
        else r
        for r in recs
    ]
    config = KafkaStreamConfig(bootstrap_servers="x:1")
    ops = [(op, op.value.encode()) for op in (Op.CREATE, Op.UPDATE, Op.DELETE, Op.READ)]
    maker = MessageMaker(CountingEvent, ops, Op.READ, Op.DELETE, True, config.max_message_bytes, Position)
    expected: list[Pair] = []
    got: list[Pair] = []
    for records, make, out in ((recs, message_maker(config), expected), (counted, maker, got)):
        encoder = EnvelopeEncoder("p")
        i = 0
        while i < len(records):
            if not isinstance(records[i], ChangeEvent):
                i += 1
                continue
            run = encoder.transactions(make, records, i, 50, 123)
            if run.stop == i:
                i += 1
                continue
            assert isinstance(run.messages, list)
            out.extend((m["key"], m["value"]) for m in run.messages)
            i = run.stop
    assert len(got) > 200 and got == expected
    # one run of a 300-row transaction: only EnvelopeEncoder's own Python reads (its first and last
    # change's template), none per row
    first = next(r for r in counted if isinstance(r, CountingEvent) and r.key is not None)
    assert isinstance(first, CountingEvent)
    rows: list[SourceRecord] = [
        CountingEvent(first.op, first.schema, first.key, first.before, first.after,
                      first.position.at_row(n), first.source_ts_ms, first.transaction_id)
        for n in range(300)
    ]  # fmt: skip
    encoder = EnvelopeEncoder("p")
    encoder.encode_change(rows[0], 123)  # type: ignore[arg-type]
    before = CountingEvent.reads
    run = encoder.transactions(maker, rows, 1, 1_000, 123)
    assert run.changes == 299 and CountingEvent.reads - before < 20


def test_a_full_local_queue_holds_a_packed_run_back_in_order(mock_bootstrap: str) -> None:
    # librdkafka refuses the rest of a batch once its queue is full: the writer waits for room and
    # goes on from the first refused message, so a 3,000-row run through a 50-message queue lands
    # whole and in order
    pipeline = f"m{uuid.uuid4().hex[:8]}"
    cfg = mock_config(mock_bootstrap, properties={"log_level": "2", "queue.buffering.max.messages": "50"})
    w = KafkaStreamWriter(cfg, pipeline, 8400, topic_admin=StaticAdmin())
    w.start()
    w.begin()
    records: list[SourceRecord] = [*mock_transaction(1, 2), *mock_transaction(2, 3_000, first_id=10)]
    assert w.write_transactions(records, 0, 10_000).stop == 2  # the first: per row (the schema)
    w.write(records[2])
    run = w.write_transactions(records, 3, 10_000)
    assert run.stop == len(records) and isinstance(run.messages, PackedMessages) and w._raw is not None
    end = records[-1]
    assert isinstance(end, TransactionEnd)
    w.commit(end.restart)
    w.close()
    stored = committed_messages(mock_bootstrap, f"{pipeline}.db.t")
    assert sorted(value["after"]["id"] for _, value in stored) == [0, 1, *range(10, 3_010)]
    for partition in {p for p, _ in stored}:  # each partition in the run's order
        ids = [value["after"]["id"] for p, value in stored if p == partition]
        assert ids == sorted(ids)


def test_the_direct_path_is_taken_here_and_only_for_checked_releases() -> None:
    """In this environment the writer's runs go straight into librdkafka (a silent fallback to
    produce_batch would be noticed here); a confluent_kafka release whose Handle struct was not
    read keeps produce_batch."""
    from cdc.stream.raw_produce import checked_release

    producer = Producer({"log_level": 2})
    assert raw_producer(producer) is not None
    assert checked_release("2.6.0") and checked_release("2.16.1")
    assert not checked_release("2.5.3") and not checked_release("2.17.0") and not checked_release("3.0.0")
    assert not checked_release("dev")
