"""The JSON value mapping of every ColumnValue type (cdc.stream.json_values)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal

import orjson
import pytest

from cdc.core.schemas import ArrowKind, ArrowType, Column
from cdc.stream.envelope import dumps
from cdc.stream.json_values import encode_value, fraction_digits, row_encoder


def col(kind: ArrowKind, source: str = "x", precision: int = 0, scale: int = 0) -> Column:
    return Column("c", source, ArrowType(kind, precision, scale))


def roundtrip(column: Column, value: object) -> object:
    """Encode, serialize and parse back: what a consumer sees."""
    return orjson.loads(dumps({"v": encode_value(column, value)}))["v"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (ArrowKind.UINT64, 18446744073709551615),
        (ArrowKind.UINT64, 0),
        (ArrowKind.INT64, -9223372036854775808),
        (ArrowKind.INT64, 9223372036854775807),
        (ArrowKind.INT8, -128),
        (ArrowKind.INT32, -1),
        (ArrowKind.UINT32, 4294967295),
    ],
)
def test_integers_are_exact_json_numbers(kind: ArrowKind, value: int) -> None:
    text = dumps({"v": encode_value(col(kind), value)})
    assert text == b'{"v":' + str(value).encode() + b"}"
    assert roundtrip(col(kind), value) == value


def test_bool_and_null() -> None:
    assert dumps([encode_value(col(ArrowKind.BOOL), True), encode_value(col(ArrowKind.INT32), None)]) == (
        b"[true,null]"
    )


def test_floats_are_numbers() -> None:
    assert roundtrip(col(ArrowKind.FLOAT64), 1.5e300) == 1.5e300
    assert roundtrip(col(ArrowKind.FLOAT64), -0.1) == -0.1
    f32 = 0.10000000149011612  # float32(0.1) widened, as the decoder gives it
    assert roundtrip(col(ArrowKind.FLOAT32), f32) == f32


@pytest.mark.parametrize(
    ("text", "scale"),
    [
        ("12345678901234567890123456789012345.123456789012345678901234567890", 30),
        ("-0.000000000000000000000000000001", 30),
        ("0.000000000000000000000000000000", 30),
        ("-12.50", 2),
        ("100", 0),
    ],
)
def test_decimal_is_an_exact_plain_string(text: str, scale: int) -> None:
    column = col(ArrowKind.DECIMAL, f"decimal(65,{scale})", 65, scale)
    assert roundtrip(column, decimal.Decimal(text)) == text


def test_decimal_never_uses_exponent() -> None:
    column = col(ArrowKind.DECIMAL, "decimal(65,30)", 65, 30)
    assert encode_value(column, decimal.Decimal("0E-30")) == "0." + "0" * 30
    assert encode_value(col(ArrowKind.DECIMAL, "decimal(10,0)", 10, 0), decimal.Decimal("1E+3")) == "1000"


@pytest.mark.parametrize("raw", [b"", b"\x00\xff\xfe", b"\xc3\x28 invalid utf-8", bytes(range(256))])
def test_bytes_are_base64(raw: bytes) -> None:
    encoded = roundtrip(col(ArrowKind.BINARY, "varbinary(300)"), raw)
    assert isinstance(encoded, str)
    assert base64.b64decode(encoded, validate=True) == raw


def test_strings_keep_4_byte_emoji_as_utf8() -> None:
    value = "snow \u2603 and \U0001f600 and 中文"
    text = dumps({"v": encode_value(col(ArrowKind.STRING, "varchar"), value)})
    assert "\U0001f600".encode() in text  # raw UTF-8, not \ud83d escapes
    assert roundtrip(col(ArrowKind.STRING), value) == value


def test_text_with_invalid_bytes_is_replaced_not_an_error() -> None:
    value = b"ok \xff end".decode("utf-8", "surrogateescape")  # how the decoder hands it over
    assert roundtrip(col(ArrowKind.STRING), value) == "ok \ufffd end"


def test_date() -> None:
    assert roundtrip(col(ArrowKind.DATE, "date"), dt.date(2024, 2, 29)) == "2024-02-29"
    assert roundtrip(col(ArrowKind.DATE, "date"), dt.date(1, 1, 1)) == "0001-01-01"
    assert roundtrip(col(ArrowKind.DATE, "date"), "0000-00-00") == "0000-00-00"  # zero date kept as text


def test_datetime_has_exactly_fsp_digits_and_no_zone() -> None:
    moment = dt.datetime(2024, 2, 29, 13, 45, 1, 123456)
    assert roundtrip(col(ArrowKind.TIMESTAMP, "datetime(6)"), moment) == "2024-02-29T13:45:01.123456"
    assert roundtrip(col(ArrowKind.TIMESTAMP, "datetime(3)"), moment.replace(microsecond=250000)) == (
        "2024-02-29T13:45:01.250"
    )
    assert roundtrip(col(ArrowKind.TIMESTAMP, "datetime"), moment.replace(microsecond=0)) == (
        "2024-02-29T13:45:01"
    )
    assert roundtrip(col(ArrowKind.TIMESTAMP, "datetime(6)"), moment.replace(microsecond=0)) == (
        "2024-02-29T13:45:01.000000"
    )


def test_datetime_never_drops_precision_the_schema_does_not_announce() -> None:
    moment = dt.datetime(2024, 1, 1, 0, 0, 0, 7)
    assert roundtrip(col(ArrowKind.TIMESTAMP, "datetime"), moment) == "2024-01-01T00:00:00.000007"


def test_timestamp_is_utc_with_z() -> None:
    moment = dt.datetime(2024, 2, 29, 13, 45, 1, 500000, tzinfo=dt.UTC)
    assert roundtrip(col(ArrowKind.TIMESTAMP_UTC, "timestamp(2)"), moment) == "2024-02-29T13:45:01.50Z"
    assert roundtrip(col(ArrowKind.TIMESTAMP_UTC, "timestamp"), moment.replace(microsecond=0)) == (
        "2024-02-29T13:45:01Z"
    )
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert roundtrip(
        col(ArrowKind.TIMESTAMP_UTC, "timestamp"), dt.datetime(2024, 1, 1, 2, tzinfo=plus_two)
    ) == ("2024-01-01T00:00:00Z")


@pytest.mark.parametrize(
    ("delta", "source", "expected"),
    [
        (dt.timedelta(hours=-838, minutes=-59, seconds=-59), "time(6)", "-838:59:59.000000"),
        (dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=999999), "time(6)", "838:59:59.999999"),
        (dt.timedelta(hours=25, minutes=1, seconds=2), "time", "25:01:02"),
        (dt.timedelta(0), "time", "00:00:00"),
        (dt.timedelta(microseconds=-1), "time(6)", "-00:00:00.000001"),
        (dt.timedelta(hours=-1, microseconds=500000), "time(1)", "-00:59:59.5"),
        (dt.timedelta(seconds=1, microseconds=10), "time", "00:00:01.000010"),
    ],
)
def test_time_may_be_negative_or_exceed_24h(delta: dt.timedelta, source: str, expected: str) -> None:
    assert roundtrip(col(ArrowKind.DURATION, source), delta) == expected


def test_fraction_digits() -> None:
    assert fraction_digits(col(ArrowKind.TIMESTAMP, "datetime(3)")) == 3
    assert fraction_digits(col(ArrowKind.TIMESTAMP, "datetime")) == 0


def test_row_encoder_converts_only_what_needs_it() -> None:
    columns = (
        Column("id", "int", ArrowType(ArrowKind.INT32), False),
        Column("price", "decimal(5,2)", ArrowType(ArrowKind.DECIMAL, 5, 2)),
        Column("blob", "blob", ArrowType(ArrowKind.BINARY)),
    )
    encode = row_encoder(columns)
    assert encode((1, decimal.Decimal("1.50"), None)) == {"id": 1, "price": "1.50", "blob": None}
    plain = row_encoder(columns[:1])
    assert plain((7,)) == {"id": 7}
