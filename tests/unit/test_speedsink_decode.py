"""The consume path builds ChangeEvents through the slots' setters (kafka_reader._change_event): a
consumed envelope decodes to an event equal, field for field, to the one that was encoded."""

import dataclasses
import datetime as dt
from decimal import Decimal

import orjson
import pytest

from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, RowImage
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.envelope import EnvelopeEncoder
from cdc.stream.json_decode import row_decoder
from cdc.stream.kafka_reader import KafkaChangeReader

SCHEMA = TableSchema.build(
    TableRef("speedsink", "rev"),
    (
        Column("id", "bigint unsigned", ArrowType(ArrowKind.UINT64), False),
        Column("sha1", "varbinary(32)", ArrowType(ArrowKind.BINARY)),
        Column("score", "decimal(10,4)", ArrowType(ArrowKind.DECIMAL, 10, 4)),
        Column("at", "datetime(6)", ArrowType(ArrowKind.TIMESTAMP)),
        Column("note", "text", ArrowType(ArrowKind.STRING)),
    ),
    ("id",),
)
ROW: RowImage = (7, b"\x00\xffab", Decimal("1.2500"), dt.datetime(2024, 1, 2, 3, 4, 5, 6), "n\u00e9")
MOVED: RowImage = (8, None, None, dt.datetime(2024, 1, 2), None)


def test_change_event_has_no_post_init_the_fast_path_would_skip() -> None:
    assert not hasattr(ChangeEvent, "__post_init__")


@pytest.mark.parametrize(
    ("op", "before", "after"),
    [(Op.CREATE, None, ROW), (Op.UPDATE, ROW, MOVED), (Op.DELETE, ROW, None), (Op.READ, None, ROW)],
)
def test_a_consumed_envelope_decodes_to_the_event_encoded(
    op: Op, before: RowImage | None, after: RowImage | None
) -> None:
    position = Position(Gtid(0, 1, 99), "mariadb-bin.000060", 1941, 3)
    image = after if after is not None else before
    assert image is not None
    event = ChangeEvent(op, SCHEMA, (image[0],), before, after, position, 1_700_000_000_000, "0-1-99")
    reader = KafkaChangeReader(KafkaStreamConfig(bootstrap_servers="127.0.0.1:1"), "wiki", lambda p: {})
    reader._schemas.known[SCHEMA.version] = (SCHEMA, row_decoder(SCHEMA), SCHEMA.key_indexes())
    _, value = EnvelopeEncoder("wiki").encode_change(event, ts_ms=5)
    for _ in range(2):  # the second parse of the position comes from the transaction memo
        decoded = reader._decode(orjson.loads(value))
        assert decoded == event
        assert dataclasses.astuple(decoded) == dataclasses.astuple(event)
        assert decoded.position.to_string() == position.to_string()
