import datetime as dt
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.core.errors import UnsupportedColumnType, ZeroDateError
from cdc.sources.mariadb.binlog_format import FieldType
from cdc.sources.mariadb.row_decoder import compile_rows_decoder
from cdc.sources.mariadb.table_map import ColumnSpec, TableMap
from cdc.sources.mariadb.value_codecs import (
    ZeroDatePolicy,
    decimal_size,
    format_inet4,
    format_inet6,
    format_uuid,
    make_date,
    make_datetime2,
    make_decimal,
    make_time2,
    python_codec,
)

DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def encode_decimal(value: Decimal, precision: int, scale: int) -> bytes:
    """Reference encoder after MariaDB's decimal2bin, written independently of the decoder."""
    intg = precision - scale
    negative = value < 0
    with localcontext() as ctx:
        ctx.prec = 200  # the default 28 digits would round DECIMAL(65, 30) values
        text = format(abs(value), f".{scale}f")
    int_digits, _, frac_digits = text.partition(".")
    int_digits = int_digits.rjust(intg, "0")
    out = b""
    lead = intg % 9
    if lead:
        out += int(int_digits[:lead]).to_bytes(DIG2BYTES[lead], "big")
    for i in range(lead, intg, 9):
        out += int(int_digits[i : i + 9]).to_bytes(4, "big")
    for i in range(0, scale - scale % 9, 9):
        out += int(frac_digits[i : i + 9]).to_bytes(4, "big")
    if scale % 9:
        out += int(frac_digits[scale - scale % 9 :]).to_bytes(DIG2BYTES[scale % 9], "big")
    raw = bytearray(b ^ 0xFF for b in out) if negative else bytearray(out)
    raw[0] ^= 0x80
    return bytes(raw)


@st.composite
def decimals(draw: st.DrawFn) -> tuple[Decimal, int, int]:
    precision = draw(st.integers(1, 65))
    scale = draw(st.integers(0, min(30, precision)))
    unscaled = draw(st.integers(-(10**precision) + 1, 10**precision - 1))
    return Decimal(f"{unscaled}E-{scale}"), precision, scale


@given(decimals())
def test_decimal_round_trip(case: tuple[Decimal, int, int]) -> None:
    value, precision, scale = case
    raw = encode_decimal(value, precision, scale)
    assert len(raw) == decimal_size(precision, scale)
    assert make_decimal(precision, scale)(raw) == value


def test_decimal_known_bytes() -> None:
    assert make_decimal(10, 2)(encode_decimal(Decimal("-1234.56"), 10, 2)) == Decimal("-1234.56")
    assert make_decimal(65, 30)(encode_decimal(Decimal("9" * 35 + "." + "9" * 30), 65, 30)) == Decimal(
        "9" * 35 + "." + "9" * 30
    )


def time2_bytes(text_sign: int, h: int, m: int, s: int, us: int, fsp: int) -> bytes:
    """Reference TIME2 encoder after my_time_packed_to_binary."""
    packed = ((h << 12 | m << 6 | s) << 24) + us
    packed *= text_sign
    if fsp == 0:
        return ((packed >> 24) + 0x800000).to_bytes(3, "big")
    assert fsp == 6
    return (packed + 0x800000000000).to_bytes(6, "big")


@pytest.mark.parametrize(
    ("sign", "h", "m", "s", "us"),
    [
        (1, 838, 59, 59, 999999),
        (-1, 838, 59, 59, 999999),
        (-1, 0, 0, 0, 1),
        (1, 25, 0, 0, 0),
        (-1, 12, 34, 56, 0),
    ],
)
def test_time2_fsp6(sign: int, h: int, m: int, s: int, us: int) -> None:
    expected = dt.timedelta(hours=h, minutes=m, seconds=s, microseconds=us) * sign
    assert make_time2(6)(time2_bytes(sign, h, m, s, us, 6)) == expected


def test_time2_fsp0_negative_and_over_24h() -> None:
    assert make_time2(0)(time2_bytes(-1, 100, 1, 2, 0, 0)) == -dt.timedelta(hours=100, minutes=1, seconds=2)


def test_datetime2_and_zero_dates() -> None:
    def dt2(y: int, mo: int, d: int, h: int, mi: int, s: int) -> bytes:
        ymd = (y * 13 + mo) << 5 | d
        return ((ymd << 17 | h << 12 | mi << 6 | s) + 0x8000000000).to_bytes(5, "big")

    where = ("db", "t", "c")
    expected = dt.datetime(2024, 2, 29, 1, 2, 3)
    assert make_datetime2(0, ZeroDatePolicy.NULL, where)(dt2(2024, 2, 29, 1, 2, 3)) == expected
    frac = (123456).to_bytes(3, "big")
    decoded = make_datetime2(6, ZeroDatePolicy.NULL, where)(dt2(2024, 1, 1, 0, 0, 0) + frac)
    assert isinstance(decoded, dt.datetime) and decoded.microsecond == 123456
    zero = dt2(0, 0, 0, 0, 0, 0)
    assert make_datetime2(0, ZeroDatePolicy.NULL, where)(zero) is None
    assert make_datetime2(0, ZeroDatePolicy.STRING, where)(zero) == "0000-00-00 00:00:00"
    with pytest.raises(ZeroDateError, match=r"db\.t\.c"):
        make_datetime2(0, ZeroDatePolicy.ERROR, where)(zero)
    assert make_date(ZeroDatePolicy.STRING, where)(2024 << 9 | 0 << 5 | 10) == "2024-00-10"
    assert make_date(ZeroDatePolicy.NULL, where)(2024 << 9 | 2 << 5 | 29) == dt.date(2024, 2, 29)


def test_text_codecs_and_extended_types() -> None:
    latin1 = python_codec("latin1")
    assert latin1 is not None and latin1(b"\x80\xe9\x81") == "€é\x81"  # MariaDB latin1 is cp1252-like
    utf8 = python_codec("utf8mb4")
    assert utf8 is not None and utf8("😀".encode()) == "😀"
    assert python_codec("binary") is None
    with pytest.raises(LookupError):
        python_codec("no-such-charset")
    assert format_uuid(bytes(range(16))) == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert format_inet4(bytes([10, 0, 0, 255])) == "10.0.0.255"
    assert format_inet6(bytes(16)) == "::"


def test_unsupported_type_names_the_column() -> None:
    tm = TableMap(1, "shop", "orders", (ColumnSpec("doc", FieldType.JSON, 4, True),), (), True)
    with pytest.raises(UnsupportedColumnType, match=r"shop\.orders\.doc") as info:
        compile_rows_decoder(tm, lambda _: "utf8mb4")
    assert info.value.type_name == "json (binary)"
