"""PostgreSQL from Kafka, column-wise: the same serving rows as the per-change path, or that path.

The same envelopes (built by the writer's encoder) go to two fresh PostgreSQL schemas: as chunks
through ``apply_columns`` into one, as ChangeEvents through the sink's per-change path into the
other; the tables must then be equal row by row.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.core.events import ChangeEvent, ColumnValue, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.kafka_chunks import ChangeChunk, ChunkRecords
from sinks.contract import AppliedState, SinkBatch
from sinks.sql.columnar_apply import apply_columns
from tests.sinks.sql_targets import SqlTarget, make_pair
from tests.unit.test_sinkcol_columns import _reader, _values

pytestmark = pytest.mark.integration

PAGE = TableSchema.build(
    TableRef("sinkcol", "page"),
    (
        Column("id", "bigint unsigned", ArrowType(ArrowKind.UINT64), False),
        Column("ns", "int", ArrowType(ArrowKind.INT32), True),
        Column("redirect", "tinyint(1)", ArrowType(ArrowKind.BOOL), True),
        Column("title", "varchar(40)", ArrowType(ArrowKind.STRING), True),
        Column("sha", "varbinary(20)", ArrowType(ArrowKind.BINARY), True),
        Column("score", "decimal(10,4)", ArrowType(ArrowKind.DECIMAL, 10, 4), True),
        Column("day", "date", ArrowType(ArrowKind.DATE), True),
        Column("touched", "datetime(6)", ArrowType(ArrowKind.TIMESTAMP), True),
        Column("seen", "timestamp(3)", ArrowType(ArrowKind.TIMESTAMP_UTC), True),
    ),
    ("id",),
)
TOPIC = "sinkcol.sinkcol.page"


def _row(key: int, v: int) -> tuple[ColumnValue, ...]:
    return (
        key,
        None if v % 5 == 0 else v - 50,
        v % 2 == 0,
        "" if v % 7 == 0 else f'title, "{v}"\n\\ ✓',
        None if v % 6 == 0 else bytes([v % 256, 0, 255, 10, 13])[: v % 5 + 1],
        decimal.Decimal(f"{v - 500}.{v % 10000:04d}"),
        dt.date(2020, 1, 1) + dt.timedelta(days=v),
        dt.datetime(2024, 1, 1, 0, 0, 0, (v * 997) % 1_000_000),
        dt.datetime(2024, 6, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=v),
    )


def _event(
    op: Op, seq: int, row: int, image: tuple[ColumnValue, ...], before: tuple[ColumnValue, ...] | None = None
) -> ChangeEvent:
    pos = Position(Gtid(0, 7702, seq), "bin.000004", 1000 + 100 * seq, row)
    after = None if op is Op.DELETE else image
    before = image if op is Op.DELETE else before
    return ChangeEvent(op, PAGE, (image[0],), before, after, pos, 1_700_000_000_000, str(pos.gtid))


def _stream() -> tuple[list[ChangeEvent], list[ChangeEvent]]:
    """A first batch of inserts, then one of every kind: inserts, repeated updates, deletes of
    keys held before and of keys inserted in the same batch, a delete then an insert again."""
    first = [_event(Op.CREATE, 1, i, _row(i, i)) for i in range(60)]
    second = [_event(Op.CREATE, 2, i, _row(100 + i, i + 1)) for i in range(40)]
    second += [_event(Op.UPDATE, 3, i, _row(i, 300 + i), before=_row(i, i)) for i in range(30)]
    second += [_event(Op.UPDATE, 4, i, _row(i, 400 + i), before=_row(i, 300 + i)) for i in range(10)]
    second += [_event(Op.DELETE, 5, i, _row(40 + i, 40 + i)) for i in range(10)]
    second += [_event(Op.DELETE, 6, i, _row(100 + i, i + 1)) for i in range(5)]
    second += [_event(Op.CREATE, 7, i, _row(40 + i, 700 + i)) for i in range(3)]
    return first, second


@pytest.fixture
def targets(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[SqlTarget, SqlTarget]]:
    yield from make_pair("postgres", tmp_path, request)


def _chunks(events: list[ChangeEvent], start: int) -> ChunkRecords:
    """The events as two partitions' chunks (keys split by parity, as a keyed topic would)."""
    reader = _reader(PAGE)
    chunks = []
    for parity in (0, 1):
        mine = [e for e in events if int(e.key[0]) % 2 == parity]  # type: ignore[index, arg-type]
        offsets = list(range(start + 1, start + 1 + len(mine)))
        chunks.append(ChangeChunk(f"{TOPIC}:{parity}", _values(mine), offsets, reader))
    return ChunkRecords(chunks)


def _rows(target: SqlTarget) -> list[tuple[object, ...]]:
    with target.engine.connect() as conn:
        table = sa.Table("page", sa.MetaData(), schema=target.settings.schema, autoload_with=conn)
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.id))]


def _state(events: list[ChangeEvent], offset: int) -> AppliedState:
    return AppliedState(max(e.position for e in events), {f"{TOPIC}:0": offset, f"{TOPIC}:1": offset})


def test_a_batch_applied_column_wise_leaves_the_rows_the_per_change_path_leaves(
    targets: tuple[SqlTarget, SqlTarget],
) -> None:
    columns_target, events_target = targets
    first, second = _stream()
    a, b = columns_target.sink(copy_threshold_rows=10), events_target.sink(copy_threshold_rows=10)
    for sink in (a, b):  # the table and its first rows, the usual way
        sink.apply(SinkBatch(first, _state(first, 60)))
    batch = SinkBatch(_chunks(second, 60), _state(second, 200))
    assert apply_columns(a, batch)  # the column-wise path took it
    b.apply(SinkBatch(_reader(PAGE).events(_values(second)), batch.state))
    assert _rows(columns_target) == _rows(events_target)
    rows = _rows(columns_target)
    assert len(rows) == 60 + 40 - 10 - 5 + 3
    # key 0 after its two updates: every kind's text form landed as the value (binary decoded)
    assert rows[0][:6] == (0, None, True, 'title, "400"\n\\ ✓', b"\x90", decimal.Decimal("-100.0400"))
    assert rows[0][6:] == _row(0, 400)[6:]
    assert a.applied() == b.applied()


def test_a_value_the_target_refuses_goes_the_per_change_way(targets: tuple[SqlTarget, SqlTarget]) -> None:
    columns_target, _ = targets
    first, _second = _stream()
    sink = columns_target.sink(copy_threshold_rows=10)
    sink.apply(SinkBatch(first, _state(first, 60)))
    nul = [_event(Op.CREATE, 9, i, _row(200 + i, i)) for i in range(20)]
    nul[3] = _event(Op.CREATE, 9, 3, (*_row(203, 3)[:3], "a\x00b", *_row(203, 3)[4:]))
    assert not apply_columns(sink, SinkBatch(_chunks(nul, 60), _state(nul, 80)))
    small = [_event(Op.CREATE, 10, i, _row(300 + i, i)) for i in range(4)]  # under the COPY threshold
    assert not apply_columns(sink, SinkBatch(_chunks(small, 80), _state(small, 90)))
