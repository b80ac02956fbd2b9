"""MariaDB from Kafka, column-wise: the same serving rows as the per-change path, or that path.

The SQLite test's stream (every kind of the type table, and a key of seven kinds) goes to two fresh
MariaDB databases: as chunks through ``apply_columns`` into one, as ChangeEvents through the sink's
per-change path into the other; the tables must then be equal row by row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.core.events import Op
from sinks.contract import SinkBatch
from sinks.sql.columnar_apply import apply_columns
from tests.sinks.sql_targets import SqlTarget, make_pair
from tests.sinks.test_sinkcol_sqlite import ALL, KEYED, _chunks, _event, _keyed_row, _row, _state, _stream
from tests.unit.test_sinkcol_columns import _reader, _values

pytestmark = pytest.mark.integration


@pytest.fixture
def targets(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[SqlTarget, SqlTarget]]:
    yield from make_pair("mariadb", tmp_path, request)


def _rows(target: SqlTarget, name: str) -> list[tuple[object, ...]]:
    with target.engine.connect() as conn:
        table = sa.Table(name, sa.MetaData(), autoload_with=conn)
        key = [c for c in table.primary_key.columns]
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(*key))]


def test_a_batch_applied_column_wise_leaves_the_rows_the_per_change_path_leaves(
    targets: tuple[SqlTarget, SqlTarget],
) -> None:
    columns_target, events_target = targets
    first_all, second_all = _stream(ALL, _row)
    first_keyed, second_keyed = _stream(KEYED, _keyed_row)
    first, second = first_all + first_keyed, second_all + second_keyed
    a, b = columns_target.sink(copy_threshold_rows=10), events_target.sink(copy_threshold_rows=10)
    for sink in (a, b):  # the tables and their first rows, the usual way
        sink.apply(SinkBatch(first, _state(first, 60, ALL, KEYED)))
    batch = SinkBatch(_chunks(second, 60, ALL, KEYED), _state(second, 200, ALL, KEYED))
    assert apply_columns(a, batch)  # the column-wise path took it
    b.apply(SinkBatch(_reader(ALL, KEYED).events(_values(second)), batch.state))
    for table in ("every_kind", "many_keys"):
        rows = _rows(columns_target, table)
        assert len(rows) == 60 + 40 - 10 - 5 + 3, table
        assert rows == _rows(events_target, table), table
    assert a.applied() == b.applied()


def test_text_longer_than_its_column_goes_the_per_change_way(targets: tuple[SqlTarget, SqlTarget]) -> None:
    columns_target, _ = targets
    first, _second = _stream(ALL, _row)
    sink = columns_target.sink(copy_threshold_rows=10)
    sink.apply(SinkBatch(first, _state(first, 60, ALL)))
    long = [_event(ALL, Op.CREATE, 9, i, _row(200 + i, i)) for i in range(20)]
    name = ALL.columns.index(next(c for c in ALL.columns if c.name == "name"))
    long[3] = _event(ALL, Op.CREATE, 9, 3, (*_row(203, 3)[:name], "x" * 51, *_row(203, 3)[name + 1 :]))
    assert not apply_columns(sink, SinkBatch(_chunks(long, 60, ALL), _state(long, 80, ALL)))
