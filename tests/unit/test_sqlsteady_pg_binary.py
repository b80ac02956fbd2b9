"""PostgreSQL's binary COPY from Arrow columns, read back by a decoder of the format's numeric:
every decimal precision and scale up to 18 digits, and uint64, give back their values and scale
(the PostgreSQL round trip of every type is tests/sinks/test_sqlsteady_binary_copy.py)."""

from __future__ import annotations

import decimal
import random
import struct

import pyarrow as pa
import pytest

from cdc.core.schemas import ArrowKind, ArrowType
from sinks.sql.pg_binary_copy import HEADER, TRAILER, rows_binary

D = decimal.Decimal


def _fields(column: pa.Array, arrow: ArrowType) -> list[bytes | None]:
    """Each row's one field (None: NULL), the stream's frame checked."""
    data = b"".join(bytes(piece) for piece in rows_binary([pa.chunked_array([column])], [arrow]))
    assert data.startswith(HEADER) and data.endswith(TRAILER)
    body, at, out = data[len(HEADER) : -len(TRAILER)], 0, []
    while at < len(body):
        assert body[at : at + 2] == b"\x00\x01"
        (size,) = struct.unpack(">i", body[at + 2 : at + 6])
        at += 6
        out.append(None if size == -1 else body[at : at + size])
        at += max(size, 0)
    return out


def _numeric(field: bytes) -> tuple[D, int]:
    count, weight, sign, scale = struct.unpack(">hhHH", field[:8])
    digits = struct.unpack(f">{count}h", field[8:])
    assert len(field) == 8 + 2 * count and all(0 <= d < 10_000 for d in digits)
    value = sum((D(d) * D(10_000) ** (weight - i) for i, d in enumerate(digits)), D(0))
    assert sign in (0, 0x4000)
    return (-value if sign else value), scale


@pytest.mark.parametrize(
    "precision,scale", [(18, 6), (5, 2), (7, 7), (18, 0), (1, 0), (10, 4), (18, 18), (3, 1)]
)
def test_decimals_read_back_as_their_values(precision: int, scale: int) -> None:
    rng = random.Random(precision * 100 + scale)
    top = 10**precision
    values: list[D | None] = [D(rng.randrange(-top + 1, top)).scaleb(-scale) for _ in range(300)]
    values += [D(top - 1).scaleb(-scale), D(1 - top).scaleb(-scale), D(0).scaleb(-scale), None]
    for batch in (values, [D(1).scaleb(-scale), D(-3).scaleb(-scale)]):  # all small: fewer digits
        fields = _fields(
            pa.array(batch, pa.decimal128(precision, scale)), ArrowType(ArrowKind.DECIMAL, precision, scale)
        )
        for value, field in zip(batch, fields, strict=True):
            assert (field is None) == (value is None)
            if field is not None:
                assert _numeric(field) == (value, scale)


def test_unsigned_bigints_read_back_as_their_values() -> None:
    for batch in ([0, 1, 9_999, 10_000, 2**63, 2**64 - 1, None], [5, 7], [0]):
        fields = _fields(pa.array(batch, pa.uint64()), ArrowType(ArrowKind.UINT64))
        assert [None if f is None else _numeric(f) for f in fields] == [
            None if v is None else (D(v), 0) for v in batch
        ]
