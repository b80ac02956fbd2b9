"""PostgreSQL's binary COPY format, built from a batch's Arrow columns a column at a time.

PostgreSQL spends less of its own CPU reading binary COPY than text: an integer, a timestamp or a
bytea arrives as its stored form instead of text its input function parses (measured on the
benchmark's rows, keyed tables, batches of 5,000: 4.3-4.4 against 5.8-5.9 us of backend CPU per
row; benchmarks/results/latest.md, section sqlsteady). The rows are built without a Python object
per value: each column becomes an Arrow binary array of its fields (a field is a 4-byte big-endian
length and the value's bytes; -1 and nothing for NULL), fixed-width fields written byte lane by
byte lane into one buffer, and ``binary_join_element_wise`` joins a row's fields behind the field
count. The joined array's data buffer is then the rows, as the format lays them out.

The encodings, by the target column's type (:func:`sinks.sql.type_mapping.sa_type`):

- ``smallint`` / ``integer`` / ``bigint``: the value, big-endian; ``boolean``: one byte;
- ``date``: days since 2000-01-01 (int32); ``timestamp`` / ``timestamptz``: microseconds since
  2000-01-01 00:00 UTC (int64): the Arrow value less PostgreSQL's epoch;
- ``numeric`` (``UINT64``, and ``DECIMAL`` up to 18 digits, whose unscaled value is an int64): the
  base-10000 digits of the absolute unscaled value, a fixed count per column (leading and trailing
  zero digits are allowed: PostgreSQL's ``numeric_recv`` strips them, and its typmod check rounds
  to the column's scale as it does for text), weight, sign and the column's scale;
- ``text`` / ``varchar`` / ``bytea``: the bytes as they are (text is UTF-8, as the session's
  client encoding: PostgreSQL checks it, as it checks text input).

Any other column (floats, TIME, decimals over 18 digits), a column whose type differs from the
target's (a table widened by an earlier version) or a big-endian machine: :func:`encodable` says
no and the caller sends CSV instead.

The compiled ``copy_binary_rows`` (native/headwater_native/src/copy_binary.rs) writes the same
bytes from the columns' buffers in one call that releases the GIL; the Arrow kernels below stay the
reference (``tests/unit/test_embpg2_copy_binary.py`` compares both) and take any piece whose
arrays are not of the plain storage type of their kind. The kernels were ~30 calls per column, each
releasing and taking the GIL again: on embedded `cdc run`'s apply thread each take waited for the
capture and column threads on the same core.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from cdc.core.schemas import ArrowKind, ArrowType

try:
    from headwater_native import copy_binary_rows as _copy_binary_rows
except ImportError:  # pragma: no cover - an extension built before it: the Arrow path
    _copy_binary_rows = None  # type: ignore[assignment]

__all__ = ["encodable", "rows_binary"]

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, header extension length
TRAILER = b"\xff\xff"
_NULL_FIELD = pa.scalar(b"\xff\xff\xff\xff", pa.binary())
_NOTHING = pa.scalar(b"", pa.binary())
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000
_NUMERIC_NEG = 0x4000
_MAX_DECIMAL_DIGITS = 18  # the unscaled value fits an int64
# rows per piece: the joined rows' offsets are int32, and PostgreSQL reads one piece while the
# next is built
_PIECE_BYTES = 64 << 20

_FIXED = {
    ArrowKind.BOOL: (pa.uint8(), 1),
    ArrowKind.INT8: (pa.int16(), 2),
    ArrowKind.UINT8: (pa.int16(), 2),
    ArrowKind.INT16: (pa.int16(), 2),
    ArrowKind.INT32: (pa.int32(), 4),
    ArrowKind.UINT16: (pa.int32(), 4),
    ArrowKind.INT64: (pa.int64(), 8),
    ArrowKind.UINT32: (pa.int64(), 8),
}
_BYTES = frozenset({ArrowKind.STRING, ArrowKind.BINARY})
_TIMES = frozenset({ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC})
# the compiled encoder's column codes (src/copy_binary.rs)
_CODES = {
    ArrowKind.BOOL: 1,
    ArrowKind.INT8: 2,
    ArrowKind.UINT8: 3,
    ArrowKind.INT16: 4,
    ArrowKind.INT32: 5,
    ArrowKind.UINT16: 6,
    ArrowKind.INT64: 7,
    ArrowKind.UINT32: 8,
    ArrowKind.DATE: 9,
    ArrowKind.TIMESTAMP: 10,
    ArrowKind.TIMESTAMP_UTC: 10,
    ArrowKind.STRING: 11,
    ArrowKind.BINARY: 11,
    ArrowKind.UINT64: 12,
    ArrowKind.DECIMAL: 13,
}


def encodable(source: ArrowType, target: ArrowType) -> bool:
    """Whether a column of ``source`` type goes binary into a target column of ``target`` type."""
    if sys.byteorder != "little" or source != target:
        return False
    kind = target.kind
    if kind is ArrowKind.DECIMAL:
        return 0 < target.precision <= _MAX_DECIMAL_DIGITS
    return kind in _FIXED or kind in _BYTES or kind in _TIMES or kind in (ArrowKind.UINT64, ArrowKind.DATE)


def rows_binary(
    columns: Sequence[pa.ChunkedArray], types: Sequence[ArrowType]
) -> Iterator[bytes | memoryview]:
    """The whole COPY stream (header, rows, trailer) of ``columns``, each of its ``types``
    (:func:`encodable` ones), in pieces to write one after the other."""
    yield HEADER
    n = len(columns[0]) if columns else 0
    size = sum(c.nbytes for c in columns)
    step = max(1, n * _PIECE_BYTES // size) if size > _PIECE_BYTES else max(n, 1)
    count = pa.scalar(len(columns).to_bytes(2, "big"), pa.binary())
    storage = [arrow.to_pyarrow() for arrow in types] if _copy_binary_rows is not None else None
    for start in range(0, n, step):
        pieces = [column.slice(start, step).combine_chunks() for column in columns]
        compiled = _compiled(pieces, types, storage)
        if compiled is not None:
            yield compiled
            continue
        fields: list[pa.Array | pa.Scalar] = [count]
        for values, arrow in zip(pieces, types, strict=True):
            fields.extend(_fields(values, arrow))
        joined = pc.binary_join_element_wise(*fields, _NOTHING)
        offsets = joined.buffers()[1]
        end = int.from_bytes(memoryview(offsets)[4 * len(joined) : 4 * len(joined) + 4], "little")
        yield memoryview(joined.buffers()[2])[:end]
    yield TRAILER


def _compiled(
    pieces: Sequence[pa.Array], types: Sequence[ArrowType], storage: Sequence[pa.DataType] | None
) -> bytes | None:
    """The rows of ``pieces`` by the compiled encoder; None (the Arrow path) when it is missing or
    an array is not of its kind's storage type (e.g. a wider integer than the target's)."""
    if storage is None or not pieces:
        return None
    specs = []
    for values, arrow, expected in zip(pieces, types, storage, strict=True):
        if values.type != expected:
            return None
        buffers = values.buffers()
        if buffers[1] is None or (buffers[0] is None and values.null_count):
            return None  # buffers pyarrow may leave out: the kernels know what that means
        validity = buffers[0] if values.null_count else None
        data = buffers[2] if len(buffers) > 2 else None
        kind = arrow.kind
        precision = 20 if kind is ArrowKind.UINT64 else arrow.precision  # as _fields gives _numeric
        specs.append((_CODES[kind], values.offset, validity, buffers[1], data, precision, arrow.scale))
    return _copy_binary_rows(specs, len(pieces[0]))


def _fields(values: pa.Array, arrow: ArrowType) -> list[pa.Array]:
    kind = arrow.kind
    if kind in _BYTES:
        data = values.cast(pa.binary()) if kind is ArrowKind.STRING else values
        lengths = pc.binary_length(data)
        if data.null_count:
            lengths, data = lengths.fill_null(-1), data.fill_null(b"")
        return [_records(len(values), b"\x00" * 4, [(0, lengths, 4)]), data]
    if kind in _FIXED:
        as_type, width = _FIXED[kind]
        field = _records(
            len(values), width.to_bytes(4, "big") + b"\x00" * width, [(4, values.cast(as_type), width)]
        )
    elif kind is ArrowKind.DATE:
        days = pc.subtract(values.cast(pa.int32()), pa.scalar(_PG_EPOCH_DAYS, pa.int32()))
        field = _records(len(values), b"\x00\x00\x00\x04" + b"\x00" * 4, [(4, days, 4)])
    elif kind in _TIMES:
        micros = pc.subtract(values.cast(pa.int64()), pa.scalar(_PG_EPOCH_US, pa.int64()))
        field = _records(len(values), b"\x00\x00\x00\x08" + b"\x00" * 8, [(4, micros, 8)])
    elif kind is ArrowKind.UINT64:
        field = _numeric(values, None, 20, 0, values.is_valid() if values.null_count else None)
    else:
        unscaled = _unscaled(values)
        valid = values.is_valid() if values.null_count else None
        field = _numeric(unscaled, pc.less(unscaled, 0), arrow.precision, arrow.scale, valid)
    if values.null_count:
        field = pc.if_else(values.is_valid(), field, _NULL_FIELD)
    return [field]


def _records(n: int, template: bytes, lanes: list[tuple[int, pa.Array, int]]) -> pa.Array:
    """``n`` fixed-size fields: ``template`` each, with the little-endian integers of each lane's
    array written big-endian at its offset (one strided copy per byte)."""
    size = len(template)
    out = bytearray(template) * n
    for at, values, width in lanes:
        buffer = values.buffers()[1]
        raw = bytes(memoryview(buffer)[values.offset * width : (values.offset + n) * width]) if n else b""
        for j in range(width):
            out[at + j :: size] = raw[width - 1 - j :: width]
    offsets = pc.multiply(_steps(n), pa.scalar(size, pa.int32()))
    return pa.Array.from_buffers(pa.binary(), n, [None, offsets.buffers()[1], pa.py_buffer(out)])


_RANGE: list[pa.Array] = []


def _steps(n: int) -> pa.Array:
    """0, 1, ..., n as int32 (offset zero), from one array kept for the largest n asked."""
    if not _RANGE or len(_RANGE[0]) < n + 1:
        _RANGE[:] = [pa.array(range(max(n + 1, 8192)), pa.int32())]
    return _RANGE[0].slice(0, n + 1)


def _unscaled(values: pa.Array) -> pa.Array:
    """A decimal128 column's unscaled values as int64 (the low half of each value: exact up to 18
    digits, two's complement like the whole)."""
    n = len(values)
    raw = bytes(memoryview(values.buffers()[1])[values.offset * 16 : (values.offset + n) * 16])
    low = bytearray(8 * n)
    for j in range(8):
        low[j::8] = raw[j::16]
    return pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(low)])


def _numeric(
    unscaled: pa.Array, negative: pa.Array | None, precision: int, scale: int, valid: pa.Array | None
) -> pa.Array:
    """``numeric`` fields of unscaled integers (uint64, or int64 with ``negative`` their signs);
    ``valid``: which of them are values (None: all), the others' bytes are anything."""
    pad = -scale % 4  # decimal digits after the last one, to a whole base-10000 digit
    fraction = (scale + pad) // 4
    magnitude = unscaled if negative is None else pc.abs(unscaled)
    # as many digits as the largest value needs (a key of 200,000 has 2, not the 5 of 20 places),
    # counted from the lowest (the weight places them): fewer kernels here, fewer digits to read
    zero = pa.scalar(0, magnitude.type)
    largest = pc.max(magnitude if valid is None else pc.if_else(valid, magnitude, zero)).as_py() or 0
    needed = -(-(len(str(largest)) + pad) // 4)
    groups = min(max(needed, 1), -(-(precision + pad) // 4))
    weight = groups - fraction - 1
    kind = magnitude.type
    # digit 0 (the lowest) holds the lowest 4 - pad decimal digits, shifted up by pad
    below = pa.scalar(10 ** (4 - pad), kind)
    rest = pc.divide(magnitude, below)
    low = pc.multiply(pc.subtract(magnitude, pc.multiply(rest, below)), pa.scalar(10**pad, kind))
    digits = [low]
    base = pa.scalar(10_000, kind)
    for _ in range(groups - 1):
        higher = pc.divide(rest, base)
        digits.append(pc.subtract(rest, pc.multiply(higher, base)))
        rest = higher
    header = b"".join(
        v.to_bytes(2, "big", signed=True) for v in (groups, weight, 0, scale)
    )  # ndigits, weight, sign (lane below), dscale
    template = (8 + 2 * groups).to_bytes(4, "big") + header + b"\x00" * (2 * groups)
    lanes = [(12 + 2 * i, d.cast(pa.int16()), 2) for i, d in enumerate(reversed(digits))]
    if negative is not None and pc.any(negative).as_py():
        sign = pc.if_else(negative, pa.scalar(_NUMERIC_NEG, pa.int16()), pa.scalar(0, pa.int16()))
        lanes.append((8, sign.fill_null(0), 2))
    return _records(len(unscaled), template, lanes)
