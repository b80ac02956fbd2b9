"""Embedded mode's column chunks hold what the Kafka path's decode holds for the same events, or none.

The same ChangeEvents are turned into columns both ways: by ``events_as_columns`` (embedded mode,
straight from the events) and by ``change_columns`` over the writer's envelopes (`cdc sink`); every
array must be equal, the JSON image included. What the envelope's decode refuses, or what would
come out differently from the events' values, gives no columns (the sinks' per-change path).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal

import pytest

from cdc.core.events import ChangeEvent, ColumnValue, Op, SchemaChange, SchemaChangeKind
from cdc.core.positions import Gtid, Position, lsn_position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableSchema
from cdc.daemon.embedded_columns import EventChunk, event_chunks, events_as_columns, position_texts
from cdc.stream.arrow_changes import change_columns
from cdc.stream.kafka_chunks import ChunkRecords
from tests.unit.test_sinkcol_columns import WIDE, _event, _events, _pos, _row, _values


def _with(index: int, value: ColumnValue) -> ChangeEvent:
    """An insert of row 1 with column ``index`` holding ``value``."""
    row = list(_row(1))
    row[index] = value
    return _event(Op.CREATE, 9, 0, tuple(row))


def _same(events: list[ChangeEvent]) -> None:
    ours = events_as_columns(events)
    theirs = change_columns(_values(events), events[0].schema)
    assert ours is not None and theirs is not None
    for name in ("op", "position", "source_ts_ms", "transaction_id"):
        assert getattr(ours, name).equals(getattr(theirs, name)), name
    for i, column in enumerate(events[0].schema.columns):
        assert ours.image[i].type == theirs.image[i].type, column.name
        assert ours.image[i].equals(theirs.image[i]), column.name
        assert ours.json_image[i].equals(theirs.json_image[i]), column.name
    assert len(ours.json_image) == len(theirs.json_image)


def test_columns_equal_the_envelope_decode_for_every_kind_and_op() -> None:
    _same(_events())  # reads, inserts, updates keeping their key, deletes; each kind's edges


def test_one_transaction_of_many_rows_and_a_later_era() -> None:
    first = Position(Gtid(3, 9, 41), "mariadb-bin.000123", 4, 0, era=2)
    events = [
        ChangeEvent(Op.CREATE, WIDE, (i,), None, _row(i), first.at_row(i), 1_700_000_000_000, "3-9-41")
        for i in range(1500)
    ]
    _same(events)


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("truncate", ChangeEvent(Op.TRUNCATE, WIDE, None, None, None, _pos(9, 0), 1, "0-7701-9")),
        ("key moves", _event(Op.UPDATE, 9, 0, _row(2), before=_row(1))),
        ("nan", _with(5, float("nan"))),
        ("infinity", _with(4, float("inf"))),
        ("zero date", _with(10, "0000-00-00")),
        ("text in binary", _with(9, "QU JD")),
        ("bool among ints", _with(2, True)),
        ("datetime as date", _with(10, dt.datetime(2024, 1, 1, 5))),
        ("zoned datetime", _with(11, dt.datetime(2024, 1, 1, tzinfo=dt.UTC))),
        ("decimal past scale", _with(6, decimal.Decimal("1.23456"))),
        ("lone surrogate", _with(8, "a\udcff")),
        ("delete without image", dataclasses.replace(_event(Op.DELETE, 9, 0, _row(1)), before=None)),
    ],
)  # fmt: skip
def test_what_would_not_be_exact_has_no_columns(case: str, change: ChangeEvent) -> None:
    assert events_as_columns([_event(Op.CREATE, 8, 0, _row(3)), change]) is None, case


def test_an_update_of_a_keyless_table_or_a_time_column_has_no_columns() -> None:
    keyless = TableSchema.build(WIDE.ref, WIDE.columns, ())
    update = dataclasses.replace(_event(Op.UPDATE, 9, 0, _row(1), before=_row(1)), schema=keyless, key=None)
    insert = dataclasses.replace(_event(Op.CREATE, 8, 0, _row(1)), schema=keyless, key=None)
    assert events_as_columns([insert]) is not None
    assert events_as_columns([insert, update]) is None
    timed = TableSchema.build(
        WIDE.ref, (*WIDE.columns, Column("t", "time", ArrowType(ArrowKind.DURATION), True)), ("id",)
    )
    row: tuple[ColumnValue, ...] = (*_row(1), dt.timedelta(hours=1))
    event = ChangeEvent(Op.CREATE, timed, (1,), None, row, _pos(9, 0), 1, "0-7701-9")
    assert events_as_columns([event]) is None


def test_position_texts_spell_each_position() -> None:
    mariadb = Position(Gtid(0, 1, 7), "mariadb-bin.000042", 42, 42)  # the row's digits elsewhere too
    era = Position(Gtid(1, 2, 3), "bin.000001", 9_999, 0, era=7)
    pg = lsn_position(0x16B374D848, 0, 777)
    last = Position(Gtid(0, 1, 8), "b.000001", 4, 9_999_999_999)
    positions = [mariadb.at_row(r) for r in (42, 43, 100, 1_000_000)]
    positions += [era.at_row(r) for r in range(3)] + [pg.at_row(r) for r in (0, 1, 2)] + [last]
    positions += [mariadb.at_row(1), Position(Gtid(0, 1, 7), "mariadb-bin.000042", 42, 5)]  # equal, not same
    events = [_event(Op.CREATE, 1, 0, _row(1)) for _ in positions]
    events = [dataclasses.replace(e, position=p) for e, p in zip(events, positions, strict=True)]
    assert position_texts(events).to_pylist() == [p.to_string() for p in positions]
    assert position_texts(events[:1]).to_pylist() == [positions[0].to_string()]


def test_a_batch_becomes_runs_of_one_table_version_with_each_truncate_alone() -> None:
    other = TableSchema.build(WIDE.ref, (*WIDE.columns[:3],), ("id",))
    a = [_event(Op.CREATE, 1, i, _row(i)) for i in range(3)]
    b = ChangeEvent(Op.CREATE, other, (5,), None, _row(5)[:3], _pos(2, 0), 1, "0-7701-2")
    truncate = ChangeEvent(Op.TRUNCATE, WIDE, None, None, None, _pos(3, 0), 1, "0-7701-3")
    c = [_event(Op.CREATE, 4, i, _row(i)) for i in range(2)]
    records = event_chunks([*a, b, truncate, *c])
    assert isinstance(records, ChunkRecords)
    assert [len(chunk) for chunk in records.chunks] == [3, 1, 1, 2]
    assert list(records) == [*a, b, truncate, *c]  # a sink iterating it sees the batch as it was
    assert len(records) == 7 and records[4] is truncate
    chunks: list[EventChunk] = list(records.chunks)  # type: ignore[arg-type]
    assert chunks[2].columns() is None and chunks[0].columns() is not None
    assert chunks[0].decoder.events(chunks[0].values[:1]) == [a[0]]


def test_a_run_is_one_table_version_whatever_its_schema_objects() -> None:
    copy = TableSchema.build(WIDE.ref, WIDE.columns, WIDE.primary_key)  # the same version, another object
    assert copy is not WIDE and copy.version == WIDE.version
    events = [_event(Op.CREATE, 1, i, _row(i)) for i in range(4)]
    events[1] = dataclasses.replace(events[1], schema=copy)
    records = event_chunks(events)
    assert [len(chunk) for chunk in records.chunks] == [4]  # type: ignore[attr-defined]
    _same(events)


def test_a_batch_with_a_schema_change_is_handed_as_it_is() -> None:
    ddl = SchemaChange(
        SchemaChangeKind.ALTER, WIDE.ref, "ALTER TABLE wide ADD x INT", _pos(2, 0), 1, "0-7701-2"
    )
    records: list[ChangeEvent | SchemaChange] = [
        _event(Op.CREATE, 1, 0, _row(1)),
        ddl,
        _event(Op.CREATE, 3, 0, _row(2)),
    ]
    assert event_chunks(records) is records
