"""Embedded mode's batches as column chunks leave what the same batches as events leave.

One stream of embedded batches (positions in order, no Kafka offsets) goes to two fresh targets of a
kind: as ``event_chunks`` (what the embedded daemon hands its sinks) into one, as a plain tuple of
ChangeEvents into the other; tables and applied positions must then be equal. The stream holds
inserts, repeated updates, deletes of keys held and of keys inserted in the same batch, a key that
moves, a delete then an insert again; and a batch that starts inside what the sink already holds
(a restart from the lowest position over several sinks), which must skip exactly what it holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from cdc.config.models import IcebergSinkConfig
from cdc.core.events import ChangeEvent, ColumnValue, Op
from cdc.core.positions import Gtid, Position
from cdc.daemon.embedded_columns import EventChunk, event_chunks
from sinks.contract import AppliedState, Sink, SinkBatch
from sinks.iceberg.catalogs import open_catalog
from sinks.iceberg.history_sink import IcebergHistorySink
from tests.sinks.sql_targets import SqlTarget, make_pair
from tests.sinks.test_sinkcol_postgres import PAGE, _row


def _txn(seq: int) -> Position:
    return Position(Gtid(0, 7703, seq), "mariadb-bin.000009", 1000 + 100 * seq, 0)


def _event(
    op: Op, seq: int, row: int, image: tuple[ColumnValue, ...], before: tuple[ColumnValue, ...] | None = None
) -> ChangeEvent:
    pos = _txn(seq).at_row(row)
    after = None if op is Op.DELETE else image
    before = image if op is Op.DELETE else before
    return ChangeEvent(op, PAGE, (image[0],), before, after, pos, 1_700_000_000_000 + seq, str(pos.gtid))


def _batches() -> list[list[ChangeEvent]]:
    first = [_event(Op.CREATE, 1, i, _row(i, i)) for i in range(60)]
    second = [_event(Op.CREATE, 2, i, _row(100 + i, i + 1)) for i in range(40)]
    second += [_event(Op.UPDATE, 3, i, _row(i, 300 + i), before=_row(i, i)) for i in range(30)]
    second += [_event(Op.UPDATE, 4, i, _row(i, 400 + i), before=_row(i, 300 + i)) for i in range(10)]
    second += [_event(Op.DELETE, 5, i, _row(40 + i, 40 + i)) for i in range(10)]
    second += [_event(Op.DELETE, 6, i, _row(100 + i, i + 1)) for i in range(5)]
    second += [_event(Op.CREATE, 7, i, _row(40 + i, 700 + i)) for i in range(3)]
    third = [_event(Op.CREATE, 9, i, _row(1000 + i, i)) for i in range(30)]
    third += [_event(Op.UPDATE, 10, i, _row(1000 + i, 900 + i), before=_row(1000 + i, i)) for i in range(20)]
    third += [_event(Op.DELETE, 11, i, _row(i, 400 + i)) for i in range(5)]
    # key 50 moves to 500: no columns (the history stores two rows), the batch goes per change
    fourth = [_event(Op.UPDATE, 12, 0, _row(500, 800), before=_row(50, 50))]
    fourth += [_event(Op.CREATE, 12, i, _row(2000 + i, i)) for i in range(1, 20)]
    return [first, second, third, fourth]


def _state(events: Sequence[ChangeEvent]) -> AppliedState:
    return AppliedState(events[-1].position)


def _feed(columns: Sink, events: Sink) -> EventChunk:
    """The stream into both sinks, each batch whole; but before the third, the column sink already
    holds half of it (applied one by one), and then gets the whole batch again."""
    first, second, third, fourth = _batches()
    handed = []
    for batch in (first, second):
        records = event_chunks(batch)
        handed.append(records)
        columns.apply(SinkBatch(records, _state(batch)))
        events.apply(SinkBatch(tuple(batch), _state(batch)))
    half = third[:25]
    columns.apply(SinkBatch(tuple(half), _state(half)))
    columns.apply(SinkBatch(event_chunks(third), _state(third)))
    events.apply(SinkBatch(tuple(third), _state(third)))
    columns.apply(SinkBatch(event_chunks(fourth), _state(fourth)))
    events.apply(SinkBatch(tuple(fourth), _state(fourth)))
    columns.flush()
    events.flush()
    chunk = handed[1].chunks[0]  # type: ignore[attr-defined]
    assert isinstance(chunk, EventChunk)
    return chunk  # the second batch's: its updates and deletes have columns


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgres", marks=pytest.mark.integration),
        pytest.param("mariadb", marks=pytest.mark.integration),
    ]
)
def targets(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[SqlTarget, SqlTarget]]:
    yield from make_pair(request.param, tmp_path, request)


def _rows(target: SqlTarget) -> list[tuple[object, ...]]:
    with target.engine.connect() as conn:
        table = sa.Table("page", sa.MetaData(), schema=target.settings.schema, autoload_with=conn)
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.id))]


def test_sql_tables_equal_the_per_change_path(targets: tuple[SqlTarget, SqlTarget]) -> None:
    columns_target, events_target = targets
    a, b = columns_target.sink(copy_threshold_rows=10), events_target.sink(copy_threshold_rows=10)
    second = _feed(a, b)
    assert second.decoded_columns() is not None  # the sink asked for the columns: it took them
    rows = _rows(columns_target)
    assert rows == _rows(events_target)
    assert len(rows) == 60 + 40 - 10 - 5 + 3 + 30 - 5 + 19  # the moved key counted once
    assert 50 not in [r[0] for r in rows] and 500 in [r[0] for r in rows]
    assert a.applied() == b.applied() == _state(_batches()[3])


def _history(tmp_path: Path, name: str) -> IcebergHistorySink:
    config = IcebergSinkConfig.model_validate(
        {
            "catalog": {"type": "sql", "uri": f"sqlite:///{tmp_path}/{name}.db", "warehouse": f"file://{tmp_path}/{name}"},
            "namespace": "embcol",
            "commit_rows": 1_000_000,
        }
    )  # fmt: skip
    sink = IcebergHistorySink(config, "embcol")
    sink.open()
    return sink


def _history_rows(tmp_path: Path, name: str) -> pa.Table:
    catalog = {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path}/{name}.db",
        "warehouse": f"file://{tmp_path}/{name}",
    }
    return (
        open_catalog(catalog, None).load_table("embcol.page__history").scan().to_arrow().sort_by("_position")
    )


def test_iceberg_history_equals_the_per_change_path(tmp_path: Path) -> None:
    a, b = _history(tmp_path, "columns"), _history(tmp_path, "events")
    second = _feed(a, b)
    assert second.decoded_columns() is not None  # the history took the columns
    assert a.applied() == b.applied() == _state(_batches()[3])
    a.close()
    b.close()
    columns, events = _history_rows(tmp_path, "columns"), _history_rows(tmp_path, "events")
    assert columns.schema == events.schema
    assert columns.to_pylist() == events.to_pylist()
    assert columns.num_rows == sum(len(batch) for batch in _batches()) + 1  # the key move: two rows
