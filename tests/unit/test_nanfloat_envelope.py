"""real/double NaN and ±Infinity in the JSON envelope: the strings "NaN", "Infinity", "-Infinity",
the same on the pure-Python and the compiled (headwater_native) paths, allowed by the topic's JSON
Schema, and read back to the floats they were."""

from __future__ import annotations

import math
from typing import Any

import jsonschema
import orjson
import pytest

from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.envelope import EnvelopeEncoder
from cdc.stream.json_decode import row_decoder
from cdc.stream.json_schema import value_schema
from cdc.stream.json_values import encode_value, row_encoder
from cdc.stream.native_rows import dumps, row_plan

INF = math.inf
SCHEMA = TableSchema.build(
    TableRef("public", "f"),
    (
        Column("id", "integer", ArrowType(ArrowKind.INT32), False),
        Column("r", "real", ArrowType(ArrowKind.FLOAT32), True),
        Column("d", "double precision", ArrowType(ArrowKind.FLOAT64), True),
    ),
    ("id",),
)
ROWS = [(1, math.nan, math.nan), (2, INF, -INF), (3, -INF, INF), (4, 1.5, -2.25), (5, None, None)]
JSON_ROWS: list[dict[str, Any]] = [
    {"id": 1, "r": "NaN", "d": "NaN"},
    {"id": 2, "r": "Infinity", "d": "-Infinity"},
    {"id": 3, "r": "-Infinity", "d": "Infinity"},
    {"id": 4, "r": 1.5, "d": -2.25},
    {"id": 5, "r": None, "d": None},
]


def _event(n: int, row: tuple[object, ...]) -> ChangeEvent:
    pos = Position(Gtid(0, 1, n), "bin.000001", 100 * n, 0)
    return ChangeEvent(Op.CREATE, SCHEMA, (row[0],), None, row, pos, 1_700_000_000_000, str(pos.gtid))  # type: ignore[arg-type]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def test_nanfloat_values_are_strings_on_both_paths() -> None:
    assert [encode_value(SCHEMA.columns[2], v) for v in (math.nan, INF, -INF, 0.5)] == [
        "NaN",
        "Infinity",
        "-Infinity",
        0.5,
    ]
    encode, plan = row_encoder(SCHEMA.columns), row_plan(SCHEMA.columns)
    for row, want in zip(ROWS, JSON_ROWS, strict=True):
        assert encode(row) == want
        assert plan.encode(row) == dumps(want)  # the compiled path, byte for byte
    encoder = EnvelopeEncoder("nanfloat")
    for n, (row, want) in enumerate(zip(ROWS, JSON_ROWS, strict=True), 1):
        event = _event(n, row)
        assert orjson.loads(encoder.encode(event)[1])["after"] == want
        assert encoder.value(event)["after"] == want


def test_nanfloat_schema_allows_the_three_strings_only() -> None:
    validator = jsonschema.Draft202012Validator(value_schema("nanfloat", SCHEMA))
    encoder = EnvelopeEncoder("nanfloat")
    for n, row in enumerate(ROWS, 1):
        validator.validate(orjson.loads(encoder.encode(_event(n, row))[1]))
    envelope = orjson.loads(encoder.encode(_event(9, ROWS[3]))[1])
    for want in JSON_ROWS:
        validator.validate({**envelope, "after": want})
    for wrong in ("nan", "inf", "1.5", "Infinity "):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**envelope, "after": {"id": 4, "r": wrong, "d": 1.0}})


def test_nanfloat_decoded_back_to_floats() -> None:
    decode = row_decoder(SCHEMA)
    for row, image in zip(ROWS, JSON_ROWS, strict=True):
        got = decode(image)
        assert got is not None and all(_same(w, g) for w, g in zip(row, got, strict=True)), (row, got)
    with pytest.raises(ValueError, match="'nan'"):
        decode({"id": 1, "r": "nan", "d": None})
