"""Envelopes, keys and JSON Schemas (cdc.stream.envelope, cdc.stream.json_schema)."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import jsonschema
import orjson
import pytest

from cdc.core.events import ChangeEvent, Op, SchemaChange, SchemaChangeKind
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.envelope import EnvelopeEncoder, TransactionOrder
from cdc.stream.json_schema import (
    key_schema,
    schema_change_record,
    table_schema_record,
    value_schema,
)

POS = Position(Gtid(0, 7, 1234), "mysql-bin.000003", 4096)

ALL_TYPES = (
    Column("id", "bigint unsigned", ArrowType(ArrowKind.UINT64), False),
    Column("tenant", "smallint", ArrowType(ArrowKind.INT16), False),
    Column("flag", "bool", ArrowType(ArrowKind.BOOL)),
    Column("small", "tinyint", ArrowType(ArrowKind.INT8)),
    Column("big", "bigint", ArrowType(ArrowKind.INT64)),
    Column("f", "float", ArrowType(ArrowKind.FLOAT32)),
    Column("d", "double", ArrowType(ArrowKind.FLOAT64)),
    Column("money", "decimal(65,30)", ArrowType(ArrowKind.DECIMAL, 65, 30)),
    Column("name", "varchar", ArrowType(ArrowKind.STRING)),
    Column("raw", "varbinary(16)", ArrowType(ArrowKind.BINARY)),
    Column("day", "date", ArrowType(ArrowKind.DATE)),
    Column("at", "datetime(6)", ArrowType(ArrowKind.TIMESTAMP)),
    Column("ts", "timestamp(3)", ArrowType(ArrowKind.TIMESTAMP_UTC)),
    Column("dur", "time(6)", ArrowType(ArrowKind.DURATION)),
)
SCHEMA = TableSchema.build(TableRef("shop", "items"), ALL_TYPES, ("id", "tenant"))
ROW = (
    18446744073709551615,
    -3,
    True,
    -128,
    -9223372036854775808,
    0.5,
    -1.25,
    decimal.Decimal("-12345678901234567890123456789012345.123456789012345678901234567890"),
    "caf\u00e9 \U0001f600",
    b"\xff\x00bin",
    dt.date(2024, 2, 29),
    dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
    dt.datetime(2024, 3, 1, 0, 0, 0, 125000, tzinfo=dt.UTC),
    dt.timedelta(hours=-838, minutes=-59, seconds=-59),
)
NULL_ROW = (1, 2, *([None] * (len(ALL_TYPES) - 2)))


def event(
    op: Op, before: Any = None, after: Any = None, key: Any = None, row: int = 0, schema: TableSchema = SCHEMA
) -> ChangeEvent:
    return ChangeEvent(op, schema, key, before, after, POS.at_row(row), 1_700_000_000_123, "0-7-1234")


def decode(encoded: tuple[bytes | None, bytes]) -> tuple[Any, Any]:
    key, value = encoded
    return (None if key is None else orjson.loads(key)), orjson.loads(value)


def validators(schema: TableSchema = SCHEMA) -> tuple[jsonschema.Draft202012Validator, ...]:
    out = []
    for doc in (key_schema("wiki", schema), value_schema("wiki", schema)):
        jsonschema.Draft202012Validator.check_schema(doc)
        out.append(jsonschema.Draft202012Validator(doc))
    return tuple(out)


def test_insert_envelope_has_debezium_fields() -> None:
    key, value = decode(
        EnvelopeEncoder("wiki").encode(event(Op.CREATE, after=ROW, key=ROW[:2], row=5), ts_ms=42)
    )
    assert key == {"id": 18446744073709551615, "tenant": -3}
    assert value["before"] is None
    assert value["op"] == "c"
    assert value["ts_ms"] == 42
    assert value["transaction"] is None
    assert value["after"]["money"] == "-12345678901234567890123456789012345.123456789012345678901234567890"
    assert value["after"]["raw"] == "/wBiaW4="
    assert value["after"]["name"] == "caf\u00e9 \U0001f600"
    assert value["after"]["at"] == "2024-02-29T23:59:59.999999"
    assert value["after"]["ts"] == "2024-03-01T00:00:00.125Z"
    assert value["after"]["dur"] == "-838:59:59.000000"
    assert value["source"] == {
        "version": value["source"]["version"],
        "connector": "mariadb",
        "name": "wiki",
        "ts_ms": 1_700_000_000_123,
        "snapshot": "false",
        "db": "shop",
        "table": "items",
        "server_id": 7,
        "gtid": "0-7-1234",
        "file": "mysql-bin.000003",
        "pos": 4096,
        "row": 5,
        "position": POS.at_row(5).to_string(),
        "schema_version": SCHEMA.version,
    }


@pytest.mark.parametrize(
    ("op", "before", "after", "key"),
    [
        (Op.CREATE, None, ROW, ROW[:2]),
        (Op.READ, None, NULL_ROW, NULL_ROW[:2]),
        (Op.UPDATE, NULL_ROW, ROW, ROW[:2]),
        (Op.DELETE, ROW, None, ROW[:2]),
        (Op.TRUNCATE, None, None, None),
    ],
)
def test_every_op_validates_against_the_published_schemas(op: Op, before: Any, after: Any, key: Any) -> None:
    key_v, value_v = validators()
    order = TransactionOrder("0-7-1234", 3, 2)
    key_json, value_json = decode(EnvelopeEncoder("wiki").encode(event(op, before, after, key), order))
    value_v.validate(value_json)
    assert value_json["op"] == op.value
    assert value_json["transaction"] == {"id": "0-7-1234", "total_order": 3, "data_collection_order": 2}
    assert value_json["source"]["snapshot"] == ("true" if op is Op.READ else "false")
    if op is Op.TRUNCATE:
        assert key_json is None
    else:
        key_v.validate(key_json)


def test_schema_rejects_a_wrong_value() -> None:
    _, value_v = validators()
    _, good = decode(EnvelopeEncoder("wiki").encode(event(Op.CREATE, after=ROW, key=ROW[:2])))
    bad = {**good, "after": {**good["after"], "money": "1.5"}}  # scale 30 means 30 fraction digits
    with pytest.raises(jsonschema.ValidationError):
        value_v.validate(bad)
    bad = {**good, "after": {**good["after"], "id": -1}}
    with pytest.raises(jsonschema.ValidationError):
        value_v.validate(bad)


def test_key_taken_from_the_image_when_the_event_has_none() -> None:
    key, _ = decode(EnvelopeEncoder("wiki").encode(event(Op.DELETE, before=ROW)))
    assert key == {"id": 18446744073709551615, "tenant": -3}


def test_keyless_table_is_keyed_by_the_whole_row() -> None:
    cols = (Column("a", "int", ArrowType(ArrowKind.INT32)), Column("b", "date", ArrowType(ArrowKind.DATE)))
    schema = TableSchema.build(TableRef("shop", "log"), cols, ())
    enc = EnvelopeEncoder("wiki")
    key, _ = decode(enc.encode(event(Op.CREATE, after=(1, dt.date(2020, 1, 2)), schema=schema)))
    assert key == {"a": 1, "b": "2020-01-02"}
    key, _ = decode(enc.encode(event(Op.DELETE, before=(1, None), schema=schema)))
    assert key == {"a": 1, "b": None}
    key_v, _ = validators(schema)
    key_v.validate({"a": 1, "b": None})


def test_table_schema_record_is_valid_json_schema_and_describes_the_table() -> None:
    record = orjson.loads(orjson.dumps(table_schema_record("wiki", SCHEMA, POS)))
    assert record["type"] == "table_schema"
    assert record["version"] == SCHEMA.version
    assert record["primary_key"] == ["id", "tenant"]
    assert [c["name"] for c in record["columns"]] == [c.name for c in ALL_TYPES]
    jsonschema.Draft202012Validator.check_schema(record["value_schema"])
    jsonschema.Draft202012Validator.check_schema(record["key_schema"])
    assert record["value_schema"]["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_zero_dates_kept_as_text_still_validate() -> None:
    _, value_v = validators()
    row = list(NULL_ROW)
    row[10], row[11], row[12] = "0000-00-00", "0000-00-00 00:00:00", "0000-00-00 00:00:00.000"
    _, value = decode(EnvelopeEncoder("wiki").encode(event(Op.CREATE, after=tuple(row), key=(1, 2))))
    value_v.validate(value)
    assert value["after"]["at"] == "0000-00-00 00:00:00"


def test_schema_change_record() -> None:
    change = SchemaChange(
        SchemaChangeKind.RENAME,
        TableRef("shop", "items"),
        "RENAME TABLE items TO goods",
        POS,
        1_700_000_000_000,
        "0-7-1234",
        "abc",
        TableRef("shop", "goods"),
    )
    record = schema_change_record(change)
    assert record["ddl"] == "RENAME TABLE items TO goods"
    assert record["position"] == POS.to_string()
    assert record["renamed_to"] == "shop.goods"
    assert record["kind"] == "rename"
