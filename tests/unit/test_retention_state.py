"""Retention keeps each history table's own stored state, which a crash between table commits needs.

A crash after table a committed a cycle and before the progress table did leaves table a ahead of
``applied()``; on re-delivery it skips its own rows by the position (embedded) or the Kafka offsets
(Kafka mode) in its latest snapshot summary. Retention expires every snapshot before its own, so its
snapshots must carry that state forward, or the re-delivered rows land twice.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from cdc.core.events import Op
from cdc.core.schemas import TableRef
from sinks.iceberg import maintain
from tests.unit.test_iceberg_sink import (
    _killed,
    batch,
    config,
    event,
    kafka_batch,
    opened,
    pos,
    positions,
    schema,
)

NOW = int(time.time() * 1000)
OLD = NOW - 200 * 86_400_000


def _ninety_days(_ref: TableRef) -> dt.timedelta:
    return dt.timedelta(days=90)


@pytest.mark.parametrize("kafka", [False, True], ids=["embedded", "kafka"])
def test_a_table_ahead_of_progress_skips_its_own_rows_after_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka: bool
) -> None:
    cfg = config(tmp_path)
    a, b = schema("shop", "a"), schema("shop", "b")
    offsets: dict[str, dict[str, int]] = {"round1": {"t:0": 2}, "round2": {"t:0": 4}} if kafka else {}
    sink = opened(cfg)
    round1 = (
        event(Op.CREATE, a, 1, (1, "old"), ts_ms=OLD),
        event(Op.CREATE, b, 1, (1, "b1"), row=1, ts_ms=NOW),
    )
    sink.apply(kafka_batch(*round1, offsets=offsets["round1"]) if kafka else batch(*round1))
    sink.flush()
    round2_events = (
        event(Op.CREATE, a, 2, (2, "a2"), ts_ms=NOW),
        event(Op.CREATE, b, 2, (2, "b2"), row=1, ts_ms=NOW),
    )
    round2 = kafka_batch(*round2_events, offsets=offsets["round2"]) if kafka else batch(*round2_events)
    sink.apply(round2)
    monkeypatch.setattr(sink._writers[TableRef("shop", "b")], "commit", _killed)
    with pytest.raises(KeyboardInterrupt):
        sink.flush()  # table a landed round 2, table b and the progress table did not
    monkeypatch.undo()

    report = maintain(cfg, "pipe", retention=_ninety_days)
    assert report.rows_deleted == 1  # table a's old row

    again = opened(cfg)
    again.apply(round2)  # re-delivered from applied(): round 1's position / offsets
    again.close()
    assert positions(cfg, "shop.a") == [pos(2).to_string()]  # once, not twice
    assert positions(cfg, "shop.b") == [pos(1, 1).to_string(), pos(2, 1).to_string()]
