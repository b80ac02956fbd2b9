"""Decoders for the MariaDB binlog encodings that need more than a struct unpack.

Each ``make_*`` returns a small closure specialised for one column (precision, fractional digits,
zero-date policy), built once per TABLE_MAP so the per-row work is a single call.
"""

from __future__ import annotations

import codecs
import datetime as dt
import decimal
import enum
import ipaddress
from collections.abc import Callable

from cdc.core.errors import ZeroDateError

__all__ = [
    "ZeroDatePolicy",
    "decimal_size",
    "format_inet4",
    "format_inet6",
    "format_uuid",
    "make_date",
    "make_datetime2",
    "make_decimal",
    "make_time2",
    "make_timestamp2",
    "python_codec",
]

_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)


class ZeroDatePolicy(enum.Enum):
    """What a zero or partly-zero date/datetime ('0000-00-00', '2024-00-10') becomes."""

    NULL = "null"  # None (default: such values are not dates)
    ERROR = "error"  # raise ZeroDateError naming the column
    STRING = "string"  # the text MariaDB would print, e.g. "0000-00-00 00:00:00"


ZeroHandler = Callable[[str], object]
Where = tuple[str, str, str]  # db, table, column: named in errors


def decimal_size(precision: int, scale: int) -> int:
    intg = precision - scale
    return (intg // 9) * 4 + _DIG2BYTES[intg % 9] + (scale // 9) * 4 + _DIG2BYTES[scale % 9]


def make_decimal(precision: int, scale: int) -> Callable[[bytes], decimal.Decimal]:
    """MariaDB's binary DECIMAL: base-10^9 groups, big-endian, sign in the top bit (negatives inverted)."""
    intg = precision - scale
    size = decimal_size(precision, scale)
    # (bit shift, mask, decimal digits) of each group, most significant first, integer part then fraction
    groups: list[tuple[int, int, int]] = []
    offset = 0

    def add(width_bytes: int, digits: int) -> None:
        nonlocal offset
        if width_bytes:
            shift = 8 * (size - offset - width_bytes)
            groups.append((shift, (1 << 8 * width_bytes) - 1, digits))
            offset += width_bytes

    add(_DIG2BYTES[intg % 9], intg % 9)
    for _ in range(intg // 9):
        add(4, 9)
    n_int_groups = len(groups)
    for _ in range(scale // 9):
        add(4, 9)
    add(_DIG2BYTES[scale % 9], scale % 9)
    int_groups = tuple(groups[:n_int_groups])
    frac_groups = tuple(groups[n_int_groups:])
    sign_bit = 1 << (8 * size - 1)
    all_ones = (1 << 8 * size) - 1
    D = decimal.Decimal
    exact = decimal.Context(prec=100)

    def decode(raw: bytes) -> decimal.Decimal:
        n = int.from_bytes(raw, "big")
        negative = not n & sign_bit
        n ^= sign_bit
        if negative:
            n ^= all_ones
        ip = 0
        for shift, mask, _digits in int_groups:
            ip = ip * 1_000_000_000 + (n >> shift & mask)
        if not frac_groups:
            return D(-ip if negative else ip)
        for shift, mask, digits in frac_groups:
            ip = ip * 10**digits + (n >> shift & mask)
        # Exact: the context is wide enough for any DECIMAL(65, 30) and independent of the caller's.
        return D(-ip if negative else ip).scaleb(-scale, exact)

    return decode


def _zero_handler(policy: ZeroDatePolicy, where: Where) -> ZeroHandler:
    def handle(text: str) -> object:
        if policy is ZeroDatePolicy.NULL:
            return None
        if policy is ZeroDatePolicy.STRING:
            return text
        raise ZeroDateError(*where, text)

    return handle


def make_date(policy: ZeroDatePolicy, where: Where) -> Callable[[int], object]:
    """DATE: 3 bytes little-endian, year << 9 | month << 5 | day."""
    zero = _zero_handler(policy, where)
    date = dt.date

    def decode(x: int) -> object:
        y, m, d = x >> 9, x >> 5 & 15, x & 31
        try:
            return date(y, m, d)
        except ValueError:
            return zero(f"{y:04d}-{m:02d}-{d:02d}")

    return decode


def _frac_scale(fsp: int) -> int:
    return (1, 10000, 10000, 100, 100, 1, 1)[fsp]


def make_datetime2(fsp: int, policy: ZeroDatePolicy, where: Where) -> Callable[[bytes], object]:
    """DATETIME(fsp): 5 bytes big-endian (offset 2^39) then (fsp+1)//2 bytes of fraction."""
    zero = _zero_handler(policy, where)
    frac_bytes = (fsp + 1) // 2
    scale = _frac_scale(fsp)
    datetime = dt.datetime

    def decode(raw: bytes) -> object:
        x = int.from_bytes(raw[:5], "big") - 0x8000000000
        usec = int.from_bytes(raw[5:], "big") * scale if frac_bytes else 0
        ymd = x >> 17
        ym = ymd >> 5
        hms = x & 0x1FFFF
        y, mo, d = ym // 13, ym % 13, ymd & 31
        h, mi, s = hms >> 12, hms >> 6 & 63, hms & 63
        try:
            return datetime(y, mo, d, h, mi, s, usec)
        except ValueError:
            frac = f".{usec:06d}"[: fsp + 1] if fsp else ""
            return zero(f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}{frac}")

    return decode


def make_timestamp2(fsp: int, policy: ZeroDatePolicy, where: Where) -> Callable[[bytes], object]:
    """TIMESTAMP(fsp): 4 bytes big-endian seconds since the epoch (UTC), then the fraction; 0 is the zero
    timestamp."""
    zero = _zero_handler(policy, where)
    scale = _frac_scale(fsp)
    timedelta = dt.timedelta

    def decode(raw: bytes) -> object:
        secs = int.from_bytes(raw[:4], "big")
        usec = int.from_bytes(raw[4:], "big") * scale
        if secs == 0 and usec == 0:
            frac = "." + "0" * fsp if fsp else ""
            return zero(f"0000-00-00 00:00:00{frac}")
        return _EPOCH + timedelta(seconds=secs, microseconds=usec)

    return decode


def make_time2(fsp: int) -> Callable[[bytes], dt.timedelta]:
    """TIME(fsp) as a signed duration (MariaDB allows -838:59:59.999999 .. 838:59:59.999999)."""
    timedelta = dt.timedelta

    def decode(raw: bytes) -> dt.timedelta:
        intpart = int.from_bytes(raw[:3], "big") - 0x800000
        if fsp == 0:
            packed = intpart << 24
        elif fsp <= 2:
            frac = raw[3]
            if intpart < 0 and frac:
                intpart += 1
                frac -= 0x100
            packed = (intpart << 24) + frac * 10000
        elif fsp <= 4:
            frac = int.from_bytes(raw[3:5], "big")
            if intpart < 0 and frac:
                intpart += 1
                frac -= 0x10000
            packed = (intpart << 24) + frac * 100
        else:
            packed = int.from_bytes(raw[:6], "big") - 0x800000000000
        negative = packed < 0
        packed = -packed if negative else packed
        hms, usec = packed >> 24, packed & 0xFFFFFF
        h, m, s = hms >> 12 & 0x3FF, hms >> 6 & 63, hms & 63
        value = timedelta(hours=h, minutes=m, seconds=s, microseconds=usec)
        return -value if negative else value

    return decode


# MariaDB's "latin1" is Windows-1252, except that the five bytes cp1252 leaves undefined map to the C1
# controls of the same code (as in ISO-8859-1).
_LATIN1_TABLE = {b: ord(bytes([b]).decode("cp1252", "ignore") or chr(b)) for b in range(0x80, 0xA0)}
_LATIN1_TRANS = str.maketrans({chr(b): chr(c) for b, c in _LATIN1_TABLE.items()})

_CHARSET_CODECS = {
    "utf8mb4": "utf-8",
    "utf8mb3": "utf-8",
    "utf8": "utf-8",
    "ascii": "ascii",
    "latin2": "iso8859-2",
    "latin5": "iso8859-9",
    "latin7": "iso8859-13",
    "greek": "iso8859-7",
    "hebrew": "iso8859-8",
    "cp1250": "cp1250",
    "cp1251": "cp1251",
    "cp1256": "cp1256",
    "cp1257": "cp1257",
    "cp850": "cp850",
    "cp852": "cp852",
    "cp866": "cp866",
    "koi8r": "koi8-r",
    "koi8u": "koi8-u",
    "sjis": "shift_jis",
    "cp932": "cp932",
    "ujis": "euc-jp",
    "eucjpms": "euc-jp",
    "euckr": "euc-kr",
    "gbk": "gbk",
    "gb2312": "gb2312",
    "big5": "big5",
    "tis620": "tis-620",
    "ucs2": "utf-16-be",
    "utf16": "utf-16-be",
    "utf16le": "utf-16-le",
    "utf32": "utf-32-be",
    "macroman": "mac-roman",
    "macce": "mac-latin2",
}


def python_codec(charset: str) -> Callable[[bytes], str] | None:
    """A bytes -> str decoder for a MariaDB character set; None for ``binary`` (values stay bytes)."""
    if charset == "binary":
        return None
    if charset == "latin1":
        trans = _LATIN1_TRANS

        def latin1(raw: bytes) -> str:
            # Most text is ASCII, where every Latin-1 variant agrees; translate only what is not.
            return raw.decode("ascii") if raw.isascii() else raw.decode("latin-1").translate(trans)

        return latin1
    name = _CHARSET_CODECS.get(charset)
    if name is None:
        raise LookupError(charset)
    codecs.lookup(name)
    decoder = codecs.getdecoder(name)

    def decode(raw: bytes) -> str:
        return str(decoder(raw, "surrogateescape")[0])

    if name == "utf-8":
        return _decode_utf8
    return decode


def _decode_utf8(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def format_uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def format_inet4(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def format_inet6(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))
