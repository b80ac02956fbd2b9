"""Behaviours every sink has (tests/sinks/conftest.py parametrizes `sut` over all sinks)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from cdc.core.errors import BadRowError, SinkSchemaError
from cdc.core.schemas import ArrowKind
from sinks.contract import AppliedState, Sink
from tests.sinks.builders import ITEMS, REF, Writer, col, schema
from tests.sinks.conftest import make_sink_under_test
from tests.sinks.harness import SinkUnderTest


@pytest.fixture
def sink(sut: SinkUnderTest) -> Iterator[Sink]:
    sut.sink.open()
    yield sut.sink


def rows(*items: tuple[int, str | None, int | None]) -> dict[tuple[object, ...], dict[str, object]]:
    return {(i,): {"id": i, "name": n, "qty": q} for i, n, q in items}


def state(sut: SinkUnderTest, sink: Sink) -> dict[tuple[object, ...], dict[str, object]]:
    sink.flush()
    return sut.current_rows(REF)


def test_fresh_sink_has_applied_none(sink: Sink) -> None:
    assert sink.applied() is None


def test_inserts_updates_deletes_give_the_expected_state(sut: SinkUnderTest, sink: Sink) -> None:
    w = Writer()
    sink.apply(w.insert(1, "a", 1).insert(2, "b", 2).insert(3, "c", 3).batch())
    sink.apply(w.update((2, "b", 2), (2, "B", 20)).delete(3, "c", 3).read(4, "d", 4).batch())
    assert state(sut, sink) == rows((1, "a", 1), (2, "B", 20), (4, "d", 4))


def test_applied_equals_the_batch_state(sink: Sink) -> None:
    w = Writer()
    batch = w.insert(1, "a", 1).insert(2, "b", 2).batch()
    sink.apply(batch)
    sink.flush()
    assert sink.applied() == batch.state


def test_reapplying_a_batch_changes_nothing(sut: SinkUnderTest, sink: Sink) -> None:
    w = Writer()
    first = w.insert(1, "a", 1).insert(2, "b", 2).batch()
    sink.apply(first)
    second = w.update((1, "a", 1), (1, "A", 10)).batch()
    sink.apply(second)
    sink.apply(first)  # an old batch re-delivered
    sink.apply(second)
    # a batch that starts with already-applied events (embedded mode resumes from the lowest sink)
    overlapping = w.insert(3, "c", 3).batch()
    sink.apply(type(overlapping)((*first.records, *second.records, *overlapping.records), overlapping.state))
    sink.flush()
    assert sink.applied() == overlapping.state
    assert state(sut, sink) == rows((1, "A", 10), (2, "b", 2), (3, "c", 3))
    if sut.history is not None:
        assert len(sut.history(REF)) == 4  # each change exactly once


def test_last_change_per_key_wins_inside_a_batch(sut: SinkUnderTest, sink: Sink) -> None:
    w = Writer()
    w.insert(1, "a", 1).update((1, "a", 1), (1, "a2", 2)).delete(1, "a2", 2)  # gone
    w.insert(2, "b", 1).delete(2, "b", 1).insert(2, "b-again", 3)  # back
    w.insert(3, "c", 1).update((3, "c", 1), (3, "c2", 2)).update((3, "c2", 2), (3, "c3", 3))
    sink.apply(w.batch())
    assert state(sut, sink) == rows((2, "b-again", 3), (3, "c3", 3))


def test_key_change_in_an_update_moves_the_row(sut: SinkUnderTest, sink: Sink) -> None:
    w = Writer()
    sink.apply(w.insert(1, "a", 1).batch())
    sink.apply(w.update((1, "a", 1), (5, "a", 1)).batch())
    assert state(sut, sink) == rows((5, "a", 1))


def test_truncate_mid_batch_is_respected_in_order(sut: SinkUnderTest, sink: Sink) -> None:
    w = Writer()
    sink.apply(w.insert(1, "a", 1).insert(2, "b", 2).batch())
    sink.apply(w.insert(3, "c", 3).truncate().insert(4, "d", 4).update((4, "d", 4), (4, "d2", 5)).batch())
    assert state(sut, sink) == rows((4, "d2", 5))


VALUES_SCHEMA = schema(
    col("id", "int unsigned", ArrowKind.UINT32, nullable=False),
    col("u64", "bigint unsigned", ArrowKind.UINT64),
    col("i64", "bigint", ArrowKind.INT64),
    col("i8", "tinyint", ArrowKind.INT8),
    col("dec", "decimal(65,30)", ArrowKind.DECIMAL, 65, 30),
    col("dec2", "decimal(10,2)", ArrowKind.DECIMAL, 10, 2),
    col("f32", "float", ArrowKind.FLOAT32),
    col("f64", "double", ArrowKind.FLOAT64),
    col("t", "time(6)", ArrowKind.DURATION),
    col("dtm", "datetime(6)", ArrowKind.TIMESTAMP),
    col("ts", "timestamp(6)", ArrowKind.TIMESTAMP_UTC),
    col("d", "date", ArrowKind.DATE),
    col("txt", "text", ArrowKind.STRING),
    col("vc", "varchar(20)", ArrowKind.STRING),
    col("js", "json", ArrowKind.STRING),
    col("en", "enum('a','b')", ArrowKind.STRING),
    col("bin", "varbinary(255)", ArrowKind.BINARY),
    col("blb", "blob", ArrowKind.BINARY),
    col("flag", "tinyint(1)", ArrowKind.BOOL),
    ref=REF,
)

VALUE_ROWS = [
    (
        1,
        2**64 - 1,
        -(2**63),
        -128,
        Decimal("-" + "9" * 35 + "." + "9" * 30),
        Decimal("12345678.90"),
        float.fromhex("0x1.99999ap-4"),
        0.1,
        -dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=999_999) + dt.timedelta(microseconds=0),
        dt.datetime(2024, 2, 29, 23, 59, 59, 999_999),
        dt.datetime(2038, 1, 19, 3, 14, 8, 123_456, tzinfo=dt.UTC),
        dt.date(1000, 1, 1),
        "emoji \U0001f600 and \u00e9 and ' \" \\ %s",
        "twenty chars exactly",
        '{"b": 1,  "a": [1.50, 2]}',
        "b",
        b"\xff\xfe\x00\x80 not utf-8",
        b"",
        True,
    ),
    (
        2,
        0,
        2**63 - 1,
        127,
        Decimal("0." + "0" * 29 + "1"),
        Decimal("-0.01"),
        -0.0,
        1e308,
        dt.timedelta(hours=-1, minutes=-30),
        dt.datetime(1, 1, 1),
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        dt.date(9999, 12, 31),
        "",
        "",
        "null",
        "a",
        b"\x00",
        b"\x00" * 3,
        False,
    ),
    (
        3,
        2**63,
        None,
        None,
        None,
        None,
        None,
        None,
        dt.timedelta(hours=100, microseconds=1),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ),
    (
        4,
        2**63 - 1,
        0,
        0,
        Decimal(0),
        Decimal("0.00"),
        3.4028234663852886e38,
        5e-324,
        dt.timedelta(0),
        dt.datetime(2000, 1, 1, 0, 0, 0, 1),
        dt.datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC),
        dt.date(2000, 1, 1),
        " trailing space ",
        "x",
        "[]",
        "b",
        b"a ",
        b"b\x00",
        None,
    ),
]


def test_every_value_type_round_trips_exactly(sut: SinkUnderTest, sink: Sink) -> None:
    w = Writer()
    for row in VALUE_ROWS:
        w.insert(*row, table=VALUES_SCHEMA)
    sink.apply(w.batch())
    got = state(sut, sink)
    names = VALUES_SCHEMA.column_names
    expected = {(row[0],): dict(zip(names, row, strict=True)) for row in VALUE_ROWS}
    assert got.keys() == expected.keys()
    for key, row in expected.items():
        for name in names:
            value, back = row[name], got[key][name]
            assert (type(back), back) == (type(value), value), f"{key} {name}"


def test_an_added_column_appears_mid_stream(sut: SinkUnderTest, sink: Sink) -> None:
    w = Writer()
    sink.apply(w.insert(1, "a", 1).batch())
    wider = schema(*ITEMS.columns, col("note", "text", ArrowKind.STRING))
    w.insert(2, "b", 2, "hello", table=wider).insert(3, "c", 3).batch()  # discard: mixed versions below
    w.pending.clear()
    w.update((1, "a", 1), (1, "a", 2))  # old version first, then the new one, in one batch
    w.insert(2, "b", 2, "hello", table=wider)
    sink.apply(w.batch())
    got = state(sut, sink)
    assert got[(1,)]["qty"] == 2 and got[(1,)].get("note") is None
    assert got[(2,)] == {"id": 2, "name": "b", "qty": 2, "note": "hello"}


def test_a_widening_type_change_is_followed(sut: SinkUnderTest, sink: Sink) -> None:
    w = Writer()
    sink.apply(w.insert(1, "a", 1).batch())
    wider = schema(ITEMS.columns[0], ITEMS.columns[1], col("qty", "bigint", ArrowKind.INT64))
    sink.apply(w.insert(2, "b", 2**40, table=wider).batch())
    assert state(sut, sink) == rows((1, "a", 1), (2, "b", 2**40))


def test_a_narrowed_type_change_keeps_the_wider_column(sut: SinkUnderTest, sink: Sink) -> None:
    w = Writer()
    first = w.insert(1, "a", 1).batch()
    sink.apply(first)
    narrower = schema(ITEMS.columns[0], ITEMS.columns[1], col("qty", "tinyint", ArrowKind.INT8))
    # serving table and history alike keep the wider column: every new value fits it
    sink.apply(w.insert(2, "b", 2, table=narrower).batch())
    assert state(sut, sink) == rows((1, "a", 1), (2, "b", 2))


def test_a_dropped_column_stops_naming_table_and_column(sut: SinkUnderTest, sink: Sink) -> None:
    w = Writer()
    sink.apply(w.insert(1, "a", 1).batch())
    dropped = schema(ITEMS.columns[0], ITEMS.columns[1])
    if sut.history is not None:  # the history keeps the column, null from then on (schema_changes: apply)
        sink.apply(w.insert(2, "b", table=dropped).batch())
        assert state(sut, sink) == rows((1, "a", 1), (2, "b", None))
        return
    if sut.history is None:  # a serving table drops it too (schema_changes: apply)
        sink.apply(w.insert(2, "b", table=dropped).batch())
        assert state(sut, sink) == {(i,): {"id": i, "name": n} for i, n in ((1, "a"), (2, "b"))}
        return
    with pytest.raises(SinkSchemaError) as info:
        sink.apply(w.insert(2, "b", table=dropped).batch())
        sink.flush()
    assert "items" in str(info.value) and "qty" in str(info.value)


def test_a_crash_between_batches_keeps_applied_and_data(sut: SinkUnderTest, sink: Sink) -> None:
    w = Writer()
    sink.apply(w.insert(1, "a", 1).insert(2, "b", 2).batch())
    second = w.update((1, "a", 1), (1, "A", 1)).batch()
    sink.apply(second)
    sink.flush()
    # the process dies; a new sink object opens on the same target
    if sut.reopen is not None:
        restarted = sut.reopen()
    else:
        sink.close()
        restarted = sut.sink
    restarted.open()
    try:
        assert restarted.applied() == second.state
        restarted.apply(second)  # re-delivered after the crash: skipped
        restarted.apply(w.insert(3, "c", 3).batch())
        restarted.flush()
        assert sut.current_rows(REF) == rows((1, "A", 1), (2, "b", 2), (3, "c", 3))
    finally:
        restarted.close()


def test_offsets_are_stored_and_returned(sink: Sink) -> None:
    w = Writer()
    batch = w.insert(1, "a", 1).batch(offsets={"wiki.shop.items:0": 42, "wiki.shop.items:1": 7})
    sink.apply(batch)
    sink.flush()
    assert sink.applied() == AppliedState(
        batch.state.position, {"wiki.shop.items:0": 42, "wiki.shop.items:1": 7}
    )


def test_kafka_offsets_merge_and_positions_do_not_skip(sut: SinkUnderTest, sink: Sink) -> None:
    """Kafka mode: partitions arrive in no common position order and may be shared by several
    `cdc sink` processes; the sink applies what it is given and merges the offsets it stores."""
    newer, older = Writer(), Writer()
    newer.clock.txn(), newer.clock.txn()  # partition 1 is ahead in source positions
    ahead = newer.insert(2, "b", 2).batch(offsets={"wiki.shop.items:1": 5})
    behind = older.insert(1, "a", 1).batch(offsets={"wiki.shop.items:0": 9})
    assert behind.state.position < ahead.state.position
    sink.apply(ahead)
    sink.apply(behind)  # an older position from another partition: still applied
    sink.flush()
    applied = sink.applied()
    assert applied is not None
    assert dict(applied.offsets) == {"wiki.shop.items:0": 9, "wiki.shop.items:1": 5}
    assert applied.position == ahead.state.position
    assert set(sut.current_rows(REF)) == {(1,), (2,)}


KEYLESS = schema(*ITEMS.columns, pk=())


def test_a_serving_table_without_primary_key_stops_naming_it(
    sql_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    sut = make_sink_under_test(sql_kind, request, tmp_path)
    try:
        sut.sink.open()
        # refused by name in the log (tests/sinks/test_sql_trust.py), its changes skipped, no exit
        sut.sink.apply(Writer().insert(1, "a", 1, table=KEYLESS).batch())
        assert sut.current_rows(KEYLESS.ref) == {}
    finally:
        sut.cleanup()


def test_a_history_table_without_primary_key_keeps_every_change(tmp_path: Path) -> None:
    """History needs no key: every change of a keyless table is appended, duplicates included."""
    from tests.sinks.iceberg_factory import make_iceberg_sink_under_test

    sut = make_iceberg_sink_under_test(tmp_path)
    try:
        sut.sink.open()
        batch = Writer().insert(1, "a", 1, table=KEYLESS).insert(1, "a", 1, table=KEYLESS).batch()
        sut.sink.apply(batch)
        sut.sink.flush()
        assert sut.history is not None
        history = sut.history(REF)
        assert [(r["_op"], r["id"], r["name"]) for r in history] == [("c", 1, "a"), ("c", 1, "a")]
        assert sut.sink.applied() == batch.state
    finally:
        sut.cleanup()


NUL_ROW = (2, "nul \x00 inside", 2)


def test_bad_row_stop_names_table_key_and_column(
    sql_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    sut = make_sink_under_test(sql_kind, request, tmp_path, on_bad_row="stop")
    try:
        sut.sink.open()
        w = Writer()
        first = w.insert(1, "a", 1).batch()
        sut.sink.apply(first)
        bad = w.insert(*bad_row_for(sql_kind)).insert(3, "c", 3).batch()
        with pytest.raises(BadRowError) as info:
            sut.sink.apply(bad)
        message = str(info.value)
        assert "items" in message and "[2]" in message and "name" in message
        assert sut.sink.applied() == first.state
        assert sut.current_rows(REF) == rows((1, "a", 1))
    finally:
        sut.cleanup()


def bad_row_for(kind: str) -> tuple[int, str, int]:
    # only PostgreSQL text refuses NUL; no target can store a lone surrogate (not encodable as UTF-8)
    return NUL_ROW if kind == "postgres" else (2, "lone \ud800 surrogate", 2)


def test_bad_row_dead_letter_keeps_the_event_and_goes_on(
    sql_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    from sinks.sql import SqlSink

    sut = make_sink_under_test(sql_kind, request, tmp_path, on_bad_row="dead_letter")
    try:
        sut.sink.open()
        w = Writer()
        sut.sink.apply(w.insert(1, "a", 1).insert(*bad_row_for(sql_kind)).insert(3, "c", 3).batch())
        assert sut.current_rows(REF) == rows((1, "a", 1), (3, "c", 3))
        assert isinstance(sut.sink, SqlSink)
        engine = sut.sink._require_engine()
        dead = sut.sink._book.dead_letters
        with engine.connect() as conn:
            letters = conn.execute(sa.select(dead)).mappings().all()
        assert len(letters) == 1
        letter = letters[0]
        assert (letter["source_table"], letter["key"], letter["column_name"], letter["op"]) == (
            "shop.items",
            "[2]",
            "name",
            "c",
        )
        assert "\\u0000" in letter["payload"] or "\\ud800" in letter["payload"]
    finally:
        sut.cleanup()


COMPOSITE = schema(
    col("tenant", "varchar", ArrowKind.STRING, nullable=False),
    col("blob_key", "varbinary(16)", ArrowKind.BINARY, nullable=False),
    col("n", "int", ArrowKind.INT32),
    pk=("tenant", "blob_key"),
    ref=REF,
)


def test_composite_keys_that_differ_by_case_or_trailing_space_stay_distinct(
    sut: SinkUnderTest, sink: Sink
) -> None:
    w = Writer()
    keys = [("a", b"k"), ("A", b"k"), ("a ", b"k"), ("a", b"k\x00"), ("\u00e9", b"")]
    for n, (tenant, blob_key) in enumerate(keys):
        w.insert(tenant, blob_key, n, table=COMPOSITE)
    sink.apply(w.batch())
    sink.apply(
        w.update(("A", b"k", 1), ("A", b"k", 10), table=COMPOSITE)
        .delete("a ", b"k", 2, table=COMPOSITE)
        .batch()
    )
    got = state(sut, sink)
    expected = {("a", b"k"): 0, ("A", b"k"): 10, ("a", b"k\x00"): 3, ("\u00e9", b""): 4}
    assert {key: row["n"] for key, row in got.items()} == expected
