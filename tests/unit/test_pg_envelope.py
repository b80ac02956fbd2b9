"""A PostgreSQL change on the wire: source.connector "postgresql", its LSN position, the published schema."""

from __future__ import annotations

import jsonschema
import orjson

from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import lsn_position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.envelope import EnvelopeEncoder
from cdc.stream.json_schema import value_schema

SCHEMA = TableSchema.build(
    TableRef("public", "acct"),
    (
        Column("id", "integer", ArrowType(ArrowKind.INT32), False),
        Column("v", "text", ArrowType(ArrowKind.STRING)),
    ),
    ("id",),
)


def test_postgresql_envelope_names_its_connector_and_lsn() -> None:
    encoder = EnvelopeEncoder("shop")
    first = lsn_position(0x16_B374D848, 0, 771)
    events = [
        ChangeEvent(Op.CREATE, SCHEMA, (i,), None, (i, "x"), first.at_row(i), 1_700_000_000_000, "0-0-771")
        for i in range(3)
    ]
    validator = jsonschema.Draft202012Validator(value_schema("shop", SCHEMA))
    # the first row (plain path), the next ones (spliced template path), and the dict path
    values = [orjson.loads(encoder.encode(e)[1]) for e in events] + [encoder.value(events[1])]
    for value in values:
        validator.validate(value)
        assert value["source"]["connector"] == "postgresql"
    assert [v["source"]["position"] for v in values[:3]] == [e.position.to_string() for e in events]
    assert values[2]["source"]["position"].startswith("pgl1:0000000016:00B374D848:0000000002:")
