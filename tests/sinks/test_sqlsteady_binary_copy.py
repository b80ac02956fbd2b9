"""PostgreSQL from Kafka, column-wise by binary COPY: every type's edge values land as the per-change
path writes them, and a table with a column binary COPY does not take goes by CSV, equal all the same.

Each batch goes column-wise into one schema and per change into another (the reference); the tables
are compared row by row, and a spy on :func:`sinks.sql.pg_binary_copy.rows_binary` says which COPY
format the column-wise side used.
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
from sinks.sql import pg_binary_copy, pg_columnar
from sinks.sql.columnar_apply import apply_columns
from tests.sinks.sql_targets import SqlTarget, make_pair
from tests.unit.test_sinkcol_columns import _reader, _values

pytestmark = pytest.mark.integration

K = ArrowKind
_COLUMNS = (
    Column("id", "bigint unsigned", ArrowType(K.UINT64), False),
    Column("i8", "tinyint", ArrowType(K.INT8), True),
    Column("u8", "tinyint unsigned", ArrowType(K.UINT8), True),
    Column("i16", "smallint", ArrowType(K.INT16), True),
    Column("u16", "smallint unsigned", ArrowType(K.UINT16), True),
    Column("i32", "int", ArrowType(K.INT32), True),
    Column("u32", "int unsigned", ArrowType(K.UINT32), True),
    Column("i64", "bigint", ArrowType(K.INT64), True),
    Column("u64", "bigint unsigned", ArrowType(K.UINT64), True),
    Column("flag", "tinyint(1)", ArrowType(K.BOOL), True),
    Column("d18", "decimal(18,6)", ArrowType(K.DECIMAL, 18, 6), True),
    Column("d5", "decimal(5,2)", ArrowType(K.DECIMAL, 5, 2), True),
    Column("frac", "decimal(7,7)", ArrowType(K.DECIMAL, 7, 7), True),
    Column("whole", "decimal(18,0)", ArrowType(K.DECIMAL, 18, 0), True),
    Column("day", "date", ArrowType(K.DATE), True),
    Column("at", "datetime(6)", ArrowType(K.TIMESTAMP), True),
    Column("utc", "timestamp(6)", ArrowType(K.TIMESTAMP_UTC), True),
    Column("body", "text", ArrowType(K.STRING), True),
    Column("name", "varchar(12)", ArrowType(K.STRING), True),
    Column("blob", "varbinary(16)", ArrowType(K.BINARY), True),
)
EDGES = TableSchema.build(TableRef("sqlsteady", "edges"), _COLUMNS, ("id",))
# the same with a DECIMAL(30,10): over 18 digits, the whole table goes by CSV
WIDE = TableSchema.build(
    TableRef("sqlsteady", "wide"),
    (*_COLUMNS, Column("big", "decimal(30,10)", ArrowType(K.DECIMAL, 30, 10), True)),
    ("id",),
)
D = decimal.Decimal
_UTC = dt.UTC
_LOW = (
    0, -128, 0, -32768, 0, -(2**31), 0, -(2**63), 0, False,
    D("-999999999999.999999"), D("-999.99"), D("-0.9999999"), D("-999999999999999999"),
    dt.date(1000, 1, 1), dt.datetime(1000, 1, 1), dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=_UTC),
    "", "", b"",
)  # fmt: skip
_HIGH = (
    2**64 - 1, 127, 255, 32767, 65535, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1, True,
    D("999999999999.999999"), D("999.99"), D("0.9999999"), D("999999999999999999"),
    dt.date(9999, 12, 31), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=_UTC),
    "ü ✓ 𝄞 \\ \" , \n \r \t", "twelve chars", b"\x00\xff\n\r\\,\"" * 2,
)  # fmt: skip
_AROUND_2000 = (
    2**63, -1, 1, -1, 1, -1, 1, -1, 2**63, True,
    D("-0.000001"), D("0.01"), D("0.0000001"), D("-1"),
    dt.date(1999, 12, 31), dt.datetime(1999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(2000, 1, 1, tzinfo=_UTC),
    "a", "b", b"\x00",
)  # fmt: skip
_ZEROS = (
    10, 0, 0, 0, 0, 0, 0, 0, 0, False,
    D("0.000000"), D("0.00"), D("0E-7"), D("0"),
    dt.date(2000, 1, 1), dt.datetime(2000, 1, 1), dt.datetime(2000, 1, 1, tzinfo=_UTC),
    "0", "0", b"0",
)  # fmt: skip
_NULLS = (11, *([None] * (len(_COLUMNS) - 1)))


def _rows(wide: bool) -> list[tuple[ColumnValue, ...]]:
    rows: list[tuple[ColumnValue, ...]] = [_LOW, _HIGH, _AROUND_2000, _ZEROS, _NULLS]
    rows += [  # ordinary values, some negative, and a few nulls in every column
        (
            100 + v, v % 100 - 50, v % 200, v * 7 - 300, v * 11, v * 1000 - 20_000, v * 99_991, -v * 10**12,
            v * 10**15, v % 3 == 0, D(v * 12_345) / 1000 - 50, D(v % 1000) / 100, D(v) / 10**6,
            D(v * 10**12), dt.date(2000, 1, 1) + dt.timedelta(days=v * 37 - 400),
            dt.datetime(1999, 12, 31) + dt.timedelta(microseconds=v * 123_456_789),
            dt.datetime(2000, 1, 1, tzinfo=_UTC) - dt.timedelta(seconds=v * 3_601),
            f"row {v}", f"n{v}", bytes([v % 256]) * (v % 5),
        )
        for v in range(40)
    ]  # fmt: skip
    rows = [
        tuple(None if (i + 3 * j) % 17 == 0 and j else value for j, value in enumerate(row))
        for i, row in enumerate(rows)
    ]
    if wide:
        extra = [D("-12345678901234567890.0123456789"), D("99999999999999999999.9999999999"), D("0E-10")]
        rows = [(*row, None if i % 4 == 3 else extra[i % 3]) for i, row in enumerate(rows)]
    return rows


def _event(schema: TableSchema, op: Op, seq: int, row: int, image: tuple[ColumnValue, ...]) -> ChangeEvent:
    pos = Position(Gtid(0, 7341, seq), "bin.000007", 1000 + 100 * seq, row)
    after = None if op is Op.DELETE else image
    before = image if op is not Op.CREATE else None
    return ChangeEvent(op, schema, (image[0],), before, after, pos, 1_700_000_000_000, str(pos.gtid))


def _chunks(schema: TableSchema, events: list[ChangeEvent], start: int) -> ChunkRecords:
    reader = _reader(schema)
    offsets = list(range(start + 1, start + 1 + len(events)))
    topic = f"sqlsteady.sqlsteady.{schema.ref.table}"
    return ChunkRecords([ChangeChunk(f"{topic}:0", _values(events), offsets, reader)])


def _state(schema: TableSchema, events: list[ChangeEvent], offset: int) -> AppliedState:
    return AppliedState(
        max(e.position for e in events), {f"sqlsteady.sqlsteady.{schema.ref.table}:0": offset}
    )


def _table(target: SqlTarget, name: str) -> list[tuple[object, ...]]:
    with target.engine.connect() as conn:
        table = sa.Table(name, sa.MetaData(), schema=target.settings.schema, autoload_with=conn)
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.id))]


@pytest.fixture
def targets(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[SqlTarget, SqlTarget]]:
    yield from make_pair("postgres", tmp_path, request)


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = pg_binary_copy.rows_binary

    def spy(columns, types):  # type: ignore[no-untyped-def]
        calls.append(len(columns[0]))
        return real(columns, types)

    monkeypatch.setattr(pg_columnar, "rows_binary", spy)
    return calls


@pytest.mark.parametrize("wide", [False, True], ids=["binary", "csv"])
def test_edge_values_land_as_the_per_change_path_writes_them(
    targets: tuple[SqlTarget, SqlTarget], monkeypatch: pytest.MonkeyPatch, wide: bool
) -> None:
    schema = WIDE if wide else EDGES
    columns_target, events_target = targets
    a, b = columns_target.sink(copy_threshold_rows=1), events_target.sink(copy_threshold_rows=1)
    calls = _spy(monkeypatch)
    rows = _rows(wide)
    inserts = [_event(schema, Op.CREATE, 1, i, row) for i, row in enumerate(rows)]
    # then every row again by update (the stage and upsert), in reverse order of keys' values, and
    # deletes of a few (the key-only stage), in one batch
    updates = [
        _event(schema, Op.UPDATE, 2, i, (row[0], *rows[(i + 1) % len(rows)][1:]))
        for i, row in enumerate(rows)
    ]
    deletes = [_event(schema, Op.DELETE, 3, i, updates[i].after or ()) for i in range(0, len(rows), 9)]
    # new keys whose values are all small: numerics of fewer digits than the columns allow
    small = [_event(schema, Op.CREATE, 4, i, (500 + i, *row[1:])) for i, row in enumerate(rows[5:])]
    offset = 0
    for events in (inserts, updates + deletes, small):
        batch = SinkBatch(_chunks(schema, events, offset), _state(schema, events, offset + len(events)))
        assert apply_columns(a, batch)
        b.apply(SinkBatch(_reader(schema).events(_values(events)), batch.state))
        assert _table(columns_target, schema.ref.table) == _table(events_target, schema.ref.table)
        offset += len(events)
    held = _table(columns_target, schema.ref.table)
    assert len(held) == len(rows) - len(deletes) + len(small)
    assert a.applied() == b.applied()
    # binary: the inserts' COPY, the delete stage's and the upsert stage's, the small inserts';
    # the wide table: none
    assert calls == ([] if wide else [len(rows), len(deletes), len(rows) - len(deletes), len(small)])


def test_text_checks_send_only_refused_values_the_per_change_way(
    targets: tuple[SqlTarget, SqlTarget],
) -> None:
    """varchar(12): twelve characters of two bytes each go column-wise, thirteen do not; a NUL in a
    text value (PostgreSQL refuses it) does not either, wherever it sits in the chunk."""
    columns_target, _ = targets
    sink = columns_target.sink(copy_threshold_rows=1)
    base = _rows(False)[5]

    def batch(seq: int, name: str, body: str, at: int) -> SinkBatch:
        rows = [(1000 + seq * 10 + i, *base[1:]) for i in range(4)]
        rows[at] = (*rows[at][:17], body, name, rows[at][19])
        events = [_event(EDGES, Op.CREATE, seq, i, row) for i, row in enumerate(rows)]
        return SinkBatch(_chunks(EDGES, events, seq * 10), _state(EDGES, events, seq * 10 + 4))

    assert apply_columns(sink, batch(1, "é" * 12, "ok", 2))
    assert not apply_columns(sink, batch(2, "é" * 13, "ok", 1))
    assert not apply_columns(sink, batch(3, "ok", "a\x00b", 3))
    assert not apply_columns(sink, batch(4, "ok", "\x00", 0))
    assert apply_columns(sink, batch(5, "twelve chars", "no nul here", 0))
