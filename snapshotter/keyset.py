"""Keyset pagination on the primary key: the SQL of a chunk, and key values passed back to the server.

``WHERE (k1, k2) > (a, b)`` reads as the right predicate, but MariaDB 10.11 does not turn a row
constructor comparison into an index range (EXPLAIN shows a full index scan from the start, so every
chunk would cost more than the one before). The equivalent expansion

    k1 >= a AND (k1 > a OR (k1 = a AND k2 > b))

is a range on the primary key (tests/snapshotter/test_keyset.py checks it with EXPLAIN).

A key value goes back to the server as the column compares it, never re-interpreted by the client:
text in the column's own character set and collation (so a case-insensitive collation compares
``'a'`` and ``'A'`` exactly as it ordered them), binary strings as binary, ENUM and SET by their
internal number (the order ORDER BY uses), FLOAT/DOUBLE as the exact shortest repr, TIMESTAMP in
UTC (the session's time zone), TIME as signed text.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cdc.core.errors import TerminalError
from cdc.core.events import ColumnValue, RowImage
from cdc.sources.mariadb.binlog_format import FieldType as T
from snapshotter.table_dictionary import DictColumn, TableDictionary
from snapshotter.values import quote_name, select_list

__all__ = ["ChunkSql", "chunk_sql", "keys_sql", "whole_table_sql"]

_NAME = re.compile(r"[A-Za-z0-9_]+")  # charset and collation names, written into the SQL text


@dataclass(frozen=True, slots=True)
class ChunkSql:
    sql: str
    params: tuple[object, ...]


def _time_text(value: dt.timedelta) -> str:
    negative = value < dt.timedelta(0)
    value = -value if negative else value
    total = value.days * 86400 + value.seconds
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{'-' if negative else ''}{h}:{m:02d}:{s:02d}.{value.microseconds:06d}"


def _param(d: TableDictionary, c: DictColumn, value: ColumnValue) -> tuple[str, object]:
    """The SQL placeholder expression for one key value, and the value to bind to it."""
    t = c.spec.type_code
    if value is None:
        raise TerminalError(
            f"{d.schema.ref}: key column {c.name} holds a value read as NULL (a zero date under "
            "zero_dates: null), which cannot be paged past: set source.zero_dates to 'string'"
        )
    if t == T.ENUM and isinstance(value, str):
        return "%s", c.spec.values.index(value) + 1 if value else 0
    if t == T.SET and isinstance(value, str):
        members = value.split(",") if value else []
        return "%s", sum(1 << c.spec.values.index(m) for m in members)
    if t in (T.FLOAT, T.DOUBLE) and isinstance(value, float):
        return "CAST(%s AS DOUBLE)", repr(value)
    if t == T.TIME2 and isinstance(value, dt.timedelta):
        return "%s", _time_text(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return "%s", value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, str) and c.charset is not None and c.collation is not None:
        if not (_NAME.fullmatch(c.charset) and _NAME.fullmatch(c.collation)):
            raise ValueError(
                f"{d.schema.ref}.{c.name}: unexpected charset/collation {c.charset}/{c.collation}"
            )
        # the literal arrives in the connection's utf8mb4; CONVERT maps it back to the column's
        # charset (the inverse of how it was decoded), COLLATE makes the comparison the column's own
        return f"CONVERT(%s USING {c.charset}) COLLATE {c.collation}", value
    return "%s", value


def _after(d: TableDictionary, after: RowImage) -> tuple[str, tuple[object, ...]]:
    keys = d.key_columns
    if len(after) != len(keys):
        raise ValueError(f"{d.schema.ref}: a key of {len(keys)} values expected, got {len(after)}")
    exprs: list[tuple[str, str, object]] = []
    for c, v in zip(keys, after, strict=True):
        placeholder, bound = _param(d, c, v)
        exprs.append((quote_name(c.name), placeholder, bound))
    # k1 >= a AND (k1 > a OR (k1 = a AND (k2 > b OR (k2 = b AND k3 > c))))
    params: list[object] = [exprs[0][2]]
    inner = ""
    inner_params: list[object] = []
    for name, ph, bound in reversed(exprs):
        if not inner:
            inner, inner_params = f"{name} > {ph}", [bound]
        else:
            inner = f"({name} > {ph} OR ({name} = {ph} AND {inner}))"
            inner_params = [bound, bound, *inner_params]
    first_name, first_ph, _ = exprs[0]
    return f"{first_name} >= {first_ph} AND {inner}", tuple(params + inner_params)


def _table(d: TableDictionary) -> str:
    return f"{quote_name(d.schema.db)}.{quote_name(d.schema.table)}"


def chunk_sql(d: TableDictionary, after: RowImage | None, limit: int) -> ChunkSql:
    """The next ``limit`` rows after the key ``after`` (from the start when None), in key order."""
    order = ", ".join(quote_name(k) for k in d.schema.primary_key)
    where, params = ("", ()) if after is None else _after(d, after)
    sql = f"SELECT {select_list(d)} FROM {_table(d)}"
    if where:
        sql += f" WHERE {where}"
    return ChunkSql(f"{sql} ORDER BY {order} LIMIT {int(limit)}", params)


def keys_sql(d: TableDictionary, keys: Sequence[RowImage]) -> ChunkSql:
    """The rows of these keys (those that exist), in key order."""
    cols = d.key_columns
    conds: list[str] = []
    params: list[object] = []
    for key in keys:
        parts = []
        for c, v in zip(cols, key, strict=True):
            ph, bound = _param(d, c, v)
            parts.append(f"{quote_name(c.name)} = {ph}")
            params.append(bound)
        conds.append("(" + " AND ".join(parts) + ")")
    order = ", ".join(quote_name(k) for k in d.schema.primary_key)
    where = " OR ".join(conds) if conds else "FALSE"
    return ChunkSql(f"SELECT {select_list(d)} FROM {_table(d)} WHERE {where} ORDER BY {order}", tuple(params))


def whole_table_sql(d: TableDictionary) -> str:
    return f"SELECT {select_list(d)} FROM {_table(d)}"
