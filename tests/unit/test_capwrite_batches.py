"""The writer's compiled run path (kafka_batches, headwater_native.MessageMaker) gives, message for
message and byte for byte, what the per-row path (EnvelopeEncoder.encode_change, tombstones) gives."""

from __future__ import annotations

import datetime as dt
import decimal

from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, RowImage, SourceRecord, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.envelope import EnvelopeEncoder
from cdc.stream.kafka_batches import message_maker

COLUMNS = (
    Column("id", "bigint unsigned", ArrowType(ArrowKind.UINT64), False),
    Column("amount", "decimal(12,2)", ArrowType(ArrowKind.DECIMAL, 12, 2)),
    Column("note", "text", ArrowType(ArrowKind.STRING)),
    Column("at", "datetime(6)", ArrowType(ArrowKind.TIMESTAMP)),
    Column("score", "double", ArrowType(ArrowKind.FLOAT64)),
)
KEYED = TableSchema.build(TableRef("shop", "orders"), COLUMNS, ("id",))
KEYLESS = TableSchema.build(TableRef("shop", "log"), COLUMNS, ())

Message = tuple[bytes | None, bytes | None]


def row(n: int) -> RowImage:
    note = "é \N{GRINNING FACE}" if n % 3 else "bad \udcff text"  # surrogate escape: the fallback
    return (
        n,
        decimal.Decimal("-0.05"),
        note,
        dt.datetime(2024, 2, 29, 1, 2, 3, n),
        float("nan") if n == 4 else 0.5,
    )


def records() -> list[SourceRecord]:
    """Transactions whose runs break at every point a run may break: table, op kind, timestamp,
    truncate, a keyed row without its key, a transaction end, another era's position."""
    out: list[SourceRecord] = []
    for t, (file, offset, era) in enumerate(
        (("bin.000001", 4, 0), ("bin.000002", 900, 0), ("bin.000003", 7, 2))
    ):
        start = Position(Gtid(0, 1, t + 1), file, offset, 0, era)
        gtid = str(start.gtid)
        plan = [
            (Op.CREATE, KEYED, 1), (Op.CREATE, KEYED, 1), (Op.UPDATE, KEYED, 1), (Op.DELETE, KEYED, 1),
            (Op.DELETE, KEYED, 2), (Op.CREATE, KEYLESS, 2), (Op.DELETE, KEYLESS, 2), (Op.READ, KEYED, 2),
            (Op.READ, KEYED, 2), (Op.CREATE, KEYED, 2), (Op.TRUNCATE, KEYED, 2), (Op.CREATE, KEYED, 2),
            (Op.UPDATE, KEYED, 2), (Op.CREATE, KEYED, 2),
        ]  # fmt: skip
        for r, (op, schema, ts) in enumerate(plan):
            image = row(r)
            before = image if op in (Op.UPDATE, Op.DELETE) else None
            after = image if op in (Op.CREATE, Op.UPDATE, Op.READ) else None
            key = None if op is Op.TRUNCATE or schema is KEYLESS or r == 11 else (image[0],)
            if op is Op.TRUNCATE:
                before = after = None
            out.append(
                ChangeEvent(op, schema, key, before, after, start.at_row(r), 1_700_000_000_000 + ts, gtid)
            )
        out.append(TransactionEnd(gtid, start.at_row(len(plan) - 1), len(plan), 1_700_000_000_002))
    return out


def per_row(config: KafkaStreamConfig, recs: list[SourceRecord]) -> list[Message]:
    encoder = EnvelopeEncoder("p")
    out: list[Message] = []
    for record in recs:
        if isinstance(record, ChangeEvent):
            key, value = encoder.encode_change(record, 123)
            out.append((key, value))
            if record.op is Op.DELETE and config.tombstones_on_delete:
                out.append((key, None))
    return out


def by_runs(config: KafkaStreamConfig, recs: list[SourceRecord]) -> tuple[list[Message], int]:
    """What KafkaStreamWriter.write_changes does with the same records (without Kafka)."""
    encoder = EnvelopeEncoder("p")
    maker = message_maker(config)
    out: list[Message] = []
    compiled = 0
    i = 0
    while i < len(recs):
        record = recs[i]
        if not isinstance(record, ChangeEvent):
            i += 1
            continue
        stop, messages = encoder.messages(maker, recs, i, 123)
        if stop == i:
            key, value = encoder.encode_change(record, 123)
            out.append((key, value))
            if record.op is Op.DELETE and config.tombstones_on_delete:
                out.append((key, None))
            i += 1
            continue
        compiled += stop - i
        out.extend((m["key"], m["value"]) for m in messages)
        i = stop
    return out, compiled


def test_runs_give_the_per_row_bytes() -> None:
    for tombstones in (True, False):
        config = KafkaStreamConfig(bootstrap_servers="127.0.0.1:1", tombstones_on_delete=tombstones)
        recs = records()
        expected = per_row(config, recs)
        got, compiled = by_runs(config, recs)
        assert got == expected
        assert compiled >= 12  # the rows after each run's first went the compiled way


def test_a_long_run_is_one_call() -> None:
    config = KafkaStreamConfig(bootstrap_servers="127.0.0.1:1")
    start = Position(Gtid(0, 1, 9), "bin.000001", 4)
    recs: list[SourceRecord] = [
        ChangeEvent(Op.CREATE, KEYED, (n,), None, row(n), start.at_row(n), 1, "0-1-9") for n in range(1000)
    ]
    expected = per_row(config, recs)
    encoder = EnvelopeEncoder("p")
    first = recs[0]
    assert isinstance(first, ChangeEvent)
    assert encoder.encode_change(first, 123) == expected[0]  # the first row sets up the template
    stop, messages = encoder.messages(message_maker(config), recs, 1, 123)
    assert stop == 1000
    assert [(m["key"], m["value"]) for m in messages] == expected[1:]


def test_a_value_over_the_limit_is_left_to_the_per_row_path() -> None:
    """The run stops before it, so the writer's per-row path raises MessageTooLarge naming it."""
    start = Position(Gtid(0, 1, 9), "bin.000001", 4)
    recs: list[SourceRecord] = [
        ChangeEvent(Op.CREATE, KEYED, (n,), None, row(n), start.at_row(n), 1, "0-1-9") for n in range(5)
    ]
    big: RowImage = (7, decimal.Decimal(1), "x" * 1_100_000, dt.datetime(2024, 1, 1), 0.5)
    recs[3] = ChangeEvent(Op.CREATE, KEYED, (7,), None, big, start.at_row(3), 1, "0-1-9")
    config = KafkaStreamConfig(bootstrap_servers="127.0.0.1:1", max_message_bytes=1_048_576)
    encoder = EnvelopeEncoder("p")
    first = recs[0]
    assert isinstance(first, ChangeEvent)
    encoder.encode_change(first, 123)
    stop, messages = encoder.messages(message_maker(config), recs, 1, 123)
    assert (stop, len(messages)) == (3, 2)
