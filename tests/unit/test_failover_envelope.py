"""The envelope's spliced fast path writes a later era's positions right (issue 8, item 16)."""

from __future__ import annotations

import orjson

from cdc.core.events import ChangeEvent
from cdc.core.positions import Gtid, Position
from cdc.stream.envelope import EnvelopeEncoder, dumps
from tests.unit.test_stream_envelope_bytes import events


def test_fast_path_in_a_later_era() -> None:
    encoder = EnvelopeEncoder("p")
    for era in (0, 1, 12, 0):  # a template of one era is never reused for another
        for event in events():
            p = event.position
            moved = Position(p.gtid, p.file, p.offset, p.row, era)
            shifted = ChangeEvent(
                event.op,
                event.schema,
                event.key,
                event.before,
                event.after,
                moved,
                event.source_ts_ms,
                event.transaction_id,
            )
            _key, value = encoder.encode(shifted, None, 123)
            assert orjson.loads(value) == orjson.loads(dumps(encoder.value(shifted, None, 123)))
            assert orjson.loads(value)["source"]["position"] == moved.to_string()
    assert Position(Gtid(0, 1, 1), "bin.000001", 4, 0, 1).to_string().startswith("mdb2:0000000001:")
