"""The compiled row encoder (native/headwater_native) against the pure-Python encoder, byte for byte.

The reference is tests/support/speedcap_envelope_reference.py, a frozen copy of the envelope encoder
as it was before the compiled part: random events over every column kind (control characters,
surrogate escapes, 64-bit extremes, floats, every fsp, zones, zero dates kept as text), keyed and
keyless tables, every op, single- and multi-row transactions and a later era must give the same key
and value bytes.
"""

from __future__ import annotations

import datetime as dt
import decimal
import random

import pytest
from headwater_native import RowPlan

from cdc.core.events import ChangeEvent, ColumnValue, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.envelope import EnvelopeEncoder
from cdc.stream.json_values import row_encoder
from cdc.stream.native_rows import dumps, row_plan
from tests.support.speedcap_envelope_reference import EnvelopeEncoder as ReferenceEncoder

_TEXT = ['"', "\\", "\b", "\t", "\n", "\f", "\r", "\x00", "\x01", "\x1f", "\x7f", "a", "Z", " ", "/",
         "é", "\u2028", "\u2029", "\N{GRINNING FACE}", "\udcff", "\ufffd", "漢"]  # fmt: skip
_UTC2 = dt.timezone(dt.timedelta(hours=2))


class _Dec(decimal.Decimal):
    """A subclass: its str() might differ, so it goes to the Python path."""

    def __str__(self) -> str:
        return "not used"


COLUMNS = (
    Column("id", "bigint unsigned", ArrowType(ArrowKind.UINT64), False),
    Column("flag", "tinyint(1)", ArrowType(ArrowKind.BOOL)),
    Column("small", "smallint", ArrowType(ArrowKind.INT16)),
    Column("big", "bigint", ArrowType(ArrowKind.INT64)),
    Column("ratio", "double", ArrowType(ArrowKind.FLOAT64)),
    Column("amount", "decimal(12,3)", ArrowType(ArrowKind.DECIMAL, 12, 3)),
    Column("note", "text", ArrowType(ArrowKind.STRING)),
    Column("title", "varbinary(255)", ArrowType(ArrowKind.BINARY)),
    Column("day", "date", ArrowType(ArrowKind.DATE)),
    *(Column(f"at{fsp}", f"datetime({fsp})", ArrowType(ArrowKind.TIMESTAMP)) for fsp in range(7)),
    *(Column(f"ts{fsp}", f"timestamp({fsp})", ArrowType(ArrowKind.TIMESTAMP_UTC)) for fsp in (0, 3, 6)),
    Column("span", "time(3)", ArrowType(ArrowKind.DURATION)),
    Column('odd "name"\n', "int", ArrowType(ArrowKind.INT32)),
)


def _value(rng: random.Random, column: Column) -> ColumnValue:
    kind = column.arrow_type.kind
    if column.nullable and rng.random() < 0.15:
        return None
    if kind is ArrowKind.BOOL:
        return rng.random() < 0.5
    if kind is ArrowKind.UINT64:
        return rng.choice((0, 1, 2**63, 2**64 - 1, rng.randrange(2**64)))
    if kind is ArrowKind.INT16:
        return rng.randrange(-(2**15), 2**15)
    if kind in (ArrowKind.INT64, ArrowKind.INT32):
        return rng.choice((-(2**63), 2**63 - 1, 0, -1, rng.randrange(-(2**31), 2**31)))
    if kind is ArrowKind.FLOAT64:
        return rng.choice((0.1, -0.0, 1e16, 1e-7, 123456.789, float(rng.randrange(10**6)) / 7))
    if kind is ArrowKind.DECIMAL:
        odd = (decimal.Decimal(1).scaleb(-10), decimal.Decimal("1E+2"), decimal.Decimal("-0.000"),
               decimal.Decimal("NaN"), _Dec("2.50"), "0.00")  # fmt: skip
        if rng.random() < 0.2:
            return rng.choice(odd)
        return decimal.Decimal(rng.randrange(-(10**12), 10**12)).scaleb(-3)
    if kind is ArrowKind.STRING:
        return "".join(rng.choice(_TEXT) for _ in range(rng.randrange(0, 12)))
    if kind is ArrowKind.BINARY:
        if rng.random() < 0.05:
            return "kept as text"
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 8)))
    if kind is ArrowKind.DATE:
        return "0000-00-00" if rng.random() < 0.05 else dt.date(rng.randrange(1, 10000), 2, 28)
    if kind in (ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC):
        if rng.random() < 0.05:
            return "0000-00-00 00:00:00"
        micro = rng.choice((0, 500_000, 120_000, 4, rng.randrange(10**6)))
        value = dt.datetime(rng.randrange(1, 10000), rng.randrange(1, 13), 28, rng.randrange(24),
                            rng.randrange(60), rng.randrange(60), micro)  # fmt: skip
        if kind is ArrowKind.TIMESTAMP_UTC:
            value = value.replace(tzinfo=rng.choice((None, dt.UTC, _UTC2)))
        return value
    if kind is ArrowKind.DURATION:
        return dt.timedelta(microseconds=rng.randrange(-(839 * 3600 * 10**6), 839 * 3600 * 10**6))
    return rng.randrange(-(2**31), 2**31)


def _events(seed: int) -> list[ChangeEvent]:
    rng = random.Random(seed)
    keyed = TableSchema.build(TableRef("shop", "orders"), COLUMNS, ("id", "note"))
    keyless = TableSchema.build(TableRef("shop", "log"), COLUMNS, ())
    out: list[ChangeEvent] = []
    offset = 4
    for t in range(60):
        era = rng.choice((0, 0, 1, 12))
        start = Position(Gtid(0, 7, t + 1), f"bin.{rng.randrange(1, 999999):06d}", offset, era=era)
        offset += 1000
        txn = f"repair-{t}" if t % 9 == 0 else str(start.gtid)
        for r in range(rng.choice((1, 1, 2, 5))):
            schema = rng.choice((keyed, keyed, keyless))
            op = rng.choice((Op.CREATE, Op.UPDATE, Op.DELETE, Op.READ, Op.TRUNCATE))
            row = tuple(_value(rng, c) for c in schema.columns)
            other = tuple(_value(rng, c) for c in schema.columns)
            before = None if op in (Op.CREATE, Op.READ, Op.TRUNCATE) else other
            after = None if op in (Op.DELETE, Op.TRUNCATE) else row
            key = None
            if schema is keyed and op is not Op.TRUNCATE and rng.random() < 0.7:
                image = after if after is not None else before
                assert image is not None
                key = (image[0], image[6])
            position = start.at_row(r)
            out.append(ChangeEvent(op, schema, key, before, after, position, 1_700_000_000_000 + t, txn))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_envelope_bytes_equal_the_python_encoder(seed: int) -> None:
    ours, reference = EnvelopeEncoder("pipe"), ReferenceEncoder("pipe")
    for event in _events(seed):
        assert ours.encode(event, None, 1234) == reference.encode(event, None, 1234), event.position


def test_row_plan_equals_dumps_of_the_row_dict() -> None:
    rng = random.Random(99)
    plan, python = row_plan(COLUMNS), row_encoder(COLUMNS)
    for _ in range(3000):
        row = tuple(_value(rng, c) for c in COLUMNS)
        assert plan.encode(row) == dumps(python(row)), row


def test_every_control_character_and_byte_length() -> None:
    columns = (
        Column("s", "text", ArrowType(ArrowKind.STRING)),
        Column("b", "blob", ArrowType(ArrowKind.BINARY)),
    )
    plan, python = row_plan(columns), row_encoder(columns)
    for code in range(0x110000):
        if code >= 0x800 and code % 997 and not 0xD800 <= code < 0xE000:  # sample past 2-byte UTF-8
            continue
        if 0xD800 <= code < 0xE000 and not 0xDC80 <= code < 0xDD00:  # only surrogate escapes occur
            continue
        row = (chr(code), bytes(range(code % 9)))
        assert plan.encode(row) == dumps(python(row)), hex(code)


def test_values_the_python_path_refuses_are_refused_too() -> None:
    plan = row_plan((Column("n", "bigint", ArrowType(ArrowKind.INT64)),))
    with pytest.raises(TypeError):  # orjson: Integer exceeds 64-bit range
        plan.encode((2**64,))
    with pytest.raises(TypeError):  # a Decimal in a non-decimal column is not JSON
        plan.encode((decimal.Decimal(1),))
    with pytest.raises(ValueError, match="row image has 2 values for 1 columns"):
        plan.encode((1, 2))


def test_plan_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="one entry per column"):
        RowPlan([b"{"], [0, 0], [0], [dumps])
    with pytest.raises(ValueError, match="unknown value kind 9"):
        RowPlan([b"{"], [9], [0], [dumps])
    with pytest.raises(TypeError, match="must return bytes"):
        RowPlan([b'{"a":'], [4], [0], [str]).encode((1,))
    assert RowPlan([], [], [], []).encode(()) == b"{}"
