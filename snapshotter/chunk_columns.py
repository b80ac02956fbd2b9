"""A chunk's rows packed column by column for the chunk log, and unpacked to the very same tuples.

Pickling the rows as tuples cost 5 us a row (pickle memoizes every tuple, bytes and datetime): more
than the rest of an Iceberg bootstrap put together. Columns serialize at C speed instead:
- a column whose values are all ints, floats, strings, bytes, booleans or None goes through
  ``marshal``, which writes exactly those types (the file is ours, read back by the same Python);
- a DATETIME column of naive datetimes (the binlog decoder's) as an Arrow timestamp[us] array, whose
  ``to_pylist`` gives back equal naive datetimes (microseconds are the type's own resolution);
- any other column (decimals, dates, times, aware datetimes...) is pickled, as before.
"""

from __future__ import annotations

import datetime as dt
import marshal
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa

from cdc.core.events import ColumnValue, RowImage
from cdc.core.schemas import ArrowKind, TableSchema

__all__ = ["PackedRows", "PreparedColumns", "pack_rows", "prepare_columns", "unpack_rows"]

# (row count, per column: (how, payload)); "m" marshal, "a" Arrow timestamp[us], "p" pickle
PackedRows = tuple[int, tuple[tuple[str, bytes | pa.Array], ...]]
_NAIVE_US = pa.timestamp("us")


@dataclass(frozen=True, slots=True)
class PreparedColumns:
    """A chunk's rows transposed (``ReadBatch.columns``) and packed for the chunk log, made ahead."""

    columns: list[tuple[ColumnValue, ...]]
    packed: PackedRows
    # each column as an Arrow array of its ``arrow_type`` (what the Iceberg and PostgreSQL column
    # paths build first), None where the values do not convert (the sink then meets the error itself)
    arrays: tuple[pa.Array | None, ...]


def prepare_columns(schema: TableSchema, rows: Sequence[RowImage]) -> PreparedColumns:
    columns: list[tuple[ColumnValue, ...]] = (
        list(zip(*rows, strict=True)) if rows else [() for _ in schema.columns]
    )
    arrays = tuple(_array(c.arrow_type.to_pyarrow(), v) for c, v in zip(schema.columns, columns, strict=True))
    return PreparedColumns(columns, pack_rows(schema, columns, len(rows)), arrays)


def _array(kind: pa.DataType, values: tuple[ColumnValue, ...]) -> pa.Array | None:
    try:
        return pa.array(values, kind)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None


def pack_rows(schema: TableSchema, columns: Sequence[tuple[ColumnValue, ...]], n: int) -> PackedRows:
    """``n`` rows given as their columns (``ReadBatch.columns``)."""
    packed = tuple(
        _pack(c.arrow_type.kind, values) for c, values in zip(schema.columns, columns, strict=True)
    )
    return (n, packed if n else ())


def unpack_rows(packed: PackedRows) -> tuple[RowImage, ...]:
    n, columns = packed
    if n == 0:
        return ()
    values = [_unpack(how, payload) for how, payload in columns]
    if any(len(v) != n for v in values):
        raise ValueError(f"a packed chunk column does not hold {n} values")
    return tuple(zip(*values, strict=True))


def _pack(kind: ArrowKind, values: tuple[ColumnValue, ...]) -> tuple[str, bytes | pa.Array]:
    if kind is ArrowKind.TIMESTAMP and all(
        v is None or (v.__class__ is dt.datetime and v.tzinfo is None) for v in values
    ):
        return ("a", pa.array(values, _NAIVE_US))
    # marshal writes subclasses of its types as the base type: only columns whose values are
    # exactly those types go that way
    if kind not in _NOT_MARSHAL and set(map(type, values)) <= _PLAIN:
        return ("m", marshal.dumps(cast(Any, values)))
    return ("p", pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL))


def _unpack(how: str, payload: bytes | pa.Array) -> tuple[ColumnValue, ...]:
    if how == "m" and isinstance(payload, bytes):
        return tuple(marshal.loads(payload))
    if how == "a" and isinstance(payload, pa.Array):
        return tuple(payload.to_pylist())
    if how == "p" and isinstance(payload, bytes):
        return tuple(pickle.loads(payload))
    raise ValueError(f"a packed chunk column of unknown form {how!r}")


_NOT_MARSHAL = frozenset(
    {ArrowKind.DECIMAL, ArrowKind.DATE, ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC, ArrowKind.DURATION}
)
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})
