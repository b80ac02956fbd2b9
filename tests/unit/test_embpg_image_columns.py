"""Embedded mode's columns made by the compiled ``image_columns`` (native/headwater_native/src/
image_columns.rs) equal the Python path's (``pa.array`` over the transposed values), array for
array, JSON image included; and the compiled path refuses a chunk exactly where the Python path
does. Every column kind the Python path handles, with each kind's edges and nulls."""

from __future__ import annotations

import datetime as dt
import decimal
import random
from collections.abc import Iterator

import pytest
from headwater_native import image_columns

import cdc.daemon.embedded_columns as ec
from cdc.core.events import ChangeEvent, ColumnValue, Op
from cdc.core.positions import Gtid, Position, lsn_position
from cdc.core.schemas import INTEGER_RANGES, ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.arrow_changes import ChangeColumns


def _col(name: str, kind: ArrowKind, precision: int = 0, scale: int = 0) -> Column:
    return Column(name, kind.value, ArrowType(kind, precision, scale), True)


KINDS = (
    ArrowKind.BOOL,
    ArrowKind.INT8,
    ArrowKind.INT16,
    ArrowKind.INT32,
    ArrowKind.INT64,
    ArrowKind.UINT8,
    ArrowKind.UINT16,
    ArrowKind.UINT32,
    ArrowKind.UINT64,
    ArrowKind.FLOAT32,
    ArrowKind.FLOAT64,
    ArrowKind.DECIMAL,
    ArrowKind.STRING,
    ArrowKind.BINARY,
    ArrowKind.DATE,
    ArrowKind.TIMESTAMP,
    ArrowKind.TIMESTAMP_UTC,
)
ALL = TableSchema.build(
    TableRef("embpg", "all"),
    (
        Column("id", "bigint", ArrowType(ArrowKind.INT64), False),
        *(_col(k.name.lower(), k, 10 if k is ArrowKind.DECIMAL else 0, 4) for k in KINDS),
    ),
    ("id",),
)
_INT_RANGES = INTEGER_RANGES  # what a column of each integer kind can hold
_TEXTS = ("", "a", 'naïve ✓ "q" \\ \n', "日本語", "emoji 🎉", "\x00nul", "x" * 300)
_BYTES = (b"", b"\x00", b"\xff\xfe", bytes(range(256)), b"=" * 40)


def _value(kind: ArrowKind, rng: random.Random) -> ColumnValue:
    if rng.random() < 0.2:
        return None
    if kind in _INT_RANGES:
        lo, hi = _INT_RANGES[kind]
        return rng.choice((lo, hi, 0, 1, rng.randint(lo, hi)))
    if kind is ArrowKind.BOOL:
        return rng.random() < 0.5
    if kind is ArrowKind.FLOAT32:  # (a double past float32's range is infinite there: refused)
        return rng.choice((0.0, -0.0, 1.5, 1e-45, rng.uniform(-1e6, 1e6)))
    if kind is ArrowKind.FLOAT64:
        return rng.choice((0.0, -0.0, 1.5, -1e300, 5e-324, rng.uniform(-1e6, 1e6)))
    if kind is ArrowKind.DECIMAL:
        return decimal.Decimal(rng.randint(-(10**10) + 1, 10**10 - 1)).scaleb(-4)
    if kind is ArrowKind.STRING:
        return rng.choice(_TEXTS)
    if kind is ArrowKind.BINARY:
        return rng.choice(_BYTES)
    if kind is ArrowKind.DATE:
        return rng.choice(
            (dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1970, 1, 1), dt.date(2024, 2, 29))
        )
    if kind is ArrowKind.TIMESTAMP:
        return rng.choice(
            (
                dt.datetime(1, 1, 1),
                dt.datetime(9999, 12, 31, 23, 59, 59, 999_999),
                dt.datetime(1969, 12, 31, 23, 59, 59, 1),
                dt.datetime(2024, 2, 29, 12, 30, 15, rng.randint(0, 999_999)),
            )
        )
    return dt.datetime(2024, 6, 1, 12, 0, 0, rng.randint(0, 999) * 1000, tzinfo=dt.UTC)


def _row(i: int, rng: random.Random) -> tuple[ColumnValue, ...]:
    return (i, *(_value(k, rng) for k in KINDS))


def _pos(row: int) -> Position:
    return Position(Gtid(0, 7, 11), "bin.000004", 4000, row)


def _events(rows: list[tuple[ColumnValue, ...]]) -> list[ChangeEvent]:
    return [
        ChangeEvent(Op.CREATE, ALL, (r[0],), None, r, _pos(i), 1_700_000_000_000, "0-7-11")
        for i, r in enumerate(rows)
    ]


def _python_path(events: list[ChangeEvent], monkeypatch: pytest.MonkeyPatch) -> ChangeColumns | None:
    with monkeypatch.context() as m:
        m.setattr(ec, "_image_columns", None)
        m.setattr(ec, "_shapes", {})
        return ec.events_as_columns(events)


def _compiled_path(events: list[ChangeEvent], monkeypatch: pytest.MonkeyPatch) -> ChangeColumns | None:
    with monkeypatch.context() as m:
        m.setattr(ec, "_shapes", {})
        shape = ec._shape(ALL)
        assert shape is not None and sum(1 for c in shape.codes if c) == 15  # all but float32, decimal
        return ec.events_as_columns(events)


def _same(ours: ChangeColumns | None, theirs: ChangeColumns | None) -> None:
    assert ours is not None and theirs is not None
    for name in ("op", "position", "source_ts_ms", "transaction_id"):
        assert getattr(ours, name).equals(getattr(theirs, name)), name
    for i, column in enumerate(ALL.columns):
        assert ours.image[i].type == theirs.image[i].type, column.name
        assert ours.image[i].null_count == theirs.image[i].null_count, column.name
        assert ours.image[i].equals(theirs.image[i]), column.name
        assert ours.image[i].to_pylist() == theirs.image[i].to_pylist(), column.name
        assert ours.json_image[i].equals(theirs.json_image[i]), column.name


@pytest.mark.parametrize("seed", range(8))
def test_compiled_columns_equal_the_python_paths(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    events = _events([_row(i, rng) for i in range(rng.choice((1, 7, 8, 9, 300)))])
    _same(_compiled_path(events, monkeypatch), _python_path(events, monkeypatch))


def test_columns_without_a_null_and_all_null(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(99)
    full = []
    for i in range(20):
        values = [_value(k, rng) for k in KINDS]
        while None in values:
            values = [v if v is not None else _value(k, rng) for k, v in zip(KINDS, values, strict=True)]
        full.append((i, *values))
    empty = [(i, *(None for _ in KINDS)) for i in range(20)]
    for rows in (full, empty):
        events = _events(rows)
        _same(_compiled_path(events, monkeypatch), _python_path(events, monkeypatch))


def _bad() -> Iterator[tuple[int, ColumnValue]]:
    """(column index, a value the Python path refuses there)."""
    at = {k: i + 1 for i, k in enumerate(KINDS)}
    for kind, (lo, hi) in _INT_RANGES.items():
        yield at[kind], lo - 1
        yield at[kind], hi + 1
        yield at[kind], True
        yield at[kind], 1.0
    yield at[ArrowKind.BOOL], 1
    yield at[ArrowKind.FLOAT64], float("nan")
    yield at[ArrowKind.FLOAT64], float("-inf")
    yield at[ArrowKind.FLOAT64], 1
    yield at[ArrowKind.STRING], "a\udcff"
    yield at[ArrowKind.STRING], b"bytes"
    yield at[ArrowKind.BINARY], "text"
    yield at[ArrowKind.BINARY], bytearray(b"x")  # type: ignore[misc]
    yield at[ArrowKind.DATE], dt.datetime(2024, 1, 1, 5)
    yield at[ArrowKind.DATE], "2024-01-01"
    yield at[ArrowKind.TIMESTAMP], dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    yield at[ArrowKind.TIMESTAMP], dt.date(2024, 1, 1)


@pytest.mark.parametrize(("index", "value"), list(_bad()))
def test_the_compiled_path_refuses_where_the_python_path_does(
    index: int, value: ColumnValue, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(index)
    rows = [_row(i, rng) for i in range(5)]
    bad = list(rows[3])
    bad[index] = value
    rows[3] = tuple(bad)
    events = _events(rows)
    assert _python_path(events, monkeypatch) is None
    assert _compiled_path(events, monkeypatch) is None


def test_a_column_coded_zero_is_left_to_python_and_a_short_image_is_an_error() -> None:
    made = image_columns([(1, decimal.Decimal(1)), (2, None)], [5, 0])
    assert made is not None and made[1] is None and made[0] is not None
    with pytest.raises(ValueError, match="1 values for 2 columns"):
        image_columns([(1,)], [5, 5])


def _positions() -> list[Position]:
    rng = random.Random(5)
    out = [Position(Gtid(0, 7, 11), "bin.000004", 4000, r) for r in range(3)]
    out += [
        Position(Gtid(2**32 - 1, 2**32 - 1, 2**64 - 1), "mariadb-bin.999999", 2**32 - 1, r)
        for r in (0, 9_999_999_999)
    ]
    out += [
        Position(Gtid(1, 2, 3), "x-y_z.1234567890", 4, r, era=e) for e in (1, 9_999_999_999) for r in (0, 7)
    ]
    out += [
        lsn_position(lsn, r, xid)
        for lsn, xid in ((0, 1), (0x16B374D848, 2**32 - 1), (2**64 - 1, 5))
        for r in (0, 3)
    ]
    out += [lsn_position(2**40, 0, 0, anchor=True)]
    out += [Position(Gtid(0, 1, 1), "odd#ROW#name.000002", 8, r) for r in range(3)]
    out += [
        Position(Gtid(0, 9, s), "bin.000005", 100 + 10 * s, r)
        for s in range(20)
        for r in range(rng.randint(1, 4))
    ]
    return out  # fmt: skip


def test_compiled_position_texts_equal_to_string(monkeypatch: pytest.MonkeyPatch) -> None:
    positions = _positions()
    empty = tuple(None for _ in KINDS)
    events = [ChangeEvent(Op.CREATE, ALL, (i,), None, (i, *empty), p, 1, "") for i, p in enumerate(positions)]
    expected = [p.to_string() for p in positions]
    assert ec.position_texts(events).to_pylist() == expected
    for cut in (1, 2, 7):  # a chunk may start inside a transaction
        assert ec.position_texts(events[cut:]).to_pylist() == expected[cut:]
    with monkeypatch.context() as m:
        m.setattr(ec, "_position_texts", None)
        assert ec.position_texts(events).to_pylist() == expected
