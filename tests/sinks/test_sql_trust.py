"""The SQL sink under issue 8: quoted identifiers, truncates without a schema, keyless tables, writer
fencing, empty batches and primary-key changes across partitions (SQLite here; PostgreSQL and MariaDB
on the dev stack)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.config.models import SqlSinkConfig
from cdc.core.errors import WriterFenced
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, TableRef, TableSchema
from sinks.contract import AppliedState, SinkBatch, WriterIdentity
from sinks.registry import open_sink
from tests.sinks.builders import ITEMS, REF, Writer, col, event, schema
from tests.sinks.sql_targets import KINDS, SqlTarget, make_target, open_at_once


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlTarget]:
    yield from make_target(request.param, tmp_path, request)


def by_id(rows: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {row["id"]: row for row in rows}


# -- identifiers --------------------------------------------------------------------------------------

ODD_NAMES = ("collation", "user", "order", "group", "MixedCase", "with space", "with-dash", "50%_off")


def odd_table(name: str) -> TableSchema:
    return schema(
        col("id", "int", ArrowKind.INT32, nullable=False),
        *(col(n, "varchar(20)", ArrowKind.STRING) for n in ODD_NAMES),
        ref=TableRef("wiki", name),
    )


@pytest.mark.parametrize("copy_threshold", [1, None], ids=["copy", "executemany"])
def test_reserved_and_odd_names_as_tables_and_columns(target: SqlTarget, copy_threshold: int | None) -> None:
    sink = target.sink(copy_threshold_rows=copy_threshold)
    w = Writer()
    for name in ODD_NAMES:
        t = odd_table(name)
        w.insert(1, *("a" for _ in ODD_NAMES), table=t).insert(2, *("b" for _ in ODD_NAMES), table=t)
    sink.apply(w.batch())
    for name in ODD_NAMES:
        t = odd_table(name)
        w.update((1, *("a" for _ in ODD_NAMES)), (1, *("x" for _ in ODD_NAMES)), table=t)
        w.delete(2, *("b" for _ in ODD_NAMES), table=t)
        # a column named by another reserved word, added mid-stream
        wider = schema(*t.columns, col("select", "int", ArrowKind.INT32), ref=t.ref)
        w.insert(3, *("c" for _ in ODD_NAMES), 7, table=wider)
    sink.apply(w.batch())
    for name in ODD_NAMES:
        rows = by_id(sink.read_rows(TableRef("wiki", name)))
        assert rows == {
            1: {"id": 1, **{n: "x" for n in ODD_NAMES}, "select": None},
            3: {"id": 3, **{n: "c" for n in ODD_NAMES}, "select": 7},
        }, name
    assert set(ODD_NAMES) <= target.tables()
    # a truncate of a reserved-word table, in a new sink object (a restart)
    w.truncate(table=odd_table("order"))
    target.sink().apply(w.batch())
    assert sink.read_rows(TableRef("wiki", "order")) == []


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["postgres", "mariadb"])  # SQLite has no schemas
def test_a_reserved_word_schema_holds_everything(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    targets = make_target(kind, tmp_path, request)
    target = next(targets)
    base = target.settings.schema or target.engine.url.database
    assert base is not None
    try:
        sink = target.sink(schema=f"{base}-Order")
        sink.apply(Writer().insert(1, "a", 1).batch())
        assert sink.read_rows(REF) == [{"id": 1, "name": "a", "qty": 1}]
        sink.close()
    finally:
        with target.engine.begin() as conn:
            q = '"' if kind == "postgres" else "`"
            cascade = " CASCADE" if kind == "postgres" else ""
            verb = "SCHEMA" if kind == "postgres" else "DATABASE"
            conn.execute(sa.text(f"DROP {verb} IF EXISTS {q}{base}-Order{q}{cascade}"))
        targets.close()  # closes the sinks, drops the test database


# -- truncate without a schema --------------------------------------------------------------------


def empty_schema(ref: TableRef = REF) -> TableSchema:
    """What a source knows of a table whose first event after a restart is a TRUNCATE: nothing."""
    return TableSchema(ref, (), (), "")


def test_a_truncate_with_an_empty_schema_after_a_restart_empties_the_table(target: SqlTarget) -> None:
    w = Writer()
    target.sink().apply(w.insert(1, "a", 1).insert(2, "b", 2).batch())
    after_restart = target.sink()
    batch = w.truncate(table=empty_schema()).batch()
    after_restart.apply(batch)
    assert after_restart.read_rows(REF) == []
    assert after_restart.applied() == batch.state
    after_restart.apply(w.insert(3, "c", 3).batch())  # the table goes on with its old shape
    assert after_restart.read_rows(REF) == [{"id": 3, "name": "c", "qty": 3}]


def test_a_truncate_of_a_table_never_held_changes_nothing(target: SqlTarget) -> None:
    sink = target.sink()
    batch = Writer().truncate(table=empty_schema(TableRef("wiki", "never"))).batch()
    sink.apply(batch)
    assert sink.applied() == batch.state
    assert "never" not in target.tables()


# -- batches without records, key changes across partitions ---------------------------------------


def test_a_batch_without_records_stores_its_state(target: SqlTarget) -> None:
    sink = target.sink()
    w = Writer()
    sink.apply(w.insert(1, "a", 1).batch())
    empty = SinkBatch((), AppliedState(w.clock.txn()))
    sink.apply(empty)
    assert sink.applied() == empty.state
    kafka = SinkBatch((), AppliedState(w.clock.txn(), {"t:0": 5}))
    sink.apply(kafka)
    assert sink.applied() == kafka.state


@pytest.mark.parametrize("order", ["delete_first", "create_first"])
@pytest.mark.parametrize("split", [False, True], ids=["one_batch", "two_batches"])
def test_a_key_change_from_two_partitions_lands_in_either_order(
    target: SqlTarget, order: str, split: bool
) -> None:
    """The decoder emits a key change as a delete of the old key and a create of the new one (two
    positions of one transaction); their partitions may be consumed in either order."""
    sink = target.sink()
    w = Writer()
    sink.apply(w.insert(1, "a", 1).batch({"t:0": 1}))
    pos = w.clock.txn()
    delete = event(Op.DELETE, pos, before=(1, "a", 1))
    create = event(Op.CREATE, pos.at_row(1), after=(2, "a", 1))
    records: list[tuple[ChangeEvent, str]] = [(delete, "t:0"), (create, "t:1")]
    if order == "create_first":
        records.reverse()
    if split:
        for i, (record, partition) in enumerate(records):
            sink.apply(SinkBatch((record,), AppliedState(record.position, {partition: 2 + i})))
    else:
        sink.apply(
            SinkBatch(tuple(r for r, _ in records), AppliedState(create.position, {"t:0": 2, "t:1": 1}))
        )
    assert sink.read_rows(REF) == [{"id": 2, "name": "a", "qty": 1}]


# -- keyless tables, key_columns, per-sink table selection ---------------------------------------

KEYLESS = schema(
    col("page", "int", ArrowKind.INT32, nullable=False),
    col("user", "varchar(20)", ArrowKind.STRING),
    col("ts", "int", ArrowKind.INT32),
    pk=(),
    ref=TableRef("wiki", "user_newtalk"),
)


def test_a_keyless_table_is_refused_by_name_and_the_others_go_on(
    target: SqlTarget, caplog: pytest.LogCaptureFixture
) -> None:
    sink = target.sink()
    w = Writer()
    w.insert(1, "ann", 10, table=KEYLESS).insert(1, "a", 1).insert(2, "bob", 20, table=KEYLESS)
    batch = w.batch()
    with caplog.at_level(logging.ERROR):
        sink.apply(batch)
        sink.apply(w.insert(2, "b", 2).insert(3, "cy", 30, table=KEYLESS).batch())
    assert sink.read_rows(REF) == [{"id": 1, "name": "a", "qty": 1}, {"id": 2, "name": "b", "qty": 2}]
    assert "user_newtalk" not in target.tables()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # named once per table, not once per batch
    assert "wiki.user_newtalk" in errors[0] and "key_columns" in errors[0] and "exclude_tables" in errors[0]


def test_key_columns_give_a_keyless_table_a_key_and_the_last_change_wins(target: SqlTarget) -> None:
    sink = target.sink(key_columns={"wiki.user_newtalk": ("page", "user")})
    w = Writer()
    # two identical rows at the source share one key in the serving table: the last change wins
    w.insert(1, "ann", 10, table=KEYLESS).insert(1, "ann", 10, table=KEYLESS).insert(
        2, "bob", 20, table=KEYLESS
    )
    sink.apply(w.batch())
    sink.apply(
        w.update((1, "ann", 10), (1, "ann", 11), table=KEYLESS).delete(2, "bob", 20, table=KEYLESS).batch()
    )
    assert sink.read_rows(KEYLESS.ref) == [{"page": 1, "user": "ann", "ts": 11}]
    assert sink.primary_key(KEYLESS.ref) == ("page", "user")


def test_key_columns_that_are_not_columns_are_named(sqlite_target: SqlTarget) -> None:
    from cdc.core.errors import SinkSchemaError

    sink = sqlite_target.sink(key_columns={"wiki.user_newtalk": ("page", "nope")})
    with pytest.raises(SinkSchemaError, match=r"wiki\.user_newtalk.*nope"):
        sink.apply(Writer().insert(1, "ann", 10, table=KEYLESS).batch())


@pytest.fixture
def sqlite_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlTarget]:
    yield from make_target("sqlite", tmp_path, request)


def test_an_excluded_table_is_never_created_and_the_position_still_moves(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = SqlSinkConfig.model_validate({"type": "sql", "url": url, "exclude_tables": ["wiki.user_*"]})
    sink = open_sink(config, "wiki")
    sink.open()
    try:
        w = Writer()
        only_excluded = w.insert(1, "ann", 10, table=KEYLESS).batch({"t:0": 7})
        sink.apply(only_excluded)
        assert sink.applied() == only_excluded.state
        mixed = w.insert(2, "bob", 20, table=KEYLESS).insert(1, "a", 1).batch({"t:0": 9})
        sink.apply(mixed)
        assert sink.applied() == mixed.state
    finally:
        sink.close()
    engine = sa.create_engine(url)
    try:
        names = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert "items" in names and "user_newtalk" not in names


# -- writer fencing ----------------------------------------------------------------------------------

A = WriterIdentity("host-a", 101, "2026-11-30T04:00:00+00:00")
B = WriterIdentity("host-b", 202, "2026-11-30T04:05:00+00:00")


def test_an_older_writer_is_fenced_and_commits_nothing(target: SqlTarget) -> None:
    first, second = target.sink(), target.sink()
    w = Writer()
    first.claim_writer(A)
    first.apply(w.insert(1, "a", 1).batch())
    second.claim_writer(B)
    refused = w.insert(2, "b", 2).batch()
    with pytest.raises(WriterFenced) as info:
        first.apply(refused)
    assert B.describe() in str(info.value) and first.name in str(info.value)
    assert first.read_rows(REF) == [{"id": 1, "name": "a", "qty": 1}]
    assert second.applied() is not None and second.applied() != refused.state
    second.apply(refused)
    assert by_id(second.read_rows(REF)).keys() == {1, 2}
    # a Kafka-mode `cdc sink` never claims: it keeps working whoever claimed last
    unclaimed = target.sink()
    unclaimed.apply(w.insert(3, "c", 3).batch({"t:0": 1}))
    assert by_id(unclaimed.read_rows(REF)).keys() == {1, 2, 3}


def test_a_claim_on_a_fresh_sink_keeps_applied_none(target: SqlTarget) -> None:
    sink = target.sink()
    sink.claim_writer(A)
    assert sink.applied() is None
    batch = Writer().insert(1, "a", 1).batch()
    sink.apply(batch)
    assert sink.applied() == batch.state


def test_two_writers_creating_the_same_table_do_not_race(target: SqlTarget) -> None:
    """Both sink objects start knowing no table; the second finds the table the first created."""
    first, second = target.sink(), target.sink()
    w = Writer()
    first.apply(w.insert(1, "a", 1).batch())
    second.apply(w.insert(2, "b", 2).batch())
    assert by_id(second.read_rows(REF)).keys() == {1, 2}


def test_positions_table_of_an_older_release_is_migrated(sqlite_target: SqlTarget) -> None:
    with sqlite_target.engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE _headwater_positions (pipeline VARCHAR(200) PRIMARY KEY, "
                "position VARCHAR(255) NOT NULL, offsets TEXT NOT NULL, updated_at DATETIME NOT NULL)"
            )
        )
        pos = Position(Gtid(0, 1, 9), "bin.000001", 900, 0)
        conn.execute(
            sa.text("INSERT INTO _headwater_positions VALUES ('trust', :p, '{}', '2026-01-01')"),
            {"p": pos.to_string()},
        )
    sink = sqlite_target.sink()
    assert sink.applied() == AppliedState(pos)
    sink.claim_writer(A)
    assert sink.applied() == AppliedState(pos)
    assert {"writer_epoch", "writer"} <= set(sqlite_target.columns("_headwater_positions"))


def test_two_writers_creating_tables_at_the_same_moment_both_go_on(target: SqlTarget) -> None:
    """Both sink objects create the same new tables at once (two embedded `cdc run` on one config
    died on `table already exists` before): neither fails on the other's table."""
    import threading

    sinks = [target.sink(), target.sink()]
    errors: list[BaseException] = []
    for round_ in range(4):
        tables = [schema(*ITEMS.columns, ref=TableRef("race", f"t{round_}_{i}")) for i in range(4)]
        barrier = threading.Barrier(2)

        def write(
            n: int, sink_index: int, tables: list[TableSchema] = tables, barrier: threading.Barrier = barrier
        ) -> None:
            w = Writer()
            for t in tables:
                w.insert(n, "x", n, table=t)
            batch = SinkBatch(tuple(w.pending), AppliedState(w.pending[-1].position, {f"t:{n}": 1}))
            barrier.wait()
            try:
                sinks[sink_index].apply(batch)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(n, n - 1)) for n in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        for t in tables:
            assert by_id(sinks[0].read_rows(t.ref)).keys() == {1, 2}


def test_two_sinks_opening_a_fresh_database_at_the_same_moment_both_open(
    target: SqlTarget, tmp_path: Path
) -> None:
    """Two daemons started together on a new target both create the bookkeeping tables (and the
    schema): the loser of each CREATE race must find the winner's table, not stop."""
    from dataclasses import replace

    from sinks.sql import SqlSink

    errors: list[BaseException] = []
    for round_ in range(4):
        settings = target.settings
        if target.kind == "sqlite":
            settings = replace(settings, url=f"sqlite:///{tmp_path / f'fresh{round_}.db'}")
        else:
            settings = replace(settings, schema=f"{target.settings.schema or 'db'}_fresh{round_}")
        sinks = [SqlSink(settings), SqlSink(settings)]
        target.opened.extend(sinks)
        errors.extend(open_at_once(sinks))
        if target.kind != "sqlite":
            with target.engine.begin() as conn:
                q = '"' if target.kind == "postgres" else "`"
                verb, cascade = ("SCHEMA", " CASCADE") if target.kind == "postgres" else ("DATABASE", "")
                conn.execute(sa.text(f"DROP {verb} IF EXISTS {q}{settings.schema}{q}{cascade}"))
        assert not errors, errors
