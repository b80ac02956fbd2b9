"""MariaDB from Kafka: a batch's collapsed changes handed to the per-change path's executemany.

:mod:`sinks.sql.columnar_apply` keeps the last change per key, as for SQLite
(:func:`sinks.sql.sqlite_columnar.collapse_arrays`); here the rows become the very Python values the
per-change path gives pymysql, taken a column at a time from the Arrow arrays: the typed image's
values (ints, bools, bytes, dates, datetimes), the envelope's text and doubles for text and floats,
``Decimal(text)`` for decimals (what ``json_decode`` makes), and a UTC timestamp as its naive UTC
wall clock (what the ``_utc_naive`` encoder makes of it), a bool as the int its Boolean type's bind
processor makes (the only MariaDB type here with one). They then go to the driver's executemany as
the per-change path's :func:`sinks.sql.driver_rows.executemany` hands them (pymysql escapes them
and sends multi-row INSERTs), so each row's SQL is the same text; a piece of the batch at a time
(:mod:`sinks.sql.bound_pieces`: at most 2,000 rows and ~512 KiB), so that one piece's values and
statement text are alive at once, not the whole batch's. The upserts' statements are made from the
columns themselves (:mod:`sinks.sql.mariadb_literals`: the same bytes pymysql would send, without its
escaping of each value in Python); these Python values are made only when it cannot.

A chunk whose text or binary values exceed a bounded target column (what the per-change path's
checks stop or dead-letter, with their message) goes the per-change way.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from cdc.core.schemas import ArrowKind, Column
from cdc.stream.arrow_changes import ChangeColumns
from sinks.sql.sqlite_columnar import sent_forms_fit, write_bound_rows
from sinks.sql.type_mapping import Dialect, Family, target_type

__all__ = ["fits", "write_rows"]

_NAIVE_MICROS = pa.timestamp("us")


def fits(columns: ChangeColumns) -> bool:
    """Whether no value of the chunk is one the per-change path's MariaDB checks refuse."""
    if not sent_forms_fit(columns):
        return False
    for i, (column, typed) in enumerate(zip(columns.schema.columns, columns.image, strict=True)):
        target = target_type(column)
        if target.length is None:
            continue
        if target.family is Family.TEXT:
            # characters, as len() counts them (the envelope's text: read by index, as embedded
            # chunks make each such column when first read)
            lengths = pc.utf8_length(columns.json_image[i])
        elif target.family is Family.BINARY:
            lengths = pc.binary_length(typed)
        else:
            continue
        if pc.any(pc.greater(lengths, target.length)).as_py():
            return False
    return True


def write_rows(
    conn: sa.Connection,
    table: sa.Table,
    primary_key: Sequence[str],
    names: Sequence[str],
    columns: Sequence[Column],
    rows: pa.Table,
    deleted: pa.ChunkedArray,
) -> None:
    """``rows``: the last change per key, column ``c{i}`` for ``columns[i]`` (target ``names[i]``);
    ``deleted``: which of them are deletes."""
    write_bound_rows(conn, table, primary_key, names, columns, rows, deleted, _values, Dialect.MARIADB)


def _values(values: pa.ChunkedArray, column: Column) -> list[Any]:
    """One column's values as the per-change path binds them (encoder, then bind processor)."""
    kind = column.arrow_type.kind
    if kind is ArrowKind.BOOL:
        return _listed(values.cast(pa.int8()))  # the Boolean type's bind processor: int(value)
    if kind is ArrowKind.DECIMAL:
        return [None if text is None else decimal.Decimal(text) for text in _listed(values)]
    if kind is ArrowKind.TIMESTAMP_UTC:
        return _listed(values.cast(_NAIVE_MICROS))  # the UTC wall clock, naive
    return _listed(values)


def _listed(values: pa.ChunkedArray) -> list[Any]:
    out: list[Any] = values.to_pylist()
    return out
