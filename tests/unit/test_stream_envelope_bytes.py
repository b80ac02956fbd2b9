"""The spliced-bytes fast path of EnvelopeEncoder.encode gives the same JSON as the envelope dict."""

from __future__ import annotations

import datetime as dt
import decimal

import orjson

from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.envelope import EnvelopeEncoder, dumps

SCHEMA = TableSchema.build(
    TableRef("shop", "orders"),
    (
        Column("id", "bigint unsigned", ArrowType(ArrowKind.UINT64), False),
        Column("amount", "decimal(12,2)", ArrowType(ArrowKind.DECIMAL, 12, 2)),
        Column("note", "text", ArrowType(ArrowKind.STRING)),
        Column("at", "datetime(6)", ArrowType(ArrowKind.TIMESTAMP)),
    ),
    ("id",),
)


def events() -> list[ChangeEvent]:
    out = []
    for t, (file, offset) in enumerate((("bin.000001", 4), ("bin.000001", 900), ("bin.999999", 7))):
        start = Position(Gtid(0, 1, t + 1), file, offset)
        for r, op in enumerate((Op.CREATE, Op.UPDATE, Op.DELETE, Op.READ, Op.TRUNCATE)):
            row = (
                18446744073709551615 - r,
                decimal.Decimal("-0.05"),
                "é \N{GRINNING FACE}",
                dt.datetime(2024, 2, 29, 1, 2, 3, 4),
            )
            before = None if op in (Op.CREATE, Op.READ, Op.TRUNCATE) else row
            after = None if op in (Op.DELETE, Op.TRUNCATE) else row
            key = None if op is Op.TRUNCATE else (row[0],)
            out.append(
                ChangeEvent(
                    op, SCHEMA, key, before, after, start.at_row(r), 1_700_000_000_000 + t, str(start.gtid)
                )
            )
    return out


def test_fast_path_equals_the_envelope_dict() -> None:
    encoder = EnvelopeEncoder("p")
    for event in events():
        _key, value = encoder.encode(event, None, 123)
        assert orjson.loads(value) == orjson.loads(dumps(encoder.value(event, None, 123)))
        assert orjson.loads(value)["source"]["position"] == event.position.to_string()
