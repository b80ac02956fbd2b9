"""A chunk's result set (the server's text bytes) to Arrow arrays, column by column, with no Python
object per value: the columnar read path of the snapshot reader.

mysqlclient fetches the rows with no converter at all (every value is the bytes the server sent), the
compiled ``headwater_native.text_columns`` lays each column out as an Arrow ``large_binary`` array in
one pass, and Arrow's own parsers cast it to the column's ``arrow_type``. The values are the very
ones the row path (values.py) gives, hence the binlog decoder's (tests/snapshotter/
test_bootarrow_types.py compares both over the type table):
- integers, DOUBLE (and FLOAT, selected as ``CAST(.. AS DOUBLE)``): Arrow parses the digits exactly
  as ``int()``/``float()`` do (floats correctly rounded);
- DECIMAL: the server prints exactly the column's scale digits, which ``decimal128/256(p, s)`` keeps;
- DATE, DATETIME, TIMESTAMP (the session is in UTC): Arrow refuses what ``fromisoformat`` refuses
  (zero dates, day 31 of a 30-day month, year 0), so such a column goes the row path's way;
- text in utf8mb3/utf8mb4, ENUM and SET: the bytes checked as UTF-8 (what the decoder's
  ``surrogateescape`` decode gives when they are valid); binary strings as they are.
Any other column (TIME, BIT, GEOMETRY, UUID/INET, other character sets, BOOL-typed...) and any column
whose cast fails (a zero date, invalid UTF-8) is converted value by value with the row path's own
converters, then made an Arrow array. When even that does not fit the column's Arrow type (a zero
date kept as a string, text with surrogate escapes), the chunk's rows are made as tuples, as on the
row path: :meth:`TextColumns.convert` then returns tuples, and callers take either.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import headwater_native
import pyarrow as pa
from MySQLdb.constants import FIELD_TYPE

from cdc.core.events import RowImage
from cdc.core.schemas import INTEGER_RANGES, ArrowKind
from cdc.sources.mariadb.binlog_format import FieldType as T
from cdc.sources.mariadb.value_codecs import ZeroDatePolicy
from sinks.arrow_rows import ArrowRows
from snapshotter.table_dictionary import DictColumn, TableDictionary
from snapshotter.values import FieldConversions, ZeroText, _converter, _zero_handler

__all__ = ["Fast", "TextColumns"]


class Fast(enum.Enum):
    """How a column's text becomes its Arrow array without Python per value."""

    PARSE = "parse"  # Arrow's cast from text to the column's type
    TIMESTAMP_UTC = "timestamp_utc"  # parsed as a naive timestamp (the session is in UTC), then zoned
    UTF8 = "utf8"  # the bytes, checked as UTF-8
    BINARY = "binary"  # the bytes as they are


_INTEGERS = frozenset(
    {
        FIELD_TYPE.TINY,
        FIELD_TYPE.SHORT,
        FIELD_TYPE.INT24,
        FIELD_TYPE.LONG,
        FIELD_TYPE.LONGLONG,
        FIELD_TYPE.YEAR,
    }
)
_STRINGS = frozenset(
    {
        FIELD_TYPE.STRING,
        FIELD_TYPE.VAR_STRING,
        FIELD_TYPE.VARCHAR,
        FIELD_TYPE.TINY_BLOB,
        FIELD_TYPE.MEDIUM_BLOB,
        FIELD_TYPE.LONG_BLOB,
        FIELD_TYPE.BLOB,
    }
)
# mysqlclient hands these to a converter as ASCII str, every other type as bytes
_TEXT_IN = frozenset(
    {
        FIELD_TYPE.DECIMAL,
        FIELD_TYPE.NEWDECIMAL,
        FIELD_TYPE.DATE,
        FIELD_TYPE.TIME,
        FIELD_TYPE.DATETIME,
        FIELD_TYPE.TIMESTAMP,
    }
)
_UTF8 = frozenset({"utf8mb4", "utf8mb3", "utf8"})
_NAIVE_US = pa.timestamp("us")
# the only column kinds an integer field parses into (BOOL and the others go value by value)
_INTEGER_KINDS = frozenset(INTEGER_RANGES)

# Tests set this to force every column through the per-value converters (the fallback).
FORCE_ROW_CONVERTERS = False


def fast_way(c: DictColumn, kind: ArrowKind, field_type: int) -> Fast | None:
    """How column ``c`` (its result field type ``field_type``) is converted without Python per value;
    None: value by value."""
    t = c.spec.type_code
    if FORCE_ROW_CONVERTERS or c.extended is not None:
        return None
    if field_type in _INTEGERS and kind in _INTEGER_KINDS:
        return Fast.PARSE
    if field_type in (FIELD_TYPE.DOUBLE, FIELD_TYPE.FLOAT) and kind in (ArrowKind.FLOAT64, ArrowKind.FLOAT32):
        return Fast.PARSE
    if field_type == FIELD_TYPE.NEWDECIMAL and kind is ArrowKind.DECIMAL:
        return Fast.PARSE
    if field_type == FIELD_TYPE.DATE and kind is ArrowKind.DATE:
        return Fast.PARSE
    if field_type == FIELD_TYPE.DATETIME and kind is ArrowKind.TIMESTAMP:
        return Fast.PARSE
    if field_type == FIELD_TYPE.TIMESTAMP and kind is ArrowKind.TIMESTAMP_UTC:
        return Fast.TIMESTAMP_UTC
    if field_type in _STRINGS and t not in (T.GEOMETRY, T.BIT):
        if t in (T.ENUM, T.SET):
            return Fast.UTF8 if kind is ArrowKind.STRING else None
        if (c.charset is None or c.charset == "binary") and kind is ArrowKind.BINARY:
            return Fast.BINARY
        if c.charset in _UTF8 and kind is ArrowKind.STRING:
            return Fast.UTF8
    return None


def _fast_array(raw: pa.Array, way: Fast, kind: pa.DataType) -> pa.Array | None:
    """``raw`` (large_binary) as ``kind``; None when Arrow refuses a value (the row path decides)."""
    try:
        if way is Fast.BINARY:
            return raw.cast(pa.binary())
        text = raw.cast(pa.large_string())  # checks UTF-8
        if way is Fast.UTF8:
            return text.cast(pa.string())
        if way is Fast.TIMESTAMP_UTC:
            return text.cast(_NAIVE_US).cast(kind)
        return text.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _row_converter(
    d: TableDictionary, c: DictColumn, field_type: int, policy: ZeroDatePolicy
) -> Callable[[Any], Any]:
    """Column ``c``'s raw value -> the row path's value: mysqlclient's converter for the field type
    (values.FieldConversions), then the column's own (values._converter), then the zero-date policy."""
    field = FieldConversions().converters.get(field_type)
    text_in = field_type in _TEXT_IN
    column = _converter(c)
    zero = _zero_handler(policy, d, c.name)

    def convert(raw: bytes | None) -> object:
        if raw is None:
            return None
        value: Any = raw
        if field is not None:
            value = field(raw.decode("ascii") if text_in else raw)
        if column is not None:
            value = column(value)
        if type(value) is ZeroText:
            value = zero(str(value))
        return value

    return convert


@dataclass(frozen=True, slots=True)
class _Plan:
    ways: tuple[Fast | None, ...]
    kinds: tuple[pa.DataType, ...]
    slow: tuple[Callable[[Any], Any], ...]


class TextColumns:
    """The columnar conversion of one table shape (made per field types, which a result gives)."""

    def __init__(self, d: TableDictionary, policy: ZeroDatePolicy) -> None:
        self._d = d
        self._policy = policy
        self._plans: dict[tuple[int, ...], _Plan] = {}
        self.fast_columns = 0  # the last plan's columns converted without Python per value (tests)

    def _plan(self, field_types: tuple[int, ...]) -> _Plan:
        plan = self._plans.get(field_types)
        if plan is None:
            d = self._d
            columns = d.schema.columns
            if len(field_types) != len(columns):
                raise ValueError(f"{d.schema.ref}: {len(field_types)} result columns for {len(columns)}")
            kinds = tuple(c.arrow_type.to_pyarrow() for c in columns)
            plan = _Plan(
                tuple(
                    fast_way(dc, c.arrow_type.kind, f)
                    for dc, c, f in zip(d.columns, columns, field_types, strict=True)
                ),
                kinds,
                tuple(
                    _row_converter(d, dc, f, self._policy)
                    for dc, f in zip(d.columns, field_types, strict=True)
                ),
            )
            self._plans[field_types] = plan
        self.fast_columns = sum(w is not None for w in plan.ways)
        return plan

    def convert(
        self, raw_rows: Sequence[tuple[Any, ...]], field_types: tuple[int, ...]
    ) -> ArrowRows | tuple[RowImage, ...]:
        """The rows (each a tuple of bytes or None) as ArrowRows; as tuples when a value does not fit
        its column's Arrow type (see the module's docstring)."""
        plan = self._plan(field_types)
        n = len(raw_rows)
        buffers = headwater_native.text_columns(raw_rows, len(field_types))
        arrays: list[pa.Array] = []
        for i, (data, offsets, validity, nulls) in enumerate(buffers):
            way, kind = plan.ways[i], plan.kinds[i]
            made: pa.Array | None = None
            if way is not None:
                raw = pa.Array.from_buffers(
                    pa.large_binary(),
                    n,
                    [
                        None if validity is None else pa.py_buffer(validity),
                        pa.py_buffer(offsets),
                        pa.py_buffer(data),
                    ],
                    null_count=nulls,
                )
                made = _fast_array(raw, way, kind)
            if made is None:
                values = [plan.slow[i](row[i]) for row in raw_rows]
                try:
                    made = pa.array(values, kind)
                except (pa.ArrowException, TypeError, ValueError, OverflowError):
                    return self._rows(plan, raw_rows)
            arrays.append(made)
        return ArrowRows(arrays, n)

    @staticmethod
    def _rows(plan: _Plan, raw_rows: Sequence[tuple[Any, ...]]) -> tuple[RowImage, ...]:
        columns = [
            tuple(map(convert, values))
            for convert, values in zip(plan.slow, zip(*raw_rows, strict=True), strict=True)
        ]
        return tuple(zip(*columns, strict=True)) if raw_rows else ()
