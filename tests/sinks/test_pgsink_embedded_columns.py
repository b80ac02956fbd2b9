"""PostgreSQL, embedded mode (no Kafka offsets), column-wise: the per-change path's rows and position.

Embedded batches come in one position order and carry no offsets: ``apply_columns`` takes their
chunks when every change is past the position the sink holds (the stored state is then the batch's
own), and leaves a batch holding any change at or below it to the per-change path, which skips those.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.core.events import ChangeEvent, Op
from sinks.contract import AppliedState, SinkBatch
from sinks.sql.columnar_apply import apply_columns
from tests.sinks.sql_targets import SqlTarget, make_pair
from tests.sinks.test_sinkcol_postgres import PAGE, _chunks, _event, _row, _rows, _stream
from tests.unit.test_sinkcol_columns import _reader, _values

pytestmark = pytest.mark.integration


@pytest.fixture
def targets(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[SqlTarget, SqlTarget]]:
    yield from make_pair("postgres", tmp_path, request)


def _embedded(events: list[ChangeEvent]) -> AppliedState:
    return AppliedState(max(e.position for e in events), {})


def test_an_embedded_batch_goes_column_wise_and_stores_its_own_position(
    targets: tuple[SqlTarget, SqlTarget],
) -> None:
    columns_target, events_target = targets
    first, second = _stream()
    a, b = columns_target.sink(copy_threshold_rows=10), events_target.sink(copy_threshold_rows=10)
    for sink in (a, b):
        sink.apply(SinkBatch(first, _embedded(first)))
    batch = SinkBatch(_chunks(second, 60), _embedded(second))
    assert apply_columns(a, batch)
    b.apply(SinkBatch(_reader(PAGE).events(_values(second)), batch.state))
    assert _rows(columns_target) == _rows(events_target)
    assert a.applied() == b.applied() == batch.state


def test_an_embedded_batch_with_changes_the_sink_holds_goes_the_per_change_way(
    targets: tuple[SqlTarget, SqlTarget],
) -> None:
    columns_target, events_target = targets
    first, _second = _stream()
    a, b = columns_target.sink(copy_threshold_rows=10), events_target.sink(copy_threshold_rows=10)
    for sink in (a, b):
        sink.apply(SinkBatch(first[:40], _embedded(first[:40])))
    # a replay from inside what is held: the first 40 are there, 20 are new (updated on the way)
    again = first + [_event(Op.UPDATE, 8, i, _row(i, 800 + i), before=_row(i, i)) for i in range(5)]
    before = _rows(columns_target)
    assert not apply_columns(a, SinkBatch(_chunks(again, 40), _embedded(again)))
    assert _rows(columns_target) == before  # nothing written
    for sink in (a, b):
        sink.apply(SinkBatch(_reader(PAGE).events(_values(again)), _embedded(again)))
    assert _rows(columns_target) == _rows(events_target)
    assert len(_rows(columns_target)) == 60
