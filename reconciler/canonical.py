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
to a number cost more than the scan. Its row text is its own, cheaper to build than the row text
above (benchmarks/results/latest.md, "Reconcile"), and read by nothing but MD5:

- the fields are joined by a byte 0x1F; in MariaDB by ``CONCAT_WS(X'1F', ...)``, a binary separator,
  so that no field is converted to a character set on the way (a ``_utf8mb4`` separator converted
  every field, numbers included);
- a text column is two fields, its length in characters and its UTF-8 text, so that the joined text
  reads back one way only, whatever characters the values hold (MariaDB's ``CHAR_LENGTH`` of the
  column as stored: converting does not change the number of characters);
- integers as the engine prints them (``CONCAT_WS``'s own conversion in MariaDB);
- a timestamp (in UTC) as PostgreSQL's ISO text prints it, ``YYYY-MM-DD HH:MM:SS`` and a fraction
  without trailing zeros, if any: the cheapest text in PostgreSQL (integer microseconds need its
  numeric ``EXTRACT``, dearer than the text, and padding the fraction cost a third of the digest),
  and in MariaDB a plain ``CAST`` for whole seconds;
- anything else as in the row text.
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


def _in_row(engine: Engine, column: CompareColumn, expr: str) -> str:
    """A column's canonical text as a part of the row text (see the module docstring)."""
    k = column.kind
    if engine is Engine.MARIADB and (k in INTEGER_RANGES or k is ArrowKind.BOOL):
        return expr  # CONCAT_WS prints an integer as CAST(x AS CHAR) does
    if engine is Engine.MARIADB and k in (ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC):
        return f"CAST({expr} AS DATETIME(6))"
    if engine is Engine.MARIADB and k is ArrowKind.DATE:
        return f"CAST({expr} AS DATE)"
    return column_text(engine, column, expr)


def _marked(engine: Engine, column: CompareColumn, expr: str) -> str:
    text = _in_row(engine, column, expr)
    if not column.nullable:
        return text
    if engine is Engine.MARIADB:
        return f"(CASE WHEN {expr} IS NULL THEN '~' ELSE CONCAT('=', {text}) END)"
    return f"(CASE WHEN {expr} IS NULL THEN '~' ELSE '=' || {text} END)"


def row_text(engine: Engine, columns: Sequence[CompareColumn]) -> str:
    """SQL giving a row's canonical text over ``columns`` (quoted by name)."""
    parts = [_marked(engine, c, quote(engine, c.name)) for c in columns]
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
    """SQL giving a row's digest text (MariaDB or PostgreSQL; see the module docstring)."""
    if engine is Engine.MARIADB:
        return "CONCAT_WS(X'1F', " + ", ".join(_digest_field(engine, c) for c in columns) + ")"
    if engine is Engine.POSTGRESQL:
        return " || chr(31) || ".join(_digest_field(engine, c) for c in columns) or "''"
    raise ValueError(f"no digests in {engine.value}")


def _digest_field(engine: Engine, column: CompareColumn) -> str:
    """A column's field(s) in the digest text, NULL marked as in the row text. PostgreSQL's ``||``
    makes the row text NULL where a copy holds NULL in a NOT NULL source column (the row then drops
    out of the join: the digest differs); MariaDB's ``CONCAT_WS`` drops the field (it differs too)."""
    expr = quote(engine, column.name)
    k = column.kind
    maria = engine is Engine.MARIADB
    sep = "X'1F'" if maria else "chr(31)"
    if k in (ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC):
        if maria:
            # PostgreSQL's ISO text (below): no fraction when it is zero, else no trailing zeros (a
            # fraction cast to six digits has a non-zero digit: the trim stops there). The session
            # runs in UTC: a TIMESTAMP is read as its UTC wall time
            fields = [
                f"IF(MICROSECOND({expr}) = 0, CAST({expr} AS DATETIME), "
                f"TRIM(TRAILING '0' FROM CAST({expr} AS DATETIME(6))))"
            ]
        else:
            # the ISO text (DateStyle set by the runner), cheaper than to_char, the padded text
            # and the exact epoch (numeric)
            at = f"({expr} AT TIME ZONE 'UTC')" if k is ArrowKind.TIMESTAMP_UTC else expr
            fields = [f"CAST({at} AS TEXT)"]
    elif k is ArrowKind.STRING:
        if maria:
            # a UTF-8 column's bytes are read as stored (the CONVERT was about a tenth of the digest)
            text = expr if column.utf8 else f"CONVERT({expr} USING utf8mb4)"
            fields = [f"CHAR_LENGTH({expr})", text]
        else:
            text = f"CAST({expr} AS TEXT)"
            fields = [f"CAST(char_length({text}) AS TEXT)", text]
    else:
        fields = [_in_row(engine, column, expr)]
    if not column.nullable:
        return ", ".join(fields) if maria else " || chr(31) || ".join(fields)
    if maria:
        joined = f", {sep}, ".join(fields)
        return f"(CASE WHEN {expr} IS NULL THEN '~' ELSE CONCAT('=', {joined}) END)"
    joined = f" || {sep} || ".join(fields)
    return f"(CASE WHEN {expr} IS NULL THEN '~' ELSE '=' || {joined} END)"


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
