"""SQLite from Kafka: a batch's collapsed changes bound column by column, one executemany each way.

:mod:`sinks.sql.columnar_apply` concatenates a target table's changes and keeps the last change per
key; this module turns those rows into the very values the per-change path binds (its encoder,
then the column type's SQLAlchemy bind processor, :mod:`sinks.sql.codec` and
:mod:`sinks.sql.driver_rows`), one Arrow kernel or one list per column instead of calls per value:

- integers and booleans as Python ints; uint64 above 2^63-1 as the 20-digit text
  (``type_mapping._sqlite_uint64``);
- floats as the envelope's doubles (the JSON reader's float64, not the float32 the image rounds to:
  the per-change path stores the double it parsed);
- decimals as ``str(Decimal(text))``: the envelope's plain text where that is the same string, which
  is every value but those under 1e-6 with more than six fraction digits (``1E-8``, ``0E-7``) and
  text not in plain form, converted one by one;
- text as it is, binary as bytes;
- dates and datetimes as SQLAlchemy's SQLite storage text, ``YYYY-MM-DD`` and
  ``YYYY-MM-DD HH:MM:SS.ffffff``: Arrow's cast to string of the microsecond values spells them so
  (years zero-padded, all six fraction digits); a UTC timestamp as its wall clock in UTC, as
  ``_utc_naive`` gives it. Not ``strftime``: the same text at 20 times the cost.

The deletes go as one executemany of ``DELETE ... WHERE key = ?``, the rest as one executemany of
the per-change path's own ``INSERT ... ON CONFLICT (key) DO UPDATE`` (MariaDB's, through
:func:`write_bound_rows`, a piece at a time: :mod:`sinks.sql.bound_pieces`). Which changes may come
here at all (:func:`fits`) is decided before anything is written.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from cdc.core.schemas import ArrowKind, Column
from cdc.stream.arrow_changes import ChangeColumns
from sinks.sql import bound_pieces, mariadb_literals
from sinks.sql.driver_rows import compiled, executemany_columns
from sinks.sql.table_writer import delete_by_key, upsert_statement
from sinks.sql.type_mapping import Dialect

__all__ = ["collapse_arrays", "fits", "sent_forms_fit", "write_bound_rows", "write_rows"]

_INT64_MAX = 2**63 - 1
_FLOATS = frozenset({ArrowKind.FLOAT32, ArrowKind.FLOAT64})
# kinds whose envelope text (the JSON reader's column) is kept for the collapse and the binding
_AS_SENT = _FLOATS | {ArrowKind.DECIMAL, ArrowKind.STRING}
# str(Decimal(t)) == t for a plain decimal text unless its adjusted exponent is under -6
_PLAIN_DECIMAL = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
_TINY_DECIMAL = r"^-?0\.0{6}"
_NAIVE_MICROS = pa.timestamp("us")


def fits(columns: ChangeColumns) -> bool:
    """Whether every value of the chunk binds here as the per-change path would bind it.

    The decoder refuses what SQLite's checks would stop (a lone surrogate, "NaN") and TIME columns:
    such chunks have no columns at all. Text is checked to be valid UTF-8 all the same, as the
    per-change path checks it (one pass in C)."""
    return sent_forms_fit(columns)


def sent_forms_fit(columns: ChangeColumns) -> bool:
    """Whether the envelope's forms this module binds from (:func:`collapse_arrays`) are what it
    expects: text for text and decimals, doubles for floats, text valid UTF-8; and no TIME column.
    Anything else (a decoder that one day gives other forms) goes the per-change way."""
    for i, column in enumerate(columns.schema.columns):
        kind = column.arrow_type.kind
        if kind is ArrowKind.DURATION:
            return False
        if kind not in _AS_SENT:
            continue  # its envelope form is not read here: an embedded chunk's is never made
        raw = columns.json_image[i]
        if raw.type != (pa.float64() if kind in _FLOATS else pa.string()):
            return False
        if kind is ArrowKind.STRING and not _valid_utf8(raw):
            return False
    return True


def _valid_utf8(values: pa.Array) -> bool:
    """Whether every value is valid UTF-8 (what the per-change path's lone-surrogate check passes)."""
    try:
        values.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def collapse_arrays(columns: ChangeColumns) -> list[pa.Array]:
    """Per source column, the array the collapse keys on and the rows are bound from: the typed
    image, but the envelope's text for decimals and text, and its doubles for floats."""
    sent = columns.json_image  # read by index: embedded chunks make each column when first read
    return [
        sent[i] if column.arrow_type.kind in _AS_SENT else typed
        for i, (column, typed) in enumerate(zip(columns.schema.columns, columns.image, strict=True))
    ]


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
    write_bound_rows(conn, table, primary_key, names, columns, rows, deleted, _bound, Dialect.SQLITE)


def write_bound_rows(
    conn: sa.Connection,
    table: sa.Table,
    primary_key: Sequence[str],
    names: Sequence[str],
    columns: Sequence[Column],
    rows: pa.Table,
    deleted: pa.ChunkedArray,
    bind: Callable[[pa.ChunkedArray, Column], list[Any]],
    dialect: Dialect,
) -> None:
    """Executemany of deletes by key, then of the dialect's upsert, the values of each column made
    by ``bind`` (SQLite's and MariaDB's per-change binding, a column at a time). On MariaDB a piece
    of the rows at a time (:mod:`sinks.sql.bound_pieces`): each key is in ``rows`` once, so the
    pieces' order does not matter, and they all go in the caller's transaction. SQLite binds row
    by row with no statement text to build: its pieces measured no lower peak (`cdc sink`, 183.5 vs
    184.5 MiB, 6 rounds), so it takes the rows whole."""
    pieces = bound_pieces.pieces if dialect is Dialect.MARIADB else _whole
    index = {name: i for i, name in enumerate(names)}
    any_deleted = pc.any(deleted).as_py()
    if any_deleted:
        keys = [index[k] for k in primary_key]
        stmt, params = delete_by_key(table, primary_key)
        for piece in pieces(rows.filter(deleted), [f"c{i}" for i in keys]):
            bound = [bind(piece.column(j), columns[i]) for j, i in enumerate(keys)]
            executemany_columns(conn, table, f"delete {tuple(primary_key)}", lambda: stmt, params, bound)
    kept = rows.filter(pc.invert(deleted)) if any_deleted else rows
    build = partial(upsert_statement, table, names, primary_key, dialect)
    kind = f"upsert {tuple(primary_key)}"
    for piece in pieces(kept, [f"c{i}" for i in range(len(columns))]):
        if dialect is Dialect.MARIADB:  # pymysql's statements, made from the columns
            sql, order = compiled(conn, table, kind, build, names)
            if mariadb_literals.send_upserts(conn, sql, order, columns, piece):
                continue
        bound = [bind(piece.column(i), column) for i, column in enumerate(columns)]
        executemany_columns(conn, table, kind, build, names, bound)


def _whole(rows: pa.Table, labels: Sequence[str]) -> Iterator[pa.Table]:
    if rows.num_rows:
        yield rows.select(list(labels))


def _bound(values: pa.ChunkedArray, column: Column) -> list[Any]:
    """The values of one column as the per-change path binds them (encoder, then bind processor)."""
    arrow = column.arrow_type
    kind = arrow.kind
    if kind is ArrowKind.BOOL:
        return _listed(values.cast(pa.int8()))  # the Boolean type's processor: int(value)
    if kind is ArrowKind.UINT64:
        out = _listed(values)
        above = pc.greater(values, pa.scalar(_INT64_MAX, pa.uint64()))
        if pc.any(above).as_py():
            for i in pc.indices_nonzero(above.fill_null(False)).to_pylist():
                out[i] = f"{out[i]:020d}"
        return out
    if kind is ArrowKind.DECIMAL:
        return _decimal_text(values, arrow.scale)
    if kind is ArrowKind.DATE:
        return _listed(values.cast(pa.string()))
    if kind in (ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC):
        # a UTC timestamp cast to naive keeps its UTC wall clock (its own text would end in "Z")
        wall = values if values.type == _NAIVE_MICROS else values.cast(_NAIVE_MICROS)
        return _listed(wall.cast(pa.string()))
    # integers, floats (float64), text, binary: the driver binds the Python values as they are
    return _listed(values)


def _listed(values: pa.ChunkedArray) -> list[Any]:
    out: list[Any] = values.to_pylist()
    return out


def _decimal_text(texts: pa.ChunkedArray, scale: int) -> list[Any]:
    out = _listed(texts)
    odd = pc.invert(pc.match_substring_regex(texts, _PLAIN_DECIMAL))
    if scale > 6:  # with six fraction digits or fewer, every plain text is its own str(Decimal)
        odd = pc.or_(odd, pc.match_substring_regex(texts, _TINY_DECIMAL))
    odd = odd.fill_null(False)
    if pc.any(odd).as_py():
        for i in pc.indices_nonzero(odd).to_pylist():
            out[i] = str(decimal.Decimal(out[i]))
    return out
