"""The way back: envelope JSON values and schema-topic records into typed values and TableSchemas.

The exact inverse of :mod:`cdc.stream.json_values` (a round-trip test pins it), so a sink fed from
Kafka stores the same values as one fed straight from the binlog.
"""

from __future__ import annotations

import binascii
import datetime as dt
import decimal
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from cdc.core.errors import SourceProtocolError
from cdc.core.events import ColumnValue, RowImage
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema

__all__ = ["column_decoder", "parse_arrow_type", "row_decoder", "table_schema_from_record"]

_DECIMAL = re.compile(r"^decimal(?:128|256)\((\d+), (\d+)\)$")
_DURATION = re.compile(r"^(-)?(\d+):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$")
_KINDS = {kind.value: kind for kind in ArrowKind}

ValueDecoder = Callable[[Any], ColumnValue]


def parse_arrow_type(text: str) -> ArrowType:
    """``str(ArrowType)`` back into the ArrowType: "int32", "decimal128(10, 2)", "timestamp[us, tz=UTC]"."""
    match = _DECIMAL.match(text)
    if match:
        return ArrowType(ArrowKind.DECIMAL, int(match[1]), int(match[2]))
    kind = _KINDS.get(text)
    if kind is None:
        raise SourceProtocolError(f"unknown arrow type {text!r} in a schema record")
    return ArrowType(kind)


def table_schema_from_record(record: Mapping[str, Any]) -> TableSchema:
    """A ``table_schema`` record of the schema topic as the TableSchema it announced."""
    columns = tuple(
        Column(
            str(c["name"]), str(c["source_type"]), parse_arrow_type(str(c["arrow_type"])), bool(c["nullable"])
        )
        for c in record["columns"]
    )
    return TableSchema(
        TableRef(str(record["db"]), str(record["table"])),
        columns,
        tuple(str(k) for k in record["primary_key"]),
        str(record["version"]),
    )


def _duration(text: str) -> dt.timedelta:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a TIME value: {text!r}")
    sign, hours, minutes, seconds, fraction = match.groups()
    micros = int((fraction or "").ljust(6, "0") or 0)
    value = dt.timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds), microseconds=micros)
    return -value if sign else value


def _date(value: str) -> dt.date | str:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return value  # a zero date kept as text (zero_dates: string)


def _datetime(value: str) -> dt.datetime | str:
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return value


def _instant(value: str) -> dt.datetime | str:
    try:
        return dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return value


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _float(value: Any) -> float:
    """A JSON number, or one of json_values' three strings for what JSON numbers cannot be."""
    if value.__class__ is str:
        found = _NON_FINITE.get(value)
        if found is None:
            # float() would take "nan", "1e3", " 2 ": a float column's value is never such text
            raise ValueError(f'not a float value: {value!r} (a number, "NaN", "Infinity" or "-Infinity")')
        return found
    return float(value)


def _same(value: Any) -> ColumnValue:
    return value  # type: ignore[no-any-return]


_DECODERS: dict[ArrowKind, ValueDecoder] = {
    ArrowKind.BOOL: bool,
    ArrowKind.FLOAT32: _float,
    ArrowKind.FLOAT64: _float,
    ArrowKind.DECIMAL: lambda v: decimal.Decimal(v),
    ArrowKind.STRING: _same,
    # what base64.b64decode does for a str, without its argument checks (a third of its time)
    ArrowKind.BINARY: binascii.a2b_base64,
    ArrowKind.DATE: _date,
    ArrowKind.TIMESTAMP: _datetime,
    ArrowKind.TIMESTAMP_UTC: _instant,
    ArrowKind.DURATION: _duration,
}


def column_decoder(column: Column) -> ValueDecoder:
    decode = _DECODERS.get(column.arrow_type.kind, _same)  # integers are JSON integers already

    def checked(value: Any) -> ColumnValue:
        return None if value is None else decode(value)

    return checked


def row_decoder(schema: TableSchema) -> Callable[[Mapping[str, Any] | None], RowImage | None]:
    """A decoder for one table version: an envelope image (dict) to a row tuple in column order.

    Generated once per version as one flat function: a column whose JSON value is already its Python
    value (integers, text) costs one dict lookup, the others one call. On the consume path this was
    the largest cost after JSON parsing (a closure call per column; benchmarks/results/profiles).
    """
    names: dict[str, Any] = {}
    parts = []
    for i, column in enumerate(schema.columns):
        decode = _DECODERS.get(column.arrow_type.kind)
        if decode is None or decode is _same:
            parts.append(f"get({column.name!r})")
        else:
            names[f"f{i}"] = decode
            parts.append(f"(None if (v{i} := get({column.name!r})) is None else f{i}(v{i}))")
    body = ", ".join(parts) + ("," if len(parts) == 1 else "")
    source = (
        "def decode(image):\n"
        "    if image is None:\n"
        "        return None\n"
        "    get = image.get\n"
        f"    return ({body})\n"
    )
    exec(compile(source, f"<row decoder {schema.ref} {schema.version}>", "exec"), names)
    decoder: Callable[[Mapping[str, Any] | None], RowImage | None] = names["decode"]
    return decoder
