"""Envelope values decode back to exactly the values that were encoded, for every Arrow kind."""

from __future__ import annotations

import datetime as dt
import decimal

import orjson

from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.json_decode import parse_arrow_type, row_decoder, table_schema_from_record
from cdc.stream.json_schema import table_schema_record
from cdc.stream.json_values import row_encoder

COLUMNS = (
    Column("id", "bigint unsigned", ArrowType(ArrowKind.UINT64), False),
    Column("i8", "tinyint", ArrowType(ArrowKind.INT8)),
    Column("flag", "tinyint(1)", ArrowType(ArrowKind.BOOL)),
    Column("f", "float", ArrowType(ArrowKind.FLOAT32)),
    Column("d", "double", ArrowType(ArrowKind.FLOAT64)),
    Column("dec", "decimal(65,30)", ArrowType(ArrowKind.DECIMAL, 65, 30)),
    Column("dec2", "decimal(5,2)", ArrowType(ArrowKind.DECIMAL, 5, 2)),
    Column("s", "varchar(20)", ArrowType(ArrowKind.STRING)),
    Column("b", "varbinary(10)", ArrowType(ArrowKind.BINARY)),
    Column("day", "date", ArrowType(ArrowKind.DATE)),
    Column("wall", "datetime(6)", ArrowType(ArrowKind.TIMESTAMP)),
    Column("instant", "timestamp(3)", ArrowType(ArrowKind.TIMESTAMP_UTC)),
    Column("t", "time(6)", ArrowType(ArrowKind.DURATION)),
    Column("t0", "time", ArrowType(ArrowKind.DURATION)),
)
SCHEMA = TableSchema.build(TableRef("db", "t"), COLUMNS, ("id",))

ROWS = [
    (
        18446744073709551615,
        -128,
        True,
        0.10000000149011612,
        0.1,
        decimal.Decimal("-99999999999999999999999999999999999.999999999999999999999999999999"),
        decimal.Decimal("0.05"),
        "😀 ok",
        b"\x00\xff\x10",
        dt.date(2024, 2, 29),
        dt.datetime(2024, 2, 29, 13, 45, 1, 123456),
        dt.datetime(1970, 1, 1, 0, 0, 1, 250000, tzinfo=dt.UTC),
        -dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=999999),
        dt.timedelta(hours=25),
    ),
    (0, None, False, None, None, None, None, "", b"", None, None, None, None, None),
]


def test_rows_round_trip_through_json() -> None:
    encode, decode = row_encoder(COLUMNS), row_decoder(SCHEMA)
    for row in ROWS:
        wire = orjson.loads(orjson.dumps(encode(row)))
        assert decode(wire) == row


def test_schema_record_round_trips() -> None:
    record = orjson.loads(
        orjson.dumps(table_schema_record("p", SCHEMA, Position(Gtid(0, 1, 1), "bin.000001", 4)))
    )
    assert table_schema_from_record(record) == SCHEMA


def test_arrow_type_text_round_trips() -> None:
    for column in COLUMNS:
        assert parse_arrow_type(str(column.arrow_type)) == column.arrow_type
