"""The Kafka checkpoint record carries the source's server_id and GTID state (issue 8, item 16)."""

from __future__ import annotations

import datetime as dt

import orjson

from cdc.core.positions import Gtid, GtidState, Position, ReadContext, RestartPoint
from cdc.stream.checkpoints import checkpoint_record, parse_checkpoint

NOW = dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC)


def test_the_checkpoint_names_the_server_and_gtid_state() -> None:
    context = ReadContext(7, GtidState.parse("0-1-41,1-3-7"))
    point = RestartPoint(Position(Gtid(0, 1, 42), "mariadb-bin.000003", 120, 0, 1, context), 2)
    value = checkpoint_record("wiki", point, NOW, 2, 1, {"db.t": 2}, 5401)
    raw = orjson.loads(value)
    assert raw["source_server_id"] == 7 and raw["gtid_state"] == "0-1-41,1-3-7"
    loaded = parse_checkpoint(value)
    assert loaded.restart == point and loaded.restart.context == context
    assert loaded.restart.transaction.era == 1


def test_an_older_checkpoint_still_loads() -> None:
    point = RestartPoint(Position(Gtid(0, 1, 42), "mariadb-bin.000003", 120), 2)
    value = checkpoint_record("wiki", point, NOW, 2, 1, {}, 5401)
    assert "gtid_state" not in orjson.loads(value)
    assert parse_checkpoint(value).restart.context is None
