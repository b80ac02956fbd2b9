"""SELECT results (MariaDB's text protocol) turned into exactly the values the binlog decoder produces.

The session asks for every value as the raw bytes the server stores or prints
(``character_set_results = binary``), so text is decoded by the decoder's own codec for the column's
character set (MariaDB's latin1 quirks included), not by the server's conversion. Numbers, temporal
types, DECIMAL, BIT and GEOMETRY are converted inside mysqlclient's C loop by per-field-type
converters (:class:`FieldConversions`); only tables with text, ENUM/SET or UUID/INET columns get a
generated per-row function, which touches just those columns. Zero dates cannot be judged per type
(the error must name the column), so they come out as :class:`ZeroText` and the rows of a fetch in
which one went by are fixed per column.

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

__all__ = [
    "FieldConversions",
    "RowConverter",
    "ZeroText",
    "compile_row_converter",
    "select_list",
    "zero_date_fixer",
]

RowConverter = Callable[[tuple[Any, ...]], RowImage]
_UTC = dt.UTC


class ZeroText(str):
    """A zero or partly-zero date as the server printed it ('0000-00-00'), awaiting its column's
    ZeroDatePolicy (which needs the column's name, and mysqlclient's converters know only the type)."""

    __slots__ = ()


class FieldConversions:
    """mysqlclient's converters by result field type: run from its C loop, so the common columns
    (numbers, temporal types, DECIMAL, BIT, GEOMETRY) need no per-row Python at all. Everything not
    named here (strings of any kind) arrives as the stored bytes. ``zero_seen`` says that a zero date
    went by since it was last reset, so only then are rows scanned for :class:`ZeroText`."""

    def __init__(self) -> None:
        self.zero_seen = False
        parse_date, parse_datetime = dt.date.fromisoformat, dt.datetime.fromisoformat

        def zero(text: str) -> ZeroText:
            self.zero_seen = True
            return ZeroText(text)

        def date(text: str) -> object:
            try:
                return parse_date(text)
            except ValueError:
                return zero(text)

        def datetime(text: str) -> object:
            try:
                return parse_datetime(text)
            except ValueError:
                return zero(text)

        def timestamp(text: str) -> object:
            try:
                return parse_datetime(text).replace(tzinfo=_UTC)
            except ValueError:
                return zero(text)

        # mysqlclient hands DECIMAL and temporal values over as str, the others as bytes
        self.converters: dict[int, Any] = {
            FIELD_TYPE.TINY: int,
            FIELD_TYPE.SHORT: int,
            FIELD_TYPE.INT24: int,
            FIELD_TYPE.LONG: int,
            FIELD_TYPE.LONGLONG: int,
            FIELD_TYPE.YEAR: int,
            FIELD_TYPE.DOUBLE: float,
            FIELD_TYPE.FLOAT: float,
            FIELD_TYPE.NEWDECIMAL: decimal.Decimal,
            FIELD_TYPE.DECIMAL: decimal.Decimal,
            FIELD_TYPE.BIT: _bit,
            FIELD_TYPE.DATE: date,
            FIELD_TYPE.DATETIME: datetime,
            FIELD_TYPE.TIMESTAMP: timestamp,
            FIELD_TYPE.TIME: parse_time,
            FIELD_TYPE.GEOMETRY: _geometry,
        }


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def select_list(d: TableDictionary) -> str:
    """The SELECT list, in column order (INVISIBLE columns included, as the binlog logs them)."""
    parts = []
    for c in d.columns:
        q = quote_name(c.name)
        parts.append(f"CAST({q} AS DOUBLE)" if c.spec.type_code == T.FLOAT else q)
    return ", ".join(parts)


def parse_time(text: str) -> dt.timedelta:
    """'-838:59:59.999999' -> a signed timedelta (TIME may be negative and exceed 24 hours)."""
    negative = text.startswith("-")
    hours, minutes, rest = text.lstrip("-").split(":")
    seconds, _, frac = rest.partition(".")
    value = dt.timedelta(
        hours=int(hours), minutes=int(minutes), seconds=int(seconds), microseconds=int(frac.ljust(6, "0"))
    )
    return -value if negative else value


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


def _converter(c: DictColumn) -> Callable[[bytes], object] | None:
    """What one column's fetched value still needs; None: nothing (done by FieldConversions, or
    a binary string, which stays bytes)."""
    t = c.spec.type_code
    if t in (T.ENUM, T.SET):
        return _enum_text
    if c.extended is not None:
        return _inet6 if c.extended == "inet6" else _ascii
    if t in (T.STRING, T.VARCHAR, T.BLOB) and c.charset is not None and c.charset != "binary":
        return python_codec(c.charset)
    return None


def _zero_handler(policy: ZeroDatePolicy, d: TableDictionary, column: str) -> Callable[[str], object]:
    def handle(text: str) -> object:
        if policy is ZeroDatePolicy.NULL:
            return None
        if policy is ZeroDatePolicy.STRING:
            return text
        raise ZeroDateError(d.schema.db, d.schema.table, column, text)

    return handle


def compile_row_converter(d: TableDictionary) -> RowConverter | None:
    """One function per table shape for the per-column work FieldConversions cannot do (text in the
    column's character set, ENUM/SET, UUID/INET). None when no column needs any: rows are used as
    fetched, with no Python per row."""
    env: dict[str, object] = {}
    parts: list[str] = []
    for i, c in enumerate(d.columns):
        conv = _converter(c)
        if conv is None:
            parts.append(f"r[{i}]")
            continue
        name = f"f{i}"
        env[name] = conv
        call = f"{name}(r[{i}])"
        parts.append(f"(None if r[{i}] is None else {call})" if c.spec.nullable else call)
    if not env:
        return None
    source = f"def convert(r):\n    return ({', '.join(parts)},)\n"
    # generated from the column list above; no value or name from the source reaches the code
    exec(compile(source, f"<snapshot row converter {d.schema.ref}>", "exec"), env)
    return env["convert"]  # type: ignore[return-value]


def zero_date_fixer(d: TableDictionary, policy: ZeroDatePolicy) -> RowConverter:
    """Replaces the :class:`ZeroText` values of a row by what its column's policy says (run only on
    the rows of a fetch in which a zero date went by)."""
    temporal = (T.DATE, T.DATETIME2, T.TIMESTAMP2)
    handlers = tuple(
        (i, _zero_handler(policy, d, c.name)) for i, c in enumerate(d.columns) if c.spec.type_code in temporal
    )

    def fix(row: tuple[Any, ...]) -> RowImage:
        out: list[Any] | None = None
        for i, handle in handlers:
            if type(row[i]) is ZeroText:
                out = list(row) if out is None else out
                out[i] = handle(str(row[i]))
        return row if out is None else tuple(out)

    return fix
