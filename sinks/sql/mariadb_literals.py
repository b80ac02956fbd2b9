"""MariaDB's column-wise upserts sent as the statements pymysql would build, built from the columns.

pymysql's ``executemany`` of an ``INSERT ... VALUES (%s, ...) ON DUPLICATE KEY UPDATE`` escapes every
value in Python (``Connection.escape``, ``escape_item``, ``escape_datetime``...) and joins them
into multi-row statements of at most ``Cursor.max_stmt_length`` bytes: about half of the CPU of an
embedded `cdc run` into MariaDB (py-spy, 200k changes of the wiki mix), and as much of `cdc sink`'s
apply. Here each column's SQL literals are made by Arrow kernels in one pass per column, each row's
text by one join, and the rows are cut into statements by pymysql's own rule (the first row always,
then a row while the statement stays within ``max_stmt_length`` bytes): the server receives the
same statement text, byte for byte, as pymysql's ``executemany`` of the same values sends
(``tests/unit/test_mariadb_literals.py`` compares them), in the caller's transaction.

The literals, as pymysql spells the values :mod:`sinks.sql.mariadb_columnar` binds: ``NULL``;
integers (a bool as its int) as their digits; text quoted, with ``\\0 \\\\ \\n \\r \\Z \\" \\'``
escaped (its ``escape_string``); binary as ``X'hex'``; a decimal as the envelope's plain text
(which is ``format(Decimal(text), "f")``); a date ``'YYYY-MM-DD'``; a datetime
``'YYYY-MM-DD HH:MM:SS[.ffffff]'`` (the fraction left out when zero), a UTC timestamp as its naive
UTC wall clock. Anything else (floats, a decimal text not in plain form, a session with
NO_BACKSLASH_ESCAPES, a connection not in UTF-8, a statement pymysql would not rewrite) returns
False, and the caller binds the rows for pymysql as before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from cdc.core.schemas import ArrowKind, Column
from cdc.stream.arrow_changes import INT_KINDS

__all__ = ["send_upserts"]

_NO_BACKSLASH_ESCAPES = 512  # pymysql.constants.SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
# pymysql's escape table (converters._escape_table): the backslash first, so that the backslashes
# put in after it are not doubled
_ESCAPES = (
    ("\\", "\\\\"),
    ("\0", "\\0"),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\032", "\\Z"),
    ('"', '\\"'),
    ("'", "\\'"),
)
_PLAIN_DECIMAL = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
_NAIVE_MICROS = pa.timestamp("us")
_HEX = pa.array([f"{i:02x}".encode() for i in range(256)], pa.binary())
_INSERT: re.Pattern[str] | None = None


def send_upserts(
    conn: sa.Connection, sql: str, order: Sequence[int], columns: Sequence[Column], rows: pa.Table
) -> bool:
    """Send ``sql`` (pymysql's "format" placeholders, parameter ``j`` taking ``rows.column(order[j])``
    of ``columns[order[j]]``) for every row of ``rows``, in pymysql's multi-row statements; False,
    with nothing sent, when this cannot spell them as pymysql would."""
    if not rows.num_rows:
        return True
    driver: Any = conn.connection.dbapi_connection
    if (
        getattr(driver, "encoding", None) != "utf8"
        or getattr(driver, "server_status", 0) & _NO_BACKSLASH_ESCAPES
    ):
        return False
    parts = _statement_parts(sql, len(order))
    if parts is None:
        return False
    prefix, row_parts, postfix, max_length = parts
    literals = []
    for i in order:
        made = _literals(rows.column(i), columns[i])
        if made is None:
            return False
        literals.append(made)
    joined: list[Any] = [row_parts[0]]
    for literal, part in zip(literals, row_parts[1:], strict=True):
        joined += [literal, part]
    texts = pc.binary_join_element_wise(*joined[:-1], joined[-1] + ",", "")
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    _validity, offsets_buffer, data_buffer = texts.buffers()
    offsets = memoryview(offsets_buffer).cast("i")[texts.offset : texts.offset + len(texts) + 1]
    data = data_buffer.to_pybytes()
    for first, last in _statements(offsets, len(prefix.encode()), len(postfix.encode()), max_length):
        # the rows' texts end in ",": the statement's last one without it
        body = data[offsets[first] : offsets[last] - 1].decode()
        conn.exec_driver_sql(prefix + body + postfix, execution_options={"no_parameters": True})
    return True


def _statement_parts(sql: str, count: int) -> tuple[str, list[str], str, int] | None:
    """pymysql's split of an INSERT into prefix, one row's template and postfix (its
    ``RE_INSERT_VALUES``), the template cut at its ``count`` placeholders; and its statement bound."""
    global _INSERT
    if _INSERT is None:
        from pymysql.cursors import RE_INSERT_VALUES

        _INSERT = RE_INSERT_VALUES
    match = _INSERT.match(sql)
    if match is None:
        return None
    values = match.group(2).rstrip()
    row_parts = values.split("%s")
    if len(row_parts) != count + 1 or any("%" in part for part in row_parts):
        return None
    from pymysql.cursors import Cursor

    return match.group(1) % (), row_parts, (match.group(3) or "") % (), Cursor.max_stmt_length


def _statements(offsets: Sequence[int], prefix: int, postfix: int, max_length: int) -> list[tuple[int, int]]:
    """(first row, end row) of each statement: pymysql's ``_do_execute_many`` cut, on byte lengths
    (each row's text here is one byte longer than pymysql's: its trailing comma)."""
    out = []
    first, length = 0, prefix + offsets[1] - offsets[0] - 1
    for row in range(1, len(offsets) - 1):
        size = offsets[row + 1] - offsets[row] - 1
        if length + size + postfix + 1 > max_length:
            out.append((first, row))
            first, length = row, prefix + size
        else:
            length += 1 + size
    out.append((first, len(offsets) - 1))
    return out


def _literals(values: pa.ChunkedArray, column: Column) -> pa.ChunkedArray | pa.Array | None:
    """The SQL literal of each value, as pymysql's ``Connection.escape`` spells the value bound."""
    kind = column.arrow_type.kind
    if kind is ArrowKind.BOOL:
        text = values.cast(pa.int8()).cast(pa.string())
    elif kind in INT_KINDS:
        text = values.cast(pa.string())
    elif kind is ArrowKind.STRING:
        if values.type != pa.string():
            return None
        text = _quoted(_escaped(values))
    elif kind is ArrowKind.BINARY:
        text = _hex_literals(values)
        if text is None:
            return None
    elif kind is ArrowKind.DECIMAL:
        if values.type != pa.string():
            return None
        plain = pc.match_substring_regex(values, _PLAIN_DECIMAL)
        if not pc.all(pc.or_kleene(plain, pc.is_null(values))).as_py():
            return None
        text = values
    elif kind is ArrowKind.DATE:
        text = _quoted(values.cast(pa.string()))
    elif kind in (ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC):
        wall = values if values.type == _NAIVE_MICROS else values.cast(_NAIVE_MICROS)
        whole = pc.replace_substring_regex(wall.cast(pa.string()), r"\.000000$", "")
        text = _quoted(whole)
    else:
        return None
    return pc.fill_null(text, "NULL")


def _escaped(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """pymysql's ``escape_string``: a pass for each character to escape that the values hold."""
    held = b"".join(chunk.buffers()[2].to_pybytes() for chunk in values.chunks if chunk.buffers()[2])
    for char, escaped in _ESCAPES:
        if char.encode() in held:
            values = pc.replace_substring(values, char, escaped)
    return values


def _quoted(values: Any) -> Any:
    return pc.binary_join_element_wise("'", values, "'", "")


def _hex_literals(values: pa.ChunkedArray) -> pa.Array | None:
    """``X'<hex>'`` of each value (pymysql's bytes literal): the data buffer's bytes looked up in a
    table of their two hex digits, so every value's hex is at twice its offsets."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if array.type != pa.binary():
        return None
    validity, offsets_buffer, data_buffer = array.buffers()
    bounds = pa.Array.from_buffers(pa.int32(), len(array) + 1, [None, offsets_buffer], offset=array.offset)
    first = bounds[0].as_py()
    size = bounds[len(array)].as_py() - first
    if data_buffer is None or size == 0:
        hexed = pa.py_buffer(b"")
    else:
        data = pa.Array.from_buffers(pa.uint8(), size, [None, data_buffer], offset=first)
        hexed = _HEX.take(data).buffers()[2]
    doubled = pc.multiply(pc.subtract(bounds, first), 2).cast(pa.int32())
    validity_array = None
    if validity is not None and array.null_count:
        validity_array = pc.is_valid(array).buffers()[1]
    hex_text = pa.Array.from_buffers(
        pa.string(), len(array), [validity_array, doubled.buffers()[1], hexed], null_count=array.null_count
    )
    return pc.binary_join_element_wise("X'", hex_text, "'", "")
