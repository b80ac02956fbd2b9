"""SELECT results (MariaDB's text protocol) turned into exactly the values the binlog decoder produces.

The session asks for every value as the raw bytes the server stores or prints
(``character_set_results = binary``), so text is decoded by the decoder's own codec for the column's
character set (MariaDB's latin1 quirks included), not by the server's conversion. Integers and floats
are converted inside mysqlclient's C loop (its per-field-type converters); the few columns that need
more (temporal types, zero dates, DECIMAL, BIT, text, GEOMETRY, INET6) go through one generated
function per table that touches only those columns.

Differences between a SELECT and the binlog, and how they are closed:
- FLOAT: SELECT prints 6 significant digits; the column is selected as ``CAST(col AS DOUBLE)``, which
  prints the stored float32 widened exactly, as the decoder's ``struct.unpack('<f')`` yields it.
- TIMESTAMP: the session's time_zone is '+00:00' and the value becomes a UTC-aware datetime.
- GEOMETRY: SELECT returns the 4-byte SRID before the WKB; the decoder drops it, so do we.
- BIT: SELECT returns the bytes big-endian; the decoder returns an int.
- UUID/INET4/INET6: SELECT prints text; INET6 is normalised as the decoder formats it.
- zero dates: the server's text is the decoder's text, handed to the same ZeroDatePolicy.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
from collections.abc import Callable
from typing import Any

from MySQLdb.constants import FIELD_TYPE

from cdc.core.errors import ZeroDateError
from cdc.core.events import RowImage
from cdc.sources.mariadb.binlog_format import FieldType as T
from cdc.sources.mariadb.value_codecs import ZeroDatePolicy, python_codec
from snapshotter.table_dictionary import DictColumn, TableDictionary

__all__ = ["FIELD_CONVERTERS", "RowConverter", "compile_row_converter", "select_list"]

RowConverter = Callable[[tuple[Any, ...]], RowImage]

# Converted by mysqlclient in C, per field type of the result set; everything else arrives as bytes.
FIELD_CONVERTERS: dict[int, Any] = {
    FIELD_TYPE.TINY: int,
    FIELD_TYPE.SHORT: int,
    FIELD_TYPE.INT24: int,
    FIELD_TYPE.LONG: int,
    FIELD_TYPE.LONGLONG: int,
    FIELD_TYPE.YEAR: int,
    FIELD_TYPE.DOUBLE: float,
    FIELD_TYPE.FLOAT: float,
}
_UTC = dt.UTC


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def select_list(d: TableDictionary) -> str:
    """The SELECT list, in column order (INVISIBLE columns included, as the binlog logs them)."""
    parts = []
    for c in d.columns:
        q = quote_name(c.name)
        parts.append(f"CAST({q} AS DOUBLE)" if c.spec.type_code == T.FLOAT else q)
    return ", ".join(parts)


def _zero(policy: ZeroDatePolicy, d: TableDictionary, column: str) -> Callable[[str], object]:
    def handle(text: str) -> object:
        if policy is ZeroDatePolicy.NULL:
            return None
        if policy is ZeroDatePolicy.STRING:
            return text
        raise ZeroDateError(d.schema.db, d.schema.table, column, text)

    return handle


def _date(zero: Callable[[str], object]) -> Callable[[bytes], object]:
    parse = dt.date.fromisoformat

    def convert(raw: bytes) -> object:
        text = raw.decode()
        try:
            return parse(text)
        except ValueError:
            return zero(text)

    return convert


def _datetime(zero: Callable[[str], object], utc: bool) -> Callable[[bytes], object]:
    parse = dt.datetime.fromisoformat

    def convert(raw: bytes) -> object:
        text = raw.decode()
        try:
            value = parse(text)
        except ValueError:
            return zero(text)
        return value.replace(tzinfo=_UTC) if utc else value

    return convert


def parse_time(raw: bytes) -> dt.timedelta:
    """'-838:59:59.999999' -> a signed timedelta (TIME may be negative and exceed 24 hours)."""
    text = raw.decode()
    negative = text.startswith("-")
    hours, minutes, rest = text.lstrip("-").split(":")
    seconds, _, frac = rest.partition(".")
    value = dt.timedelta(
        hours=int(hours), minutes=int(minutes), seconds=int(seconds), microseconds=int(frac.ljust(6, "0"))
    )
    return -value if negative else value


def _decimal(raw: bytes) -> decimal.Decimal:
    return decimal.Decimal(raw.decode())


def _bit(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _geometry(raw: bytes) -> bytes:
    return raw[4:]  # the SRID; the decoder hands out the WKB alone


def _inet6(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw.decode()))


def _ascii(raw: bytes) -> str:
    return raw.decode("ascii")


def _enum_text(raw: bytes) -> str:
    # the decoder decodes ENUM/SET members from the TABLE_MAP as UTF-8, whatever the column's charset;
    # the server sends the same stored bytes here, so decoding them alike gives the same text
    return raw.decode("utf-8", "surrogateescape")


def _converter(c: DictColumn, d: TableDictionary, policy: ZeroDatePolicy) -> Callable[[bytes], object] | None:
    """None: the value is already right (ints and floats from C, binary strings as bytes)."""
    t = c.spec.type_code
    if t in (T.TINY, T.SHORT, T.INT24, T.LONG, T.LONGLONG, T.YEAR, T.FLOAT, T.DOUBLE):
        return None
    if t == T.NEWDECIMAL:
        return _decimal
    if t == T.BIT:
        return _bit
    if t == T.DATE:
        return _date(_zero(policy, d, c.name))
    if t in (T.DATETIME2, T.TIMESTAMP2):
        return _datetime(_zero(policy, d, c.name), utc=t == T.TIMESTAMP2)
    if t == T.TIME2:
        return parse_time
    if t == T.GEOMETRY:
        return _geometry
    if t in (T.ENUM, T.SET):
        return _enum_text
    if c.extended is not None:
        return _inet6 if c.extended == "inet6" else _ascii
    if c.charset is None or c.charset == "binary":
        return None
    return python_codec(c.charset)


def compile_row_converter(d: TableDictionary, policy: ZeroDatePolicy) -> RowConverter | None:
    """One function per table shape: a row of fetched values in, the decoder's RowImage out.

    None when every column is already right as fetched (the rows are used as they are).
    """
    env: dict[str, object] = {}
    parts: list[str] = []
    for i, c in enumerate(d.columns):
        conv = _converter(c, d, policy)
        if conv is None:
            parts.append(f"r[{i}]")
            continue
        name = f"f{i}"
        env[name] = conv
        parts.append(
            f"(None if r[{i}] is None else {name}(r[{i}]))" if c.spec.nullable else f"{name}(r[{i}])"
        )
    if not env:
        return None
    source = f"def convert(r):\n    return ({', '.join(parts)},)\n"
    # generated from the column list above; no value or name from the source reaches the code
    exec(compile(source, f"<snapshot row converter {d.schema.ref}>", "exec"), env)
    return env["convert"]  # type: ignore[return-value]
