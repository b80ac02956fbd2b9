"""The compiled binary COPY encoder (headwater_native.copy_binary_rows) against the Arrow kernels of
sinks/sql/pg_binary_copy.py, byte for byte: every kind it takes, nulls, sliced and chunked arrays,
extreme values; and the arrays it leaves to the kernels (another storage type) still encode."""

from __future__ import annotations

import datetime as dt
import decimal
import random

import pyarrow as pa
import pytest

from cdc.core.schemas import ArrowKind, ArrowType
from sinks.sql import pg_binary_copy

K = ArrowKind
D = decimal.Decimal
_ROWS = 257


def _both(columns: list[pa.ChunkedArray], types: list[ArrowType], monkeypatch: pytest.MonkeyPatch) -> bytes:
    real = pg_binary_copy._copy_binary_rows
    assert real is not None
    calls: list[int] = []
    with monkeypatch.context() as m:
        m.setattr(pg_binary_copy, "_copy_binary_rows", lambda specs, n: calls.append(n) or real(specs, n))
        compiled = b"".join(bytes(p) for p in pg_binary_copy.rows_binary(columns, types))
    assert calls  # the compiled encoder took it
    with monkeypatch.context() as m:
        m.setattr(pg_binary_copy, "_copy_binary_rows", None)
        kernels = b"".join(bytes(p) for p in pg_binary_copy.rows_binary(columns, types))
    assert compiled == kernels
    return compiled


def _values(kind: ArrowKind, rng: random.Random, arrow: ArrowType) -> list[object]:
    ints = {
        K.INT8: (-(2**7), 2**7 - 1),
        K.UINT8: (0, 2**8 - 1),
        K.INT16: (-(2**15), 2**15 - 1),
        K.UINT16: (0, 2**16 - 1),
        K.INT32: (-(2**31), 2**31 - 1),
        K.UINT32: (0, 2**32 - 1),
        K.INT64: (-(2**63), 2**63 - 1),
        K.UINT64: (0, 2**64 - 1),
    }
    if kind in ints:
        low, high = ints[kind]
        return [low, high, 0, *(rng.randint(low, high) for _ in range(_ROWS - 3))]
    if kind is K.BOOL:
        return [rng.random() < 0.5 for _ in range(_ROWS)]
    if kind is K.DATE:
        base = dt.date(2000, 1, 1)
        return [base + dt.timedelta(days=rng.randint(-400_000, 400_000)) for _ in range(_ROWS)]
    if kind in (K.TIMESTAMP, K.TIMESTAMP_UTC):
        base = dt.datetime(2000, 1, 1)
        tz = dt.UTC if kind is K.TIMESTAMP_UTC else None
        spread = [base + dt.timedelta(microseconds=rng.randint(-(10**16), 10**16)) for _ in range(_ROWS)]
        return [v.replace(tzinfo=tz) for v in spread]
    if kind is K.STRING:
        return ["", "é€😀", *("x" * rng.randint(0, 40) + str(i) for i in range(_ROWS - 2))]
    if kind is K.BINARY:
        return [b"", b"\x00\xff", *(rng.randbytes(rng.randint(0, 40)) for _ in range(_ROWS - 2))]
    top = 10**arrow.precision
    return [
        D(top - 1).scaleb(-arrow.scale),
        D(1 - top).scaleb(-arrow.scale),
        D(0),
        *(D(rng.randrange(1 - top, top)).scaleb(-arrow.scale) for _ in range(_ROWS - 3)),
    ]


_TYPES = [
    ArrowType(K.BOOL),
    *(ArrowType(k) for k in (K.INT8, K.UINT8, K.INT16, K.UINT16, K.INT32, K.UINT32, K.INT64, K.UINT64)),
    ArrowType(K.DATE),
    ArrowType(K.TIMESTAMP),
    ArrowType(K.TIMESTAMP_UTC),
    ArrowType(K.STRING),
    ArrowType(K.BINARY),
    *(
        ArrowType(K.DECIMAL, p, s)
        for p, s in ((18, 6), (5, 2), (7, 7), (18, 0), (1, 0), (10, 4), (18, 18), (3, 1))
    ),
]


@pytest.mark.parametrize("arrow", _TYPES, ids=lambda t: str(t))
@pytest.mark.parametrize("nulls", [False, True])
def test_every_kind_as_the_kernels_give_it(
    arrow: ArrowType, nulls: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(f"{arrow}{nulls}")
    values = _values(arrow.kind, rng, arrow)
    if nulls:
        values = [None if rng.random() < 0.3 else v for v in values]
        values[0] = None
    array = pa.array(values, arrow.to_pyarrow())
    # whole, sliced (an offset into the buffers), in several chunks, a few small values only
    _both([pa.chunked_array([array])], [arrow], monkeypatch)
    _both([pa.chunked_array([array.slice(37, 150)])], [arrow], monkeypatch)
    _both([pa.chunked_array([array.slice(0, 100), array.slice(100)])], [arrow], monkeypatch)
    _both([pa.chunked_array([array.slice(3, 2)])], [arrow], monkeypatch)


def test_a_table_of_every_kind_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    columns, types = [], []
    for arrow in _TYPES:
        values = [None if rng.random() < 0.1 else v for v in _values(arrow.kind, rng, arrow)]
        columns.append(pa.chunked_array([pa.array(values, arrow.to_pyarrow()).slice(5, 200)]))
        types.append(arrow)
    data = _both(columns, types, monkeypatch)
    assert data.startswith(pg_binary_copy.HEADER) and data.endswith(pg_binary_copy.TRAILER)


def test_small_numerics_and_all_null_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    for arrow in (ArrowType(K.DECIMAL, 18, 6), ArrowType(K.UINT64), ArrowType(K.STRING), ArrowType(K.INT32)):
        _both([pa.chunked_array([pa.array([None, None], arrow.to_pyarrow())])], [arrow], monkeypatch)
    for batch in ([D("0.000001"), D("-3")], [D(0)]):
        arrow = ArrowType(K.DECIMAL, 18, 6)
        _both([pa.chunked_array([pa.array(batch, arrow.to_pyarrow())])], [arrow], monkeypatch)


def test_another_storage_type_takes_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large_string column (or any array not of its kind's plain type) is not given to the
    compiled encoder, and encodes as before."""
    calls: list[int] = []
    real = pg_binary_copy._copy_binary_rows
    assert real is not None
    monkeypatch.setattr(
        pg_binary_copy, "_copy_binary_rows", lambda specs, n: calls.append(n) or real(specs, n)
    )
    column = pa.chunked_array([pa.array(["a", None, "bc"], pa.large_string())])
    data = b"".join(bytes(p) for p in pg_binary_copy.rows_binary([column], [ArrowType(K.STRING)]))
    assert calls == []
    assert (
        data
        == pg_binary_copy.HEADER
        + (b"\x00\x01\x00\x00\x00\x01a" + b"\x00\x01\xff\xff\xff\xff" + b"\x00\x01\x00\x00\x00\x02bc")
        + pg_binary_copy.TRAILER
    )
    plain = pa.chunked_array([pa.array(["a", None, "bc"], pa.string())])
    assert b"".join(bytes(p) for p in pg_binary_copy.rows_binary([plain], [ArrowType(K.STRING)])) == data
    assert calls == [3]


def test_buffers_the_encoder_cannot_read_are_refused_not_read() -> None:
    """Offsets out of order, buffers shorter than the rows, an unknown code: ValueError, no read
    past a buffer (the arrays pyarrow makes never are so; arrays made from buffers could be)."""
    real = pg_binary_copy._copy_binary_rows
    assert real is not None
    offsets = pa.py_buffer(b"\x00\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00")
    data = pa.py_buffer(b"abc")
    for spec, n in (
        ((11, 0, None, offsets, data, 0, 0), 2),  # the second row's offsets go backwards
        ((11, 0, None, offsets, data, 0, 0), 5),  # more rows than offsets
        ((11, 0, None, offsets, pa.py_buffer(b"a"), 0, 0), 1),  # past the data
        ((7, 0, None, pa.py_buffer(b"\x00" * 8), None, 0, 0), 2),  # an int64 short of a row
        ((99, 0, None, offsets, data, 0, 0), 1),
        ((13, 0, None, pa.py_buffer(b"\x00" * 16), None, 19, 0), 1),  # a decimal over 18 digits
    ):
        with pytest.raises(ValueError):
            real([spec], n)
