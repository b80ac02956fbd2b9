"""Schema evolution in the SQL sink (issue 8, item 8): `schema_changes: apply` follows drops, renames,
additions and widenings, rows of an older version arriving late still land, and the outcome is the same
with or without a restart between the versions; `stop` holds a change back until it is accepted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.config.models import SchemaChangePolicy
from cdc.core.errors import SinkSchemaError
from cdc.core.events import Op
from cdc.core.schemas import ArrowKind, TableRef
from sinks.contract import AcceptsSchemaChanges, AppliedState, SinkBatch
from sinks.sql import SqlSink
from tests.sinks.builders import Writer, col, event, schema
from tests.sinks.sql_targets import KINDS, SqlTarget, make_target


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlTarget]:
    yield from make_target(request.param, tmp_path, request)


@pytest.fixture
def sqlite_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlTarget]:
    yield from make_target("sqlite", tmp_path, request)


REF = TableRef("wiki", "page")
ID = col("id", "int", ArrowKind.INT32, nullable=False)
V1 = schema(
    ID,
    col("title", "varchar(20)", ArrowKind.STRING),
    col("len", "int", ArrowKind.INT32),
    col("old", "varchar(20)", ArrowKind.STRING),
    ref=REF,
)
# ALTER TABLE page RENAME COLUMN title TO name, DROP COLUMN old, MODIFY len BIGINT, ADD note TEXT
V2 = schema(
    ID,
    col("name", "varchar(20)", ArrowKind.STRING),
    col("len", "bigint", ArrowKind.INT64),
    col("note", "text", ArrowKind.STRING),
    ref=REF,
)


def rows_of(sink: SqlSink) -> dict[object, dict[str, object]]:
    return {row["id"]: row for row in sink.read_rows(REF)}


@pytest.mark.parametrize("restart", [False, True], ids=["one_run", "restart_between"])
def test_apply_follows_rename_drop_widen_and_add(target: SqlTarget, restart: bool) -> None:
    sink = target.sink()
    w = Writer()
    sink.apply(w.insert(1, "one", 1, "x", table=V1).insert(2, "two", 2, "y", table=V1).batch())
    if restart:
        sink = target.sink()
    sink.apply(
        w.insert(3, "three", 2**40, "hello", table=V2)
        .update((1, "one", 1), (1, "uno", 5, None), table=V2)
        .batch()
    )
    assert target.columns("page") == ["id", "name", "len", "note"]
    assert rows_of(sink) == {
        1: {"id": 1, "name": "uno", "len": 5, "note": None},
        2: {"id": 2, "name": "two", "len": 2, "note": None},
        3: {"id": 3, "name": "three", "len": 2**40, "note": "hello"},
    }


@pytest.mark.parametrize("restart", [False, True], ids=["one_run", "restart_between"])
def test_rows_of_an_older_version_arriving_late_land_by_the_rename(target: SqlTarget, restart: bool) -> None:
    """Kafka, two partitions: the new version's rows come first, older rows of other keys after."""
    sink = target.sink()
    w = Writer()
    sink.apply(w.insert(1, "one", 1, "x", table=V1).batch({"t:0": 1}))
    early = w.clock.txn()  # the older rows' position (partition 1), before the ALTER
    late = w.clock.txn()
    sink.apply(
        SinkBatch(
            (event(Op.CREATE, late, after=(3, "three", 3, "n"), table=V2),), AppliedState(late, {"t:0": 2})
        )
    )
    if restart:
        sink = target.sink()
    older = (
        event(Op.CREATE, early, after=(2, "two", 2, "dropped value"), table=V1),
        event(Op.UPDATE, early.at_row(1), before=(1, "one", 1, "x"), after=(1, "uno", 7, "z"), table=V1),
    )
    sink.apply(SinkBatch(older, AppliedState(early.at_row(1), {"t:1": 2})))
    assert rows_of(sink) == {
        1: {"id": 1, "name": "uno", "len": 7, "note": None},
        2: {"id": 2, "name": "two", "len": 2, "note": None},
        3: {"id": 3, "name": "three", "len": 3, "note": "n"},
    }
    assert target.columns("page") == ["id", "name", "len", "note"]


def test_a_version_first_seen_after_a_newer_one_maps_by_the_diff(target: SqlTarget) -> None:
    """The table was created from the new version; rows of the old one (never seen) arrive later."""
    sink = target.sink()
    w = Writer()
    early, late = w.clock.txn(), w.clock.txn()
    sink.apply(
        SinkBatch(
            (event(Op.CREATE, late, after=(3, "three", 3, "n"), table=V2),), AppliedState(late, {"t:0": 1})
        )
    )
    older = event(Op.CREATE, early, after=(2, "two", 2, "gone"), table=V1)
    sink.apply(SinkBatch((older,), AppliedState(early, {"t:1": 1})))
    assert rows_of(sink)[2] == {"id": 2, "name": "two", "len": 2, "note": None}


def test_a_narrowed_type_keeps_the_wider_target_column(target: SqlTarget) -> None:
    sink = target.sink()
    w = Writer()
    sink.apply(w.insert(1, "one", 2**40, "x", table=V2).batch())
    narrower = schema(ID, V2.columns[1], col("len", "int", ArrowKind.INT32), V2.columns[3], ref=REF)
    sink.apply(w.insert(2, "two", 5, "y", table=narrower).batch())
    assert rows_of(sink)[1]["len"] == 2**40 and rows_of(sink)[2]["len"] == 5


def test_an_incompatible_type_change_is_held_until_accepted(target: SqlTarget) -> None:
    sink = target.sink()
    w = Writer()
    first = w.insert(1, "one", 1, "x", table=V1).batch()
    sink.apply(first)
    as_text = schema(ID, V1.columns[1], col("len", "varchar(10)", ArrowKind.STRING), V1.columns[3], ref=REF)
    batch = w.insert(2, "two", "long", "y", table=as_text).batch()
    with pytest.raises(SinkSchemaError) as info:
        sink.apply(batch)
    message = str(info.value)
    assert "wiki.page" in message and "len" in message and "cdc schema accept" in message
    assert sink.applied() == first.state
    assert isinstance(sink, AcceptsSchemaChanges)
    (pending,) = sink.pending_schema_changes()
    assert pending.table == REF and "len" in pending.change and pending.to_version == as_text.version
    assert sink.accept_schema_change(REF) == pending
    assert sink.pending_schema_changes() == []
    again = target.sink()
    again.apply(batch)
    # the column was replaced: the row written before the change holds NULL in it
    assert rows_of(again) == {
        1: {"id": 1, "title": "one", "len": None, "old": "x"},
        2: {"id": 2, "title": "two", "len": "long", "old": "y"},
    }


def test_a_primary_key_change_is_held_and_applied_once_accepted(target: SqlTarget) -> None:
    sink = target.sink()
    w = Writer()
    sink.apply(w.insert(1, "one", 1, "x", table=V1).batch())
    rekeyed = schema(*V1.columns, pk=("id", "len"), ref=REF)
    batch = w.insert(1, "one", 2, "y", table=rekeyed).batch()
    with pytest.raises(SinkSchemaError, match="primary key changed"):
        sink.apply(batch)
    assert sink.accept_schema_change(REF) is not None
    again = target.sink()
    if target.kind == "sqlite":  # no ALTER for a key: the error says what to do instead
        with pytest.raises(SinkSchemaError, match="SQLite cannot change a table's primary key"):
            again.apply(batch)
        return
    again.apply(batch)
    assert again.primary_key(REF) == ("id", "len")
    assert {(r["id"], r["len"]) for r in again.read_rows(REF)} == {(1, 1), (1, 2)}


@pytest.mark.parametrize("restart", [False, True], ids=["one_run", "restart_between"])
def test_stop_holds_every_change_back_until_accepted(target: SqlTarget, restart: bool) -> None:
    sink = target.sink(schema_changes=SchemaChangePolicy.STOP)
    w = Writer()
    first = w.insert(1, "one", 1, "x", table=V1).batch()
    sink.apply(first)
    if restart:
        sink = target.sink(schema_changes=SchemaChangePolicy.STOP)
    batch = w.insert(2, "two", 2, "n", table=V2).batch()
    with pytest.raises(SinkSchemaError) as info:
        sink.apply(batch)
    assert "wiki.page" in str(info.value) and "rename title to name" in str(info.value)
    assert "drop old" in str(info.value) and "stop" in str(info.value)
    assert sink.applied() == first.state
    assert target.columns("page") == ["id", "title", "len", "old"]
    with pytest.raises(SinkSchemaError):  # again at the next run: still pending
        target.sink(schema_changes=SchemaChangePolicy.STOP).apply(batch)
    assert len(sink.pending_schema_changes()) == 1
    sink.accept_schema_change(REF)
    again = target.sink(schema_changes=SchemaChangePolicy.STOP)
    again.apply(batch)
    assert target.columns("page") == ["id", "name", "len", "note"]
    assert rows_of(again)[2] == {"id": 2, "name": "two", "len": 2, "note": "n"}
    assert again.pending_schema_changes() == []


def test_accepting_with_nothing_pending_says_so(sqlite_target: SqlTarget) -> None:
    assert sqlite_target.sink().accept_schema_change(REF) is None


WITH_NOTE = schema(*V1.columns, col("note", "text", ArrowKind.STRING), ref=REF)
RENAMED = schema(ID, col("name", "varchar(20)", ArrowKind.STRING), *V1.columns[2:], ref=REF)


@pytest.mark.parametrize("restart", [False, True], ids=["one_run", "restart_between"])
@pytest.mark.parametrize("there", [WITH_NOTE, RENAMED], ids=["add_then_drop", "rename_and_back"])
def test_a_shape_the_source_goes_back_to_is_followed_again(
    target: SqlTarget, there: object, restart: bool
) -> None:
    """v1 -> v2 -> v1 (ADD then DROP a column; RENAME and back): the third version has v1's
    fingerprint, and the target follows it back instead of taking it for old rows."""
    assert isinstance(there, type(V1))
    sink = target.sink()
    w = Writer()
    sink.apply(w.insert(1, "one", 1, "x", table=V1).batch())
    row = (2, "two", 2, "y", "n") if there is WITH_NOTE else (2, "two", 2, "y")
    sink.apply(w.insert(*row, table=there).batch())
    if restart:
        sink = target.sink()
    sink.apply(
        w.insert(3, "three", 3, "z", table=V1).update((2, *row[1:]), (2, "dos", 2, "y"), table=V1).batch()
    )
    assert target.columns("page") == ["id", "title", "len", "old"]
    assert rows_of(sink) == {
        1: {"id": 1, "title": "one", "len": 1, "old": "x"},
        2: {"id": 2, "title": "dos", "len": 2, "old": "y"},
        3: {"id": 3, "title": "three", "len": 3, "old": "z"},
    }
