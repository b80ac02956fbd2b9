"""Column values to JSON values: one exact, documented mapping per Arrow kind.

The mapping follows Debezium's MySQL connector where its choice is exact and self-describing
(DECIMAL as a plain string like ``decimal.handling.mode=string``, BINARY as base64 like
``binary.handling.mode=base64``, TIMESTAMP as an ISO-8601 UTC string like ``ZonedTimestamp``).
Where Debezium's default is an epoch count (DATE as days, DATETIME as micros, TIME as micros) we
emit ISO-8601 text instead: equally exact, readable, and it keeps DATETIME (a wall-clock time with
no zone) from being mistaken for an instant.

==============================  =================  ==============================================
Arrow kind (source types)       JSON               example / notes
==============================  =================  ==============================================
BOOL                            true/false
INT8..INT64, UINT8..UINT64      number (integer)   18446744073709551615 stays exact in Python and
(tinyint..bigint [unsigned],                       Java; JavaScript ``JSON.parse`` rounds above
year, bit(n))                                      2**53: use a big-int aware parser there
FLOAT32, FLOAT64                number             the double value (a FLOAT's float32 value widened,
                                                   so 0.1f is 0.10000000149011612)
  NaN, +Inf, -Inf               string             "NaN", "Infinity", "-Infinity" (JSON has no such
                                                   numbers; Debezium's and Avro-JSON's spelling;
                                                   PostgreSQL real/double only: MariaDB has none)
DECIMAL(p, s)                   string             "-12.500" plain notation, exactly s fraction
                                                   digits, never an exponent
STRING (char, varchar, text,    string             UTF-8; text that was not valid in its charset
enum, set, json, uuid, inet)                       reaches us with surrogate escapes and is sent with
                                                   U+FFFD replacement (lossy: use a binary column)
BINARY (binary, varbinary,      string (base64)    RFC 4648 standard alphabet, padded
blob, geometry)
DATE                            string             "2024-02-29"
TIMESTAMP (datetime(fsp))       string             "2024-02-29T13:45:01.250" no zone (wall clock),
                                                   exactly fsp fraction digits
TIMESTAMP_UTC (timestamp(fsp))  string             "2024-02-29T13:45:01.250Z" UTC, fsp digits
DURATION (time(fsp))            string             "-838:59:59.000000": sign, hours (2+ digits, may
                                                   exceed 24), minutes, seconds, fsp digits
NULL                            null
==============================  =================  ==============================================

A zero date kept as text (``zero_dates: string``) is a str and passes through unchanged. If a value
carries more precision than its column's fsp claims, all six fraction digits are written rather than
dropping any.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import re
from collections.abc import Callable
from typing import Any

from cdc.core.events import ColumnValue, RowImage
from cdc.core.schemas import ArrowKind, Column

__all__ = [
    "JsonValue",
    "RowEncoder",
    "ValueEncoder",
    "column_encoder",
    "encode_value",
    "fraction_digits",
    "non_finite",
    "row_encoder",
]

JsonValue = None | bool | int | float | str
ValueEncoder = Callable[[Any], JsonValue]
RowEncoder = Callable[[RowImage], dict[str, Any]]

_UTC = dt.UTC
_FSP_RE = re.compile(r"\((\d)\)")
_US_PER_HOUR = 3_600_000_000
_US_PER_MINUTE = 60_000_000
_US_PER_SECOND = 1_000_000


def fraction_digits(column: Column) -> int:
    """The fractional-second precision declared by a temporal column's source type (0 when absent)."""
    match = _FSP_RE.search(column.source_type)
    return min(int(match[1]), 6) if match else 0


def non_finite(value: float) -> str:
    """The JSON string of a float that is not a JSON number: "NaN", "Infinity" or "-Infinity"."""
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _float(value: Any) -> JsonValue:
    # a serializer writes NaN/Infinity as null (orjson) or as tokens JSON does not have (json):
    # either way a consumer could not tell them from a NULL or could not parse the message
    if math.isfinite(value):
        return value  # type: ignore[no-any-return]
    return non_finite(value)


def _decimal(value: Any) -> JsonValue:
    if value.__class__ is str:
        return str(value)
    return format(value, "f")


def _bytes(value: Any) -> JsonValue:
    if value.__class__ is str:
        return str(value)
    return base64.b64encode(value).decode("ascii")


def _date(value: Any) -> JsonValue:
    if value.__class__ is str:  # zero date kept as text
        return str(value)
    if isinstance(value, dt.datetime):
        value = value.date()
    return str(value.isoformat())


def _fraction_cut(fsp: int) -> tuple[int, int]:
    """(digits kept, divisor of micros that must be zero to keep only ``fsp`` digits)."""
    return fsp, 10 ** (6 - fsp)


def _datetime_encoder(fsp: int, utc: bool) -> ValueEncoder:
    _, unit = _fraction_cut(fsp)
    end = 20 + fsp if fsp else 19  # "YYYY-MM-DDTHH:MM:SS" is 19 characters, then "." and digits
    suffix = "Z" if utc else ""

    def encode(value: Any) -> JsonValue:
        if value.__class__ is str:  # zero date kept as text
            return str(value)
        if utc and value.tzinfo is not _UTC:
            value = value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
        text: str = value.isoformat(timespec="microseconds")
        if value.microsecond % unit:
            return text[:26] + suffix
        return text[:end] + suffix

    return encode


def _time_encoder(fsp: int) -> ValueEncoder:
    _, unit = _fraction_cut(fsp)

    def encode(value: Any) -> JsonValue:
        if value.__class__ is str:
            return str(value)
        micros = (value.days * 86_400 + value.seconds) * _US_PER_SECOND + value.microseconds
        sign = "-" if micros < 0 else ""
        micros = abs(micros)
        hours, rest = divmod(micros, _US_PER_HOUR)
        minutes, rest = divmod(rest, _US_PER_MINUTE)
        seconds, fraction = divmod(rest, _US_PER_SECOND)
        text = f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"
        if fraction % unit:
            return f"{text}.{fraction:06d}"
        if fsp:
            return f"{text}.{fraction // unit:0{fsp}d}"
        return text

    return encode


def column_encoder(column: Column) -> ValueEncoder | None:
    """The encoder for one column's non-null values, or None when the Python value is already JSON."""
    kind = column.arrow_type.kind
    if kind is ArrowKind.DECIMAL:
        return _decimal
    if kind is ArrowKind.BINARY:
        return _bytes
    if kind is ArrowKind.DATE:
        return _date
    if kind is ArrowKind.TIMESTAMP:
        return _datetime_encoder(fraction_digits(column), utc=False)
    if kind is ArrowKind.TIMESTAMP_UTC:
        return _datetime_encoder(fraction_digits(column), utc=True)
    if kind is ArrowKind.DURATION:
        return _time_encoder(fraction_digits(column))
    if kind in (ArrowKind.FLOAT32, ArrowKind.FLOAT64):
        return _float
    return None  # bool, ints and strings are JSON as they are


def encode_value(column: Column, value: ColumnValue) -> JsonValue:
    """One value, for tests and slow paths; the hot path uses :func:`row_encoder`."""
    if value is None:
        return None
    encoder = column_encoder(column)
    if encoder is None:
        if isinstance(value, decimal.Decimal):  # a decimal in a non-decimal column: keep it exact
            return format(value, "f")
        return value  # type: ignore[return-value]
    return encoder(value)


def row_encoder(columns: tuple[Column, ...]) -> RowEncoder:
    """A function from a row image (tuple aligned with ``columns``) to a JSON-ready dict.

    Built once per table schema version: per row it is one ``dict(zip())`` plus one call per column
    whose Python value is not already JSON.
    """
    names = tuple(c.name for c in columns)
    conversions = tuple(
        (i, c.name, enc) for i, c in enumerate(columns) if (enc := column_encoder(c)) is not None
    )
    if not conversions:

        def plain(row: RowImage) -> dict[str, Any]:
            return dict(zip(names, row, strict=True))

        return plain

    def encode(row: RowImage) -> dict[str, Any]:
        out = dict(zip(names, row, strict=True))
        for i, name, enc in conversions:
            value = row[i]
            if value is not None:
                out[name] = enc(value)
        return out

    return encode
