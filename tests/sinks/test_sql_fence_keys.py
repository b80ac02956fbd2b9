"""The SQL sink after review (issue 8): a fence probe with nothing new still meets the writer check,
Kafka offsets never go backwards, a served table that loses its key or changes its key's type is held
back (never skipped silently), and `cdc schema accept` gets past it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.core.errors import SinkSchemaError, WriterFenced
from cdc.core.schemas import ArrowKind, TableRef
from sinks.contract import SinkBatch, WriterIdentity
from tests.sinks.builders import Writer, col, schema
from tests.sinks.sql_targets import KINDS, SqlTarget, make_target


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlTarget]:
    yield from make_target(request.param, tmp_path, request)


A = WriterIdentity("host-a", 101, "2026-11-30T04:00:00+00:00")
B = WriterIdentity("host-b", 202, "2026-11-30T04:05:00+00:00")


def test_a_fence_probe_with_nothing_new_is_refused_to_an_older_writer(target: SqlTarget) -> None:
    """What the embedded daemon sends after a transient failure: its own applied state, no records."""
    first, second = target.sink(), target.sink()
    first.claim_writer(A)
    first.apply(Writer().insert(1, "a", 1).batch())
    applied = first.applied()
    assert applied is not None
    first.apply(SinkBatch((), applied))  # still the claimed writer: the probe passes
    second.claim_writer(B)
    with pytest.raises(WriterFenced) as info:
        first.apply(SinkBatch((), applied))
    assert B.describe() in str(info.value) and first.name in str(info.value)
    second.apply(SinkBatch((), applied))  # the newer writer is not refused


def test_kafka_offsets_keep_the_highest_per_partition(target: SqlTarget) -> None:
    """A `cdc sink` that lost its partitions (missed the session timeout) and commits late must not
    move the stored offset back."""
    sink, late = target.sink(), target.sink()
    w = Writer()
    sink.apply(w.insert(1, "a", 1).batch({"t:0": 10, "t:1": 4}))
    late.apply(w.insert(2, "b", 2).batch({"t:0": 6, "t:2": 3}))
    state = sink.applied()
    assert state is not None
    assert dict(state.offsets) == {"t:0": 10, "t:1": 4, "t:2": 3}


PAGE = TableRef("wiki", "watch")
ID = col("id", "int", ArrowKind.INT32, nullable=False)
KEYED = schema(ID, col("user", "varchar(20)", ArrowKind.STRING), ref=PAGE)
KEYLESS = schema(*KEYED.columns, pk=(), ref=PAGE)  # ALTER TABLE watch DROP PRIMARY KEY


def test_a_served_table_that_loses_its_key_is_held_back_not_skipped(
    target: SqlTarget, caplog: pytest.LogCaptureFixture
) -> None:
    sink = target.sink()
    w = Writer()
    first = w.insert(1, "ann", table=KEYED).batch()
    sink.apply(first)
    batch = w.insert(2, "bob", table=KEYLESS).insert(1, "a", 1).batch()
    with caplog.at_level(logging.ERROR), pytest.raises(SinkSchemaError) as info:
        sink.apply(batch)
    message = str(info.value)
    assert "wiki.watch" in message and "primary key" in message and "cdc schema accept" in message
    assert "key_columns" in message and "exclude_tables" in message
    assert sink.applied() == first.state  # nothing of the batch was written, the position held
    (pending,) = sink.pending_schema_changes()
    assert pending.table == PAGE and "primary key" in pending.change
    # accepted without key_columns: still refused, terminally, naming both ways out
    assert sink.accept_schema_change(PAGE) is not None
    with pytest.raises(SinkSchemaError) as again:
        target.sink().apply(batch)
    assert "key_columns" in str(again.value) and "exclude_tables" in str(again.value)
    assert target.sink().applied() == first.state
    # with key_columns naming the old key, the table goes on
    keyed = target.sink(key_columns={"wiki.watch": ("id",)})
    keyed.apply(batch)
    assert sorted(str(r["id"]) for r in keyed.read_rows(PAGE)) == ["1", "2"]
    assert keyed.applied() == batch.state


def test_a_served_table_that_loses_its_key_takes_new_key_columns_once_accepted(target: SqlTarget) -> None:
    sink = target.sink()
    w = Writer()
    sink.apply(w.insert(1, "ann", table=KEYED).batch())
    batch = w.insert(1, "bob", table=KEYLESS).batch()
    rekeyed = target.sink(key_columns={"wiki.watch": ("id", "user")})
    with pytest.raises(SinkSchemaError, match="primary key changed"):
        rekeyed.apply(batch)
    assert rekeyed.accept_schema_change(PAGE) is not None
    again = target.sink(key_columns={"wiki.watch": ("id", "user")})
    if target.kind == "sqlite":  # SQLite cannot change a key in place, and says so
        with pytest.raises(SinkSchemaError, match="SQLite"):
            again.apply(batch)
        return
    again.apply(batch)
    assert again.primary_key(PAGE) == ("id", "user")
    assert sorted((r["id"], r["user"]) for r in again.read_rows(PAGE)) == [(1, "ann"), (1, "bob")]


def test_a_keyless_table_never_served_is_still_refused_and_the_others_go_on(
    target: SqlTarget, caplog: pytest.LogCaptureFixture
) -> None:
    sink = target.sink()
    w = Writer()
    with caplog.at_level(logging.ERROR):
        batch = w.insert(1, "ann", table=KEYLESS).insert(1, "a", 1).batch()
        sink.apply(batch)
        sink.apply(w.insert(2, "bob", table=KEYLESS).batch())
    assert sink.applied() is not None and "watch" not in target.tables()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "wiki.watch" in errors[0], errors


AS_UUID = schema(col("id", "char(36)", ArrowKind.STRING, nullable=False), KEYED.columns[1], ref=PAGE)


def test_a_key_column_type_change_is_held_and_accepted(target: SqlTarget) -> None:
    """ALTER TABLE watch MODIFY id CHAR(36): the rows held cannot be converted by the source's rules;
    accepted, the table is rebuilt with the new key type and takes the new rows."""
    sink = target.sink()
    w = Writer()
    first = w.insert(1, "ann", table=KEYED).batch()
    sink.apply(first)
    batch = w.insert("6f1c", "bob", table=AS_UUID).batch()
    with pytest.raises(SinkSchemaError) as info:
        sink.apply(batch)
    message = str(info.value)
    assert "wiki.watch" in message and "id" in message and "cdc schema accept" in message
    assert sink.applied() == first.state
    (pending,) = sink.pending_schema_changes()
    assert "id" in pending.change
    assert sink.accept_schema_change(PAGE) is not None
    again = target.sink()
    again.apply(batch)
    assert again.read_rows(PAGE) == [{"id": "6f1c", "user": "bob"}]
    assert again.primary_key(PAGE) == ("id",)
    again.apply(w.insert("7a2d", "cy", table=AS_UUID).batch())
    assert sorted(str(r["id"]) for r in again.read_rows(PAGE)) == ["6f1c", "7a2d"]
