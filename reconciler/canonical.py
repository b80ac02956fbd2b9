"""One canonical text per value, computed inside each store, so that equal values compare equal
across engines (the source MariaDB, PostgreSQL, MariaDB and SQLite serving tables, DuckDB over the
Iceberg history's Arrow data).

The canonical form is chosen by the *source* column (its Arrow kind, and a decimal's scale), and each
engine's expression undoes how the SQL sink stored the value there (``sinks.sql`` type mapping):

=============  ===========================================================================
kind           canonical text
=============  ===========================================================================
integers       decimal digits (SQLite's >2^63 unsigned values, stored as padded text, unpadded)
floats         round(x * 10^6) as an integer: exact doubles print differently per engine
               (``1e20``, ``1e+20``, ``1.0e+20``); values differing by less than 1e-6 compare
               equal, and |x| >= 9e12 falls back to each engine's own text (documented limit)
decimal(p,s)   exactly ``s`` decimals, whatever the store kept (``12.1`` in SQLite text is ``12.10``
               when the source column has scale 2; ``12.11`` stays different)
text           the text itself (UTF-8); JSON is kept as text by every sink, so compared as text
binary         lowercase hex
date           ``YYYY-MM-DD``
datetime       ``YYYY-MM-DD HH:MM:SS.ffffff`` (microseconds always)
timestamp      the same, in UTC (the source session runs with ``time_zone = '+00:00'``)
time           signed microseconds
=============  ===========================================================================

NULL is not text: a row's text marks each column ``~`` (NULL) or ``=`` followed by its text, so NULL
and '' differ. The row checksum is the first 40 bits of the MD5 of the row text, summed per chunk
with a row count (40 bits keep a million-row SQLite sum inside a 64-bit integer).

A *digest* (``digest_text``) is the MD5 of a key range's row texts joined in key order, one MD5 per
range instead of one per row (MariaDB and PostgreSQL): in MariaDB the per-row MD5 and its conversion
to a number cost more than the scan. Its row text length-prefixes each text column (``5:hello``), so
that the joined text reads back one way only, whatever characters the values hold.

Inside a MariaDB row text, integers, dates and timestamps are left to ``CONCAT_WS``'s own conversion
(``CAST(x AS DATETIME(6))`` prints the same text as ``DATE_FORMAT``): the same bytes, at half the
cost of the explicit ``CAST``/``DATE_FORMAT`` per value (benchmarks/results/latest.md).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from decimal import Decimal

from cdc.core.schemas import INTEGER_RANGES, ArrowKind
from reconciler.model import CompareColumn

__all__ = [
    "Engine", "column_text", "digest_text", "int_div", "quote", "row_hash", "row_text", "sqlite_functions",
    "sqlite_wide_bucket", "sqlite_wide_value",
]  # fmt: skip

_SEP = "\x1f"
_FLOAT_LIMIT = "9000000000000"
_INT64_MAX = 2**63 - 1


class Engine(enum.Enum):
    MARIADB = "mariadb"
    POSTGRESQL = "postgresql"
    SQLITE = "sqlite"
    DUCKDB = "duckdb"


def quote(engine: Engine, name: str) -> str:
    if engine is Engine.MARIADB:
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def column_text(engine: Engine, column: CompareColumn, expr: str) -> str:
    """SQL giving ``expr``'s canonical text (NULL stays NULL)."""
    k = column.kind
    e = engine
    if k in INTEGER_RANGES or k is ArrowKind.BOOL:
        if e is Engine.MARIADB:
            return f"CAST({expr} AS CHAR)"
        if e is Engine.SQLITE and k is ArrowKind.UINT64:
            return (
                f"(CASE WHEN typeof({expr}) = 'text' THEN ltrim({expr}, '0') ELSE CAST({expr} AS TEXT) END)"
            )
        if e is Engine.POSTGRESQL and k is ArrowKind.BOOL:
            return f"CAST(CAST({expr} AS INT) AS TEXT)"
        if e is Engine.DUCKDB:
            # DuckDB prints a boolean as 'true': as a number, as the other engines give it
            cast = f"CAST({expr} AS INTEGER)" if k is ArrowKind.BOOL else expr
            return f"CAST({cast} AS VARCHAR)"
        return f"CAST({expr} AS TEXT)"
    if k in (ArrowKind.FLOAT32, ArrowKind.FLOAT64):
        return _float_text(e, expr)
    if k is ArrowKind.DECIMAL:
        s = column.scale
        if e is Engine.MARIADB:
            return f"CAST(CAST({expr} AS DECIMAL(65,{s})) AS CHAR)"
        if e is Engine.POSTGRESQL:
            return f"CAST(round(CAST({expr} AS NUMERIC), {s}) AS TEXT)"
        if e is Engine.SQLITE:
            return f"hw_decimal({expr}, {s})"
        # DuckDB prints every decimal with its scale; Iceberg keeps p > 38 as text with the scale
        return f"CAST({expr} AS VARCHAR)"
    if k is ArrowKind.STRING:
        return f"CONVERT({expr} USING utf8mb4)" if e is Engine.MARIADB else f"CAST({expr} AS TEXT)"
    if k is ArrowKind.BINARY:
        if e is Engine.POSTGRESQL:
            return f"encode({expr}, 'hex')"
        if e is Engine.SQLITE:
            # SQLite's hex(NULL) is '', not NULL: a NULL copy value then read as an empty value
            return f"(CASE WHEN {expr} IS NULL THEN NULL ELSE lower(hex({expr})) END)"
        return f"lower(hex({expr}))"
    if k is ArrowKind.DATE:
        if e is Engine.MARIADB:
            return f"DATE_FORMAT({expr}, '%Y-%m-%d')"
        if e is Engine.POSTGRESQL:
            return f"to_char({expr}, 'YYYY-MM-DD')"
        if e is Engine.DUCKDB:
            return f"strftime({expr}, '%Y-%m-%d')"
        return f"substr({expr}, 1, 10)"
    if k in (ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC):
        if e is Engine.MARIADB:
            return f"DATE_FORMAT({expr}, '%Y-%m-%d %H:%i:%s.%f')"
        if e is Engine.POSTGRESQL:
            at = f"({expr} AT TIME ZONE 'UTC')" if k is ArrowKind.TIMESTAMP_UTC else expr
            return f"to_char({at}, 'YYYY-MM-DD HH24:MI:SS.US')"
        if e is Engine.DUCKDB:
            return f"strftime(CAST({expr} AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%f')"
        return f"hw_datetime({expr})"
    if k is ArrowKind.DURATION:
        if e is Engine.MARIADB:
            return f"CAST(CAST(TIME_TO_SEC({expr}) * 1000000 AS SIGNED) AS CHAR)"
        if e is Engine.POSTGRESQL:
            return f"CAST(CAST(extract(epoch from {expr}) * 1000000 AS BIGINT) AS TEXT)"
        if e is Engine.DUCKDB:
            return f"CAST({expr} AS VARCHAR)"
        return f"CAST({expr} AS TEXT)"
    raise ValueError(f"no canonical form for {k}")


def _float_text(e: Engine, expr: str) -> str:
    if e is Engine.MARIADB:
        small = f"CAST(CAST(FLOOR({expr} * 1000000 + 0.5) AS SIGNED) AS CHAR)"
        big = f"CONCAT('E', CAST({expr} AS CHAR))"
    elif e is Engine.POSTGRESQL:
        small = f"CAST(CAST(floor(CAST({expr} AS DOUBLE PRECISION) * 1000000 + 0.5) AS BIGINT) AS TEXT)"
        big = f"'E' || CAST({expr} AS TEXT)"
    elif e is Engine.DUCKDB:
        small = f"CAST(CAST(floor(CAST({expr} AS DOUBLE) * 1000000 + 0.5) AS BIGINT) AS VARCHAR)"
        # NaN and infinities spelt as PostgreSQL spells them (a PostgreSQL source's floats; DuckDB
        # prints 'nan', 'inf', '-inf')
        big = (
            f"'E' || CASE WHEN isnan({expr}) THEN 'NaN' WHEN isinf({expr}) THEN "
            f"(CASE WHEN {expr} > 0 THEN 'Infinity' ELSE '-Infinity' END) ELSE CAST({expr} AS VARCHAR) END"
        )
    else:
        small = f"CAST(CAST(floor({expr} * 1000000.0 + 0.5) AS INTEGER) AS TEXT)"
        # SQLite prints infinities as 'Inf' (it holds no NaN: the SQL sink refuses it)
        big = (
            f"'E' || CASE WHEN {expr} = 9e999 THEN 'Infinity' WHEN {expr} = -9e999 THEN '-Infinity' "
            f"ELSE CAST({expr} AS TEXT) END"
        )
    return f"(CASE WHEN abs({expr}) < {_FLOAT_LIMIT} THEN {small} ELSE {big} END)"


def _in_row(engine: Engine, column: CompareColumn, expr: str, prefixed: bool) -> str:
    """A column's canonical text as a part of the row text (see the module docstring)."""
    k = column.kind
    if engine is Engine.MARIADB and (k in INTEGER_RANGES or k is ArrowKind.BOOL):
        text = expr  # CONCAT_WS prints an integer as CAST(x AS CHAR) does
    elif engine is Engine.MARIADB and k in (ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC):
        text = f"CAST({expr} AS DATETIME(6))"
    elif engine is Engine.MARIADB and k is ArrowKind.DATE:
        text = f"CAST({expr} AS DATE)"
    elif engine is Engine.POSTGRESQL and prefixed and k in (ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC):
        # digests only: ``to_char`` was a third of PostgreSQL's digest time. The ISO text (DateStyle
        # set by the runner) drops a zero fraction and trailing zeros: padded back to 6 digits
        at = f"({expr} AT TIME ZONE 'UTC')" if k is ArrowKind.TIMESTAMP_UTC else expr
        t = f"CAST({at} AS TEXT)"
        text = f"(CASE WHEN length({t}) = 19 THEN {t} || '.000000' ELSE rpad({t}, 26, '0') END)"
    else:
        text = column_text(engine, column, expr)
    if not prefixed or k is not ArrowKind.STRING:
        return text
    if engine is Engine.MARIADB:
        return f"CONCAT(CHAR_LENGTH({text}), ':', {text})"
    if engine is Engine.POSTGRESQL:
        return f"(CAST(char_length({text}) AS TEXT) || ':' || {text})"
    return f"(CAST(length({text}) AS TEXT) || ':' || {text})"


def _marked(engine: Engine, column: CompareColumn, expr: str, prefixed: bool = False) -> str:
    text = _in_row(engine, column, expr, prefixed)
    if not column.nullable:
        return text
    if engine is Engine.MARIADB:
        return f"(CASE WHEN {expr} IS NULL THEN '~' ELSE CONCAT('=', {text}) END)"
    return f"(CASE WHEN {expr} IS NULL THEN '~' ELSE '=' || {text} END)"


def row_text(engine: Engine, columns: Sequence[CompareColumn], prefixed: bool = False) -> str:
    """SQL giving a row's canonical text over ``columns`` (quoted by name); ``prefixed``: text
    columns length-prefixed (a digest's row text)."""
    parts = [_marked(engine, c, quote(engine, c.name), prefixed) for c in columns]
    if engine is Engine.MARIADB:
        # a literal separator: ``CHAR(31 USING utf8mb4)`` was evaluated again for every row
        return "CONCAT_WS(_utf8mb4 X'1F', " + ", ".join(parts) + ")"
    sep = " || chr(31) || " if engine is not Engine.SQLITE else " || char(31) || "
    return sep.join(parts) if parts else "''"


def row_hash(engine: Engine, text: str) -> str:
    """SQL giving the 40-bit checksum of a row text."""
    if engine is Engine.MARIADB:
        return f"CAST(CONV(SUBSTRING(MD5({text}), 1, 10), 16, 10) AS UNSIGNED)"
    if engine is Engine.POSTGRESQL:
        return f"CAST(CAST('x' || substr(md5({text}), 1, 10) AS BIT(40)) AS BIGINT)"
    if engine is Engine.DUCKDB:
        return f"CAST('0x' || substr(md5({text}), 1, 10) AS BIGINT)"
    return f"hw_hash({text})"


def digest_text(engine: Engine, columns: Sequence[CompareColumn]) -> str:
    """SQL giving a row's text for a digest (text columns length-prefixed)."""
    return row_text(engine, columns, prefixed=True)


def int_div(engine: Engine, numerator: str, width: int, wide: bool = False) -> str:
    """Integer (floor) division of a non-negative integer expression by ``width``; ``wide``: the key
    may exceed a signed 64-bit integer (unsigned BIGINT)."""
    if engine is Engine.MARIADB:
        return f"(({numerator}) DIV {width})"
    if engine is Engine.POSTGRESQL:
        # numeric division is several times slower than bigint's: only where the key needs it
        if wide:
            return f"div(CAST({numerator} AS NUMERIC), {width})"
        return f"(CAST({numerator} AS BIGINT) / {width})"
    if engine is Engine.DUCKDB:
        # exact only over integers: ``//`` of a DECIMAL (the Iceberg history keeps an unsigned
        # BIGINT as decimal(20,0)) is a DOUBLE quotient, fractional and rounded; ``Store`` casts
        return f"(({numerator}) // {width})"
    return f"(CAST({numerator} AS INTEGER) / {width})"


def sqlite_wide_bucket(key: str, width: int) -> str:
    """SQLite, a key that may exceed a signed 64-bit integer (the sink keeps such values as 20-digit
    text): ``(key - origin) // width`` computed in Python; the origin is bound as text."""
    return f"hw_ubucket({key}, ?, {width})"


def sqlite_wide_value(value: int) -> int | str:
    """A key bound for SQLite as the sink stores it: INTEGER up to 2**63-1, zero-padded 20-digit TEXT
    above (every INTEGER sorts before every TEXT, and padded text sorts in numeric order), so range
    conditions select the same keys as in the source."""
    return value if value <= _INT64_MAX else f"{value:020d}"


def _hw_ubucket(key: object, origin: str, width: int) -> int | str | None:
    if key is None:
        return None
    bucket = (int(str(key)) - int(origin)) // width
    return bucket if bucket <= _INT64_MAX else str(bucket)  # text: SQLite holds no larger INTEGER


def _hw_hash(text: str | None) -> int | None:
    if text is None:
        return None
    return int(hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:10], 16)


def _hw_decimal(value: object, scale: int) -> str | None:
    if value is None:
        return None
    # the sink stores the canonical decimal string; a wrong value may be any text: keep it visible
    try:
        return str(Decimal(str(value)).quantize(Decimal(1).scaleb(-scale)))
    except ArithmeticError:
        return f"?{value}"


def _hw_datetime(value: object) -> str | None:
    if value is None:
        return None
    # SQLAlchemy writes microseconds always; anything else written there is compared as it is
    return str(value)


def sqlite_functions() -> tuple[tuple[str, int, object], ...]:
    """(name, number of arguments, function) to register on each SQLite connection."""
    return (
        ("hw_hash", 1, _hw_hash),
        ("hw_decimal", 2, _hw_decimal),
        ("hw_datetime", 1, _hw_datetime),
        ("hw_ubucket", 3, _hw_ubucket),
    )
