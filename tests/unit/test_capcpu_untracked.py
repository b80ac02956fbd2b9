"""The compiled decoder's per-row objects stay out of the cycle collector's lists (events.rs
``untrack_if_atomic`` / ``untrack_frozen``): a row image, its key and ``Position._key`` when no
item is a tracked container, and the row's frozen ``Position`` and ``ChangeEvent``. A young
collection of a capture then walks none of the rows the hand-over queue holds. Untracked objects
are still freed by reference counting, compare and hash as before, and an image that holds a
container stays tracked. And the writer's side of capcpu's changes: ``transactions_packed``'s
partition argument (0 for a one-partition topic, else the producer's partitioner), values written
straight into the run's buffer, and write_str's eight-bytes-at-a-time scan."""

from __future__ import annotations

import gc
import json
import random
import sys
import uuid
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Producer

from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, SourceRecord, TransactionEnd
from cdc.core.positions import Gtid, GtidState, Position, ReadContext
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.sources.mariadb.binlog_format import FieldType as T
from cdc.sources.mariadb.native_rows import EVENT_MAKER, native_decoders
from cdc.sources.mariadb.row_decoder import DecoderOptions
from cdc.sources.mariadb.table_map import ColumnSpec, TableMap
from cdc.sources.mariadb.value_codecs import ZeroDatePolicy
from cdc.stream.envelope import EnvelopeEncoder
from cdc.stream.kafka_batches import message_maker
from cdc.stream.raw_produce import PackedMessages, raw_producer
from tests.unit.test_capbulk_packed import stored
from tests.unit.test_capture_transaction_runs import transactions
from tests.unit.test_capwrite_batches import KEYED

Pair = tuple[bytes | None, bytes | None]
CHARSETS = {45: "utf8mb4", 63: "binary"}


def _schema() -> TableSchema:
    return TableSchema.build(
        TableRef("db", "t"),
        tuple(Column(n, "int", ArrowType(ArrowKind.INT64)) for n in ("a", "b", "c")),
        ("a",),
    )


def _tx_pos() -> Position:
    context = ReadContext(7, GtidState.parse("0-7-41"))
    return Position(Gtid(0, 7, 42), "mariadb-bin.000003", 1234, 0, 0, context)


def _decoded(cols: list[ColumnSpec], row: bytes, count: int) -> list[tuple[object, ...]]:
    tm = TableMap(1, "db", "t", tuple(cols), (0,), True)
    rows, _ = native_decoders(tm, CHARSETS.__getitem__, DecoderOptions(ZeroDatePolicy.NULL, ()))
    data = row * count
    return list(rows(data, 0, len(data)))


def test_row_images_of_atomic_values_are_untracked() -> None:
    cols = [ColumnSpec("id", T.LONGLONG, 0, False), ColumnSpec("vc", T.VARCHAR, 40, True, collation=45)]
    # null bitmap (none null), id 7, varchar "abc"
    row = b"\x00" + (7).to_bytes(8, "little") + b"\x03abc"
    images = _decoded(cols, row, 3)
    assert images == [(7, "abc")] * 3
    assert not any(gc.is_tracked(image) for image in images)


def test_a_key_holding_a_container_stays_tracked() -> None:
    # no column decodes to a container (a SET is text), but the check is per item, not per column
    schema, tx_pos = _schema(), _tx_pos()
    images = [([1], "x", None), (2, "y", None)]
    first, second = EVENT_MAKER.changes(Op.CREATE, schema, [0], True, images, tx_pos, 0, 1, "0-7-42")
    assert first.key == ([1],) and gc.is_tracked(first.key)
    assert second.key == (2,) and not gc.is_tracked(second.key)


@pytest.mark.parametrize("op", [Op.CREATE, Op.DELETE])
def test_change_events_and_positions_are_untracked(op: Op) -> None:
    schema, tx_pos = _schema(), _tx_pos()
    images = [(i, f"v{i}", None) for i in range(300, 305)]
    made = EVENT_MAKER.changes(op, schema, [0], op is Op.CREATE, images, tx_pos, 3, 99, "0-7-42")
    assert len(made) == 5
    for i, event in enumerate(made):
        assert type(event) is ChangeEvent and type(event.position) is Position
        assert not gc.is_tracked(event) and not gc.is_tracked(event.position)
        assert not gc.is_tracked(event.key) and not gc.is_tracked(event.position._key)
        assert event.key == (300 + i,)
        assert event.position == tx_pos.at_row(3 + i) and hash(event.position) == hash(tx_pos.at_row(3 + i))


def test_untracked_rows_are_freed_and_survive_collections() -> None:
    schema, tx_pos = _schema(), _tx_pos()
    images = [(i, "x", None) for i in range(1000, 1100)]
    held = [EVENT_MAKER.changes(Op.CREATE, schema, [0], True, images, tx_pos, 0, 1, "0-7-42")]
    gc.collect()
    events = held[0]
    assert [e.after for e in events] == images
    assert [e.position.row for e in events] == list(range(100))
    # freed by reference counting: the last reference to an image goes with its event
    image = events[0].after
    before = sys.getrefcount(image)
    del held, events
    assert sys.getrefcount(image) == before - 1


def _packs(partition: int) -> list[PackedMessages]:
    recs = transactions(3, 300)
    encoder = EnvelopeEncoder("p")
    maker = message_maker(KafkaStreamConfig(bootstrap_servers="x:1"))
    packs: list[PackedMessages] = []
    i = 0
    while i < len(recs):
        if not isinstance(recs[i], ChangeEvent):
            i += 1
            continue
        run = encoder.transactions(maker, recs, i, 10_000, 123, packed=True, partition=partition)
        if run.stop == i:
            i += 1
            continue
        assert isinstance(run.messages, PackedMessages)
        packs.append(run.messages)
        i = run.stop
    return packs


@pytest.fixture(scope="module")
def mock_bootstrap() -> Iterator[str]:
    host = Producer({"test.mock.num.brokers": 1, "log_level": 2})
    brokers = host.list_topics(timeout=10).brokers.values()
    yield ",".join(f"{b.host}:{b.port}" for b in brokers)
    host.close()


def test_a_one_partition_run_names_partition_0_with_the_same_bytes(mock_bootstrap: str) -> None:
    ours, theirs = _packs(0), _packs(-1)
    assert [p.pairs() for p in ours] == [p.pairs() for p in theirs]
    assert {p.partition for p in ours} == {0} and {p.partition for p in theirs} == {-1}
    with pytest.raises(ValueError, match="partition 3"):
        _packs(3)
    producer = Producer({"bootstrap.servers": mock_bootstrap, "log_level": 2})
    raw = raw_producer(producer)
    assert raw is not None
    topic = f"one{uuid.uuid4().hex[:8]}"
    for pack in ours:
        assert pack.produce(raw, topic, 0) == (len(pack), 0)
    assert producer.flush(10) == 0
    producer.close()
    got = stored(mock_bootstrap, topic)
    assert {m[0] for m in got} == {0}  # all of them, in order, in partition 0
    assert [m[1:] for m in got] == [pair for pack in ours for pair in pack.pairs()]


def _stops_and_messages(recs: list[SourceRecord], packed: bool) -> tuple[list[int], list[Pair]]:
    maker = message_maker(KafkaStreamConfig(bootstrap_servers="x:1", max_message_bytes=1_048_576))
    encoder = EnvelopeEncoder("p")
    got: list[Pair] = []
    i, stops = 0, []
    while i < 4:
        run = encoder.transactions(maker, recs, i, 100, 123, packed=packed)
        stops.append(run.stop)
        if run.stop == i:  # the per-row path's record
            i += 1
            continue
        messages = run.messages
        if isinstance(messages, PackedMessages):
            got += messages.pairs()
        else:
            got += [(m["key"], m["value"]) for m in messages]
        i = run.stop
    return stops, got


def test_a_run_stops_cleanly_before_an_oversized_or_keyless_change() -> None:
    """The values are written straight into the run's buffer: a change the run does not take (its
    value over max_message_bytes, or no key object on a keyed table) leaves nothing of it there."""
    start = Position(Gtid(0, 1, 9), "bin.000001", 4)
    recs: list[SourceRecord] = []
    for r, (note, keyed) in enumerate([("a", True), ("b" * 1_100_000, True), ("c", True), ("d", False)]):
        image = (r + 1, None, note, None, 0.5)
        key = (r + 1,) if keyed else None
        recs.append(ChangeEvent(Op.CREATE, KEYED, key, None, image, start.at_row(r), 7, "0-1-9"))
    recs.append(TransactionEnd("0-1-9", start.at_row(3), 4, 7))
    stops, packed = _stops_and_messages(recs, True)
    assert (stops, packed) == _stops_and_messages(recs, False)
    assert stops == [1, 1, 3, 3]  # stopped before the oversized change and before the keyless one
    assert [k for k, _ in packed] == [b'{"id":1}', b'{"id":3}']
    assert [json.loads(v or b"")["after"]["note"] for _, v in packed] == ["a", "c"]


def test_strings_are_escaped_as_orjson_does_at_every_offset() -> None:
    """write_str takes eight bytes at a time while none needs an escape: a character that does, at
    any offset of a word and in strings of every length around the words' ends, is escaped as
    orjson escapes it."""
    encoder = EnvelopeEncoder("p")
    position = Position(Gtid(0, 1, 1), "bin.000001", 4)
    specials = [chr(c) for c in range(0x20)] + ['"', "\\", "\x7f", "\u2028", "é", "\N{GRINNING FACE}"]
    rng = random.Random(11)
    texts = [
        "a" * offset + special + "b" * tail
        for special in specials
        for offset in range(10)
        for tail in (0, 1, 7, 8, 9)
    ]
    texts += [
        "".join(rng.choice(specials + list("abcdefgh")) for _ in range(rng.randrange(40))) for _ in range(500)
    ]
    for k, text in enumerate(texts):
        image = (k, None, text, None, 0.5)
        event = ChangeEvent(Op.CREATE, KEYED, (k,), None, image, position, 7, "0-1-1")
        _key, value = encoder.encode_change(event)
        assert value is not None and orjson.dumps(text) in value, text
        assert json.loads(value)["after"]["note"] == text
