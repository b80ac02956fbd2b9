"""PostgreSQL column types -> the Arrow vocabulary, and their text form (pgoutput's) -> Python values.

pgoutput sends each value in the type's text output. The replication session fixes the settings that
shape that text (DateStyle ISO, IntervalStyle iso_8601, TimeZone UTC, extra_float_digits 3; see
reader.SESSION_OPTIONS), so parsing does not depend on the server's defaults.

A type with a faithful Arrow kind becomes it; everything else keeps PostgreSQL's own text exactly
(STRING): numeric without a declared precision (any precision, NaN, Infinity), timetz, interval
(months and days are not a fixed duration), uuid, json/jsonb, arrays, enums, inet/cidr, ranges...
Values no Arrow kind can hold (date/timestamp infinity, years before 1 or after 9999) stop the
capture with an error naming the column: never a placeholder.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable

from cdc.core.events import ColumnValue
from cdc.core.schemas import ArrowKind, ArrowType

__all__ = ["INLINE", "INLINE_NAMES", "Converter", "arrow_type", "converter"]

Converter = Callable[[bytes], ColumnValue]  # from the value's text form, as UTF-8 bytes

_UTC = dt.UTC
# builtin type oids (pg_type.h); anything else (enums, domains, arrays, extensions) is text
BOOL, BYTEA, CHAR, NAME, INT8, INT2, INT4, TEXT, OID = 16, 17, 18, 19, 20, 21, 23, 25, 26
FLOAT4, FLOAT8, BPCHAR, VARCHAR, DATE, TIME, TIMESTAMP, TIMESTAMPTZ = (
    700,
    701,
    1042,
    1043,
    1082,
    1083,
    1114,
    1184,
)
NUMERIC = 1700

_SIMPLE: dict[int, ArrowKind] = {
    BOOL: ArrowKind.BOOL,
    INT2: ArrowKind.INT16,
    INT4: ArrowKind.INT32,
    INT8: ArrowKind.INT64,
    OID: ArrowKind.UINT32,
    FLOAT4: ArrowKind.FLOAT32,
    FLOAT8: ArrowKind.FLOAT64,
    BYTEA: ArrowKind.BINARY,
    DATE: ArrowKind.DATE,
    TIME: ArrowKind.DURATION,
    TIMESTAMP: ArrowKind.TIMESTAMP,
    TIMESTAMPTZ: ArrowKind.TIMESTAMP_UTC,
}


def numeric_precision(typmod: int) -> tuple[int, int] | None:
    """numeric(p, s)'s precision and scale from the attribute's typmod; None when undeclared."""
    if typmod < 4:
        return None
    bits = typmod - 4
    return (bits >> 16) & 0xFFFF, bits & 0xFFFF


def arrow_type(type_oid: int, typmod: int) -> ArrowType:
    if type_oid == NUMERIC:
        declared = numeric_precision(typmod)
        # a declared scale below 0 or above the precision (PostgreSQL 15 allows both) has no Arrow form
        if declared is not None and 0 <= declared[1] <= declared[0] <= 76:
            return ArrowType(ArrowKind.DECIMAL, declared[0], declared[1])
        return ArrowType(ArrowKind.STRING)
    kind = _SIMPLE.get(type_oid, ArrowKind.STRING)
    return ArrowType(kind)


class ValueOutOfRange(ValueError):
    """A value the column's Arrow kind cannot hold (the caller names the column)."""


def _bool(text: bytes) -> bool:
    return text == b"t"


def _bytea(text: bytes) -> bytes:
    if not text.startswith(b"\\x"):
        raise ValueOutOfRange(f"bytea not in hex output format: {text[:20]!r} (bytea_output=escape?)")
    return bytes.fromhex(text[2:].decode())


def _decimal(text: bytes) -> decimal.Decimal:
    value = decimal.Decimal(text.decode())
    if not value.is_finite():
        # NaN/Infinity are legal in numeric(p, s) but no decimal column can hold them
        raise ValueOutOfRange(f"{text.decode()} has no decimal form")
    return value


def _date(text: bytes) -> dt.date:
    try:
        return dt.date.fromisoformat(text.decode())
    except ValueError:
        raise ValueOutOfRange(f"date {text!r} is outside 0001-01-01..9999-12-31") from None


def _time(text: bytes) -> dt.timedelta:
    hours, minutes, seconds = text.decode().split(":")
    whole, _, fraction = seconds.partition(".")
    micros = int((fraction + "000000")[:6]) if fraction else 0
    return dt.timedelta(hours=int(hours), minutes=int(minutes), seconds=int(whole), microseconds=micros)


def _timestamp(text: bytes) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text.decode())
    except ValueError:
        raise ValueOutOfRange(f"timestamp {text!r} is outside 0001..9999") from None


def _timestamptz(text: bytes) -> dt.datetime:
    # TimeZone=UTC in the session: "2024-02-29 13:45:01.25+00"
    try:
        value = dt.datetime.fromisoformat(text.decode())
    except ValueError:
        raise ValueOutOfRange(f"timestamptz {text!r} is outside 0001..9999") from None
    return value.astimezone(_UTC)


# int() and float() read ASCII bytes as they are; None: text, decoded as it is (the hot path)
_CONVERTERS: dict[ArrowKind, Converter | None] = {
    ArrowKind.BOOL: _bool,
    ArrowKind.INT16: int,
    ArrowKind.INT32: int,
    ArrowKind.INT64: int,
    ArrowKind.UINT32: int,
    ArrowKind.FLOAT32: float,  # "NaN", "Infinity", "-Infinity" parse too
    ArrowKind.FLOAT64: float,
    ArrowKind.BINARY: _bytea,
    ArrowKind.DATE: _date,
    ArrowKind.DURATION: _time,
    ArrowKind.TIMESTAMP: _timestamp,
    ArrowKind.TIMESTAMP_UTC: _timestamptz,
    ArrowKind.DECIMAL: _decimal,
    ArrowKind.STRING: None,
}


def converter(kind: ArrowKind) -> Converter | None:
    return _CONVERTERS[kind]


# The common converters as statements over ``raw`` that set ``{v}``, for the compiled row reader
# (tuples.py): a Python function call per value was a fifth of the reader's time. Each gives the value
# its function gives, or raises / returns None where the function would raise (ValueOutOfRange): the
# reader then hands the image to the generic path, which raises the function's error naming the
# column. Converters not listed here (bytea, time) are called as they are.
INLINE: dict[object, str] = {
    int: "{v} = int(raw)",
    float: "{v} = float(raw)",
    _bool: "{v} = raw == b't'",
    _decimal: "{v} = DECIMAL(raw.decode())\nif not {v}.is_finite():\n    return None",
    _date: "{v} = DATE(raw.decode())",
    _timestamp: "{v} = DATETIME(raw.decode())",
    # TimeZone=UTC: fromisoformat of "...+00" already gives dt.UTC (astimezone would return it as is)
    _timestamptz: "{v} = DATETIME(raw.decode())\nif {v}.tzinfo is not UTC:\n    {v} = {v}.astimezone(UTC)",
}
INLINE_NAMES: dict[str, object] = {
    "DECIMAL": decimal.Decimal,
    "DATE": dt.date.fromisoformat,
    "DATETIME": dt.datetime.fromisoformat,
    "UTC": _UTC,
}
