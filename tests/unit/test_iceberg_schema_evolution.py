"""Schema changes in the history under ``schema_changes: apply|stop``, with and without a restart between.

Every scenario runs twice: within one sink object, and with a new sink object opened between the two
versions (a restart). The verdict must be the same (it used to differ: a drop that fell on a restart
was accepted silently, one seen within a run stopped the pipeline).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from cdc.config.models import IcebergSinkConfig, SchemaChangePolicy
from cdc.core.errors import SinkSchemaError
from cdc.core.events import ChangeEvent, Op
from cdc.core.schemas import ArrowKind, TableSchema
from sinks.contract import AcceptsSchemaChanges, AppliedState, SinkBatch
from sinks.iceberg import create_iceberg_sink, read_history, state_as_of
from sinks.iceberg.catalogs import open_catalog
from sinks.iceberg.history_schema import to_source_values
from sinks.iceberg.history_sink import IcebergHistorySink
from sinks.iceberg.source_versions import SOURCE_SCHEMA_PROPERTY, VERSIONS_PROPERTY
from tests.sinks.builders import ITEMS, REF, Writer, col, schema

RENAMED = schema(ITEMS.columns[0], col("title", "varchar", ArrowKind.STRING), ITEMS.columns[2])
DROPPED = schema(ITEMS.columns[0], ITEMS.columns[1])


def _config(tmp_path: Path, policy: SchemaChangePolicy) -> IcebergSinkConfig:
    return IcebergSinkConfig(
        catalog={
            "type": "sql",
            "uri": f"sqlite:///{tmp_path / 'catalog.db'}",
            "warehouse": (tmp_path / "wh").as_uri(),
        },
        namespace="evo",
        commit_rows=1,
        commit_seconds=3600,
        schema_changes=policy,
    )


class Run:
    """One pipeline's history sink; ``between()`` is where a restart falls (or not)."""

    def __init__(self, tmp_path: Path, restart: bool, policy: SchemaChangePolicy) -> None:
        self.config = _config(tmp_path, policy)
        self.restart = restart
        self.sink = self._open()

    def _open(self) -> IcebergHistorySink:
        sink = create_iceberg_sink(self.config, "pipe")
        sink.open()
        return sink

    def between(self) -> None:
        if self.restart:
            self.sink.close()
            self.sink = self._open()

    def rows(self, at: Writer) -> list[dict[str, object]]:
        table = state_as_of(self.config.catalog, "evo", REF, at.clock.current)
        return sorted(table.to_pylist(), key=lambda r: int(str(r["id"])))


@pytest.fixture(params=[False, True], ids=["one-run", "restart-between"])
def make_run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[SchemaChangePolicy], Run]]:
    runs: list[Run] = []

    def make(policy: SchemaChangePolicy = SchemaChangePolicy.APPLY) -> Run:
        runs.append(Run(tmp_path, request.param, policy))
        return runs[-1]

    yield make
    for run in runs:
        run.sink.close()


def test_a_dropped_column_stays_in_the_history_null_from_then_on(make_run: Callable[..., Run]) -> None:
    run = make_run()
    w = Writer()
    run.sink.apply(w.insert(1, "a", 1).batch())
    run.between()
    run.sink.apply(w.insert(2, "b", table=DROPPED).update((1, "a", 1), (1, "A"), table=DROPPED).batch())
    run.sink.flush()
    assert run.rows(w) == [{"id": 1, "name": "A", "qty": None}, {"id": 2, "name": "b", "qty": None}]
    history = read_history(run.config.catalog, "evo", REF).rows
    assert history.column("qty").to_pylist() == [1, None, None]  # the old value is still there


def test_a_renamed_column_is_followed_by_field_id(make_run: Callable[..., Run]) -> None:
    run = make_run()
    w = Writer()
    run.sink.apply(w.insert(1, "a", 1).batch())
    run.between()
    run.sink.apply(w.insert(2, "b", 2, table=RENAMED).batch())
    run.sink.flush()
    # the values written under the old name show under the new one; nothing is lost
    assert run.rows(w) == [{"id": 1, "title": "a", "qty": 1}, {"id": 2, "title": "b", "qty": 2}]
    assert "name" not in read_history(run.config.catalog, "evo", REF).rows.column_names


def test_rows_of_the_older_version_arriving_later_still_land(make_run: Callable[..., Run]) -> None:
    """Kafka mode with several partitions: the new version was applied before an old row arrived."""
    run = make_run()
    w, older = Writer(), Writer()
    run.sink.apply(w.insert(1, "a", 1).batch(offsets={"t:0": 1}))
    w.clock.txn()
    run.sink.apply(w.insert(2, "b", 2, table=RENAMED).batch(offsets={"t:1": 1}))
    run.between()
    older.clock.txn()
    run.sink.apply(older.insert(3, "c", 3).batch(offsets={"t:0": 2}))  # the old shape, on partition 0
    run.sink.flush()
    got = read_history(run.config.catalog, "evo", REF).rows.to_pylist()
    assert sorted((r["id"], r["title"]) for r in got) == [(1, "a"), (2, "b"), (3, "c")]


def test_a_rename_buffered_with_older_rows_keeps_both(tmp_path: Path) -> None:
    """Rows of the old shape still in the buffer when the rename is applied keep their values."""
    config = _config(tmp_path, SchemaChangePolicy.APPLY).model_copy(update={"commit_rows": 100})
    sink = create_iceberg_sink(config, "pipe")
    sink.open()
    w = Writer()
    sink.apply(w.insert(1, "a", 1).batch())
    sink.apply(w.insert(2, "b", 2, table=RENAMED).batch())
    sink.close()
    got = read_history(config.catalog, "evo", REF).rows.to_pylist()
    assert [(r["id"], r["title"]) for r in got] == [(1, "a"), (2, "b")]


@pytest.mark.parametrize("change", [RENAMED, DROPPED], ids=["rename", "drop"])
def test_stop_policy_stops_before_the_change_until_accepted(
    make_run: Callable[..., Run], change: object
) -> None:
    run = make_run(SchemaChangePolicy.STOP)
    w = Writer()
    first = w.insert(1, "a", 1).batch()
    run.sink.apply(first)
    run.between()
    assert isinstance(run.sink, AcceptsSchemaChanges)
    changed = w.insert(2, "b", 2, table=change).batch() if change is RENAMED else None
    if changed is None:
        changed = w.insert(2, "b", table=DROPPED).batch()
    with pytest.raises(SinkSchemaError) as info:
        run.sink.apply(changed)
        run.sink.flush()
    message = str(info.value)
    assert "shop.items" in message and ("rename name to title" in message or "drop qty" in message)
    assert "cdc schema accept" in message
    assert run.sink.applied() == first.state  # nothing of the new version landed
    with pytest.raises(SinkSchemaError):  # a restart does not get past it either
        run.sink.close()
        run.sink = run._open()
        run.sink.apply(changed)
    pending = run.sink.pending_schema_changes()
    assert [(p.table, p.change, p.position) for p in pending] == [
        (REF, "rename name to title" if change is RENAMED else "drop qty", changed.records[0].position)
    ]
    accepted = run.sink.accept_schema_change(REF)
    assert accepted == pending[0]
    assert run.sink.pending_schema_changes() == []
    run.sink.close()
    run.sink = run._open()  # the next run applies it
    run.sink.apply(changed)
    run.sink.flush()
    assert run.sink.applied() == AppliedState(changed.state.position)
    assert len(run.rows(w)) == 2
    assert run.sink.accept_schema_change(REF) is None  # nothing pends any more


def test_stop_policy_lets_an_unchanged_table_run(make_run: Callable[..., Run]) -> None:
    run = make_run(SchemaChangePolicy.STOP)
    w = Writer()
    run.sink.apply(w.insert(1, "a", 1).batch())
    run.between()
    run.sink.apply(w.insert(2, "b", 2).batch())
    run.sink.flush()
    assert len(run.rows(w)) == 2 and run.sink.pending_schema_changes() == []


def test_a_table_written_before_versions_were_stored_is_followed_by_name(tmp_path: Path) -> None:
    config = _config(tmp_path, SchemaChangePolicy.APPLY)
    sink = create_iceberg_sink(config, "pipe")
    sink.open()
    w = Writer()
    sink.apply(w.insert(1, "a", 1).batch())
    sink.close()
    table = open_catalog(config.catalog).load_table("evo.items__history")
    with table.transaction() as txn:  # what an older Headwater left: no source schema, no versions
        txn.remove_properties(SOURCE_SCHEMA_PROPERTY, VERSIONS_PROPERTY)
    sink = create_iceberg_sink(config, "pipe")
    sink.open()
    pos = w.clock.txn()
    empty = TableSchema.build(REF, (), ())
    sink.apply(
        SinkBatch([ChangeEvent(Op.TRUNCATE, empty, None, None, None, pos, 0, "0-1-9")], AppliedState(pos))
    )
    wider = schema(*ITEMS.columns, col("note", "text", ArrowKind.STRING))
    sink.apply(w.insert(2, "b", 2, "n", table=wider).batch())
    sink.close()
    got = read_history(config.catalog, "evo", REF).rows.to_pylist()
    assert [(r["_op"], r["id"], r["note"]) for r in got] == [("c", 1, None), ("t", None, None), ("c", 2, "n")]
    table.refresh()
    assert table.properties.get(SOURCE_SCHEMA_PROPERTY)  # stored from then on


@pytest.mark.parametrize("how", ["rename", "add"])
def test_a_name_taken_from_a_dropped_column_moves_the_kept_one_aside(
    make_run: Callable[..., Run], how: str
) -> None:
    """DROP qty, then another column takes the name qty (a rename, or an add of another type)."""
    run = make_run()
    w = Writer()
    run.sink.apply(w.insert(1, "a", 7).batch())
    run.between()
    run.sink.apply(w.insert(2, "b", table=DROPPED).batch())
    run.between()
    if how == "rename":
        taken = schema(ITEMS.columns[0], col("qty", "varchar", ArrowKind.STRING))
        run.sink.apply(w.insert(3, "c", table=taken).batch())
    else:
        taken = schema(*DROPPED.columns, col("qty", "varchar", ArrowKind.STRING))
        run.sink.apply(w.insert(3, "c", "big", table=taken).batch())
    run.sink.flush()
    got = read_history(run.config.catalog, "evo", REF).rows.to_pylist()
    assert [r["qty__dropped"] for r in got] == [7, None, None]  # the old values, kept
    assert got[-1]["qty"] == ("c" if how == "rename" else "big")


def _with_qty(source_type: str, kind: ArrowKind, precision: int = 0, scale: int = 0) -> TableSchema:
    return schema(ITEMS.columns[0], ITEMS.columns[1], col("qty", source_type, kind, precision, scale))


def _qty_field(run: Run) -> str:
    table = open_catalog(run.config.catalog).load_table("evo.items__history")
    return str(table.schema().find_field("qty").field_type)


# (before, after, a value of each, the Iceberg type the column keeps)
NARROWED = {
    "bigint->int": (
        _with_qty("bigint", ArrowKind.INT64),
        _with_qty("int", ArrowKind.INT32),
        2**40,
        5,
        "long",
    ),
    "bigint->int-unsigned": (
        _with_qty("bigint", ArrowKind.INT64),
        _with_qty("int unsigned", ArrowKind.UINT32),
        -3,
        2**32 - 1,
        "long",
    ),
    "bigint-unsigned->bigint": (
        _with_qty("bigint unsigned", ArrowKind.UINT64),
        _with_qty("bigint", ArrowKind.INT64),
        2**64 - 1,
        -(2**63),
        "decimal(20, 0)",
    ),
    "double->float": (
        _with_qty("double", ArrowKind.FLOAT64),
        _with_qty("float", ArrowKind.FLOAT32),
        0.1,
        0.5,
        "double",
    ),
    "smaller-decimal": (
        _with_qty("decimal(12,4)", ArrowKind.DECIMAL, 12, 4),
        _with_qty("decimal(10,2)", ArrowKind.DECIMAL, 10, 2),
        Decimal("12345678.1234"),
        Decimal("-12345678.12"),
        "decimal(12, 4)",
    ),
    "wide-decimal->decimal": (
        _with_qty("decimal(50,2)", ArrowKind.DECIMAL, 50, 2),
        _with_qty("decimal(10,2)", ArrowKind.DECIMAL, 10, 2),
        Decimal("1" * 48 + ".25"),
        Decimal("-1.50"),
        "string",
    ),
    "text->varchar": (
        _with_qty("text", ArrowKind.STRING),
        _with_qty("varchar(5)", ArrowKind.STRING),
        "long",
        "short",
        "string",
    ),
    "blob->varbinary": (
        _with_qty("blob", ArrowKind.BINARY),
        _with_qty("varbinary(4)", ArrowKind.BINARY),
        b"\x00\x01",
        b"\x02",
        "binary",
    ),
}


@pytest.mark.parametrize("case", NARROWED, ids=list(NARROWED))
def test_a_narrowed_type_keeps_the_wider_column(make_run: Callable[..., Run], case: str) -> None:
    """A type whose values all fit the history's column: the column stays, both versions' values land."""
    before, after, old, new, kept = NARROWED[case]
    run = make_run()
    w = Writer()
    run.sink.apply(w.insert(1, "a", old, table=before).batch())
    run.between()
    run.sink.apply(w.insert(2, "b", new, table=after).batch())
    run.sink.flush()
    history = read_history(run.config.catalog, "evo", REF)
    assert [r["qty"] for r in to_source_values(history.rows, history.column_kinds)] == [old, new]
    assert _qty_field(run) == kept
    assert [c for c in history.rows.column_names if c.startswith("qty")] == ["qty"]


def test_int_to_int_unsigned_widens_the_column(make_run: Callable[..., Run]) -> None:
    run = make_run()
    w = Writer()
    run.sink.apply(w.insert(1, "a", -1).batch())
    run.between()
    run.sink.apply(w.insert(2, "b", 2**32 - 1, table=_with_qty("int unsigned", ArrowKind.UINT32)).batch())
    run.sink.flush()
    assert read_history(run.config.catalog, "evo", REF).rows.column("qty").to_pylist() == [-1, 2**32 - 1]
    assert _qty_field(run) == "long"


# (after, its value, the name the old int column moves to)
REFAMILIED = {
    "int->varchar": (_with_qty("varchar(10)", ArrowKind.STRING), "seven", "qty__int"),
    "int->datetime": (
        _with_qty("datetime", ArrowKind.TIMESTAMP),
        dt.datetime(2024, 1, 2, 3, 4, 5),
        "qty__int",
    ),
}


@pytest.mark.parametrize("case", REFAMILIED, ids=list(REFAMILIED))
def test_a_type_changed_to_another_family_moves_the_old_column_aside(
    make_run: Callable[..., Run], case: str
) -> None:
    after, value, aside = REFAMILIED[case]
    run = make_run()
    w, older = Writer(), Writer()
    run.sink.apply(w.insert(1, "a", 7).batch(offsets={"t:0": 1}))
    w.clock.txn()
    run.sink.apply(w.insert(2, "b", value, table=after).batch(offsets={"t:1": 1}))
    run.between()
    older.clock.txn()  # a row of the old shape arriving late, on another partition (Kafka mode)
    run.sink.apply(older.insert(3, "c", 9).batch(offsets={"t:0": 2}))
    run.sink.flush()
    got = read_history(run.config.catalog, "evo", REF).rows.to_pylist()
    assert sorted((r["id"], r[aside], r["qty"]) for r in got) == [
        (1, 7, None),
        (2, None, value),
        (3, 9, None),
    ]
    assert [r for r in run.rows(w) if r["id"] == 2] == [{"id": 2, "name": "b", aside: None, "qty": value}]


def test_a_decimal_scale_beyond_the_column_moves_it_aside(make_run: Callable[..., Run]) -> None:
    run = make_run()
    w = Writer()
    money = _with_qty("decimal(10,2)", ArrowKind.DECIMAL, 10, 2)
    run.sink.apply(w.insert(1, "a", Decimal("1.25"), table=money).batch())
    run.between()
    finer = _with_qty("decimal(10,4)", ArrowKind.DECIMAL, 10, 4)
    run.sink.apply(w.insert(2, "b", Decimal("1.2345"), table=finer).batch())
    run.sink.flush()
    got = read_history(run.config.catalog, "evo", REF).rows.to_pylist()
    assert [(r["qty__decimal_10_2"], r["qty"]) for r in got] == [
        (Decimal("1.25"), None),
        (None, Decimal("1.2345")),
    ]
    assert _qty_field(run) == "decimal(10, 4)"


def test_a_type_changed_back_and_forth_keeps_every_version(make_run: Callable[..., Run]) -> None:
    run = make_run()
    w = Writer()
    shapes = [
        (ITEMS, 1),
        (_with_qty("varchar(10)", ArrowKind.STRING), "two"),
        (_with_qty("int(11)", ArrowKind.INT32), 3),
        (_with_qty("varchar(20)", ArrowKind.STRING), "four"),
        (ITEMS, 5),  # a shape seen before: its rows land where that shape's rows went (qty__int)
    ]
    for i, (table, value) in enumerate(shapes, start=1):
        run.sink.apply(w.insert(i, "x", value, table=table).batch())
        run.between()
    run.sink.flush()
    got = read_history(run.config.catalog, "evo", REF).rows.to_pylist()
    qty = sorted(c for c in got[0] if c.startswith("qty"))
    assert qty == ["qty", "qty__int", "qty__int2", "qty__string"]
    assert [{c: r[c] for c in qty if r[c] is not None} for r in got] == [
        {"qty__int": 1},
        {"qty__string": "two"},
        {"qty__int2": 3},
        {"qty": "four"},
        {"qty__int": 5},
    ]


def test_stop_policy_holds_a_type_change_until_accepted(make_run: Callable[..., Run]) -> None:
    run = make_run(SchemaChangePolicy.STOP)
    w = Writer()
    run.sink.apply(w.insert(1, "a", 7).batch())
    run.between()
    changed = w.insert(2, "b", "x", table=_with_qty("varchar(10)", ArrowKind.STRING)).batch()
    with pytest.raises(SinkSchemaError, match=r"change qty from int to varchar.*cdc schema accept"):
        run.sink.apply(changed)
        run.sink.flush()
    assert isinstance(run.sink, AcceptsSchemaChanges)
    assert run.sink.accept_schema_change(REF) is not None
    run.sink.close()
    run.sink = run._open()
    run.sink.apply(changed)
    run.sink.flush()
    got = read_history(run.config.catalog, "evo", REF).rows.to_pylist()
    assert [(r["qty__int"], r["qty"]) for r in got] == [(7, None), (None, "x")]


def test_a_type_change_buffered_with_older_rows_keeps_both(tmp_path: Path) -> None:
    """Rows of the old type still in the buffer when the column moves aside land in the moved one."""
    config = _config(tmp_path, SchemaChangePolicy.APPLY).model_copy(update={"commit_rows": 100})
    sink = create_iceberg_sink(config, "pipe")
    sink.open()
    w = Writer()
    sink.apply(w.insert(1, "a", 7).batch())
    sink.apply(w.insert(2, "b", "x", table=_with_qty("varchar(10)", ArrowKind.STRING)).batch())
    sink.apply(w.insert(3, "c", 8, table=_with_qty("tinyint", ArrowKind.INT8)).batch())
    sink.close()
    got = read_history(config.catalog, "evo", REF).rows.to_pylist()
    assert [(r["id"], r["qty__int"], r["qty__string"], r["qty"]) for r in got] == [
        (1, 7, None, None),
        (2, None, "x", None),
        (3, None, None, 8),
    ]


def test_a_moved_column_does_not_take_a_name_the_new_version_uses(make_run: Callable[..., Run]) -> None:
    run = make_run()
    w = Writer()
    run.sink.apply(w.insert(1, "a", 7).batch())
    run.between()
    both = schema(
        *DROPPED.columns, col("qty", "varchar(9)", ArrowKind.STRING), col("qty__int", "int", ArrowKind.INT32)
    )
    run.sink.apply(w.insert(2, "b", "x", 8, table=both).batch())
    run.sink.flush()
    got = read_history(run.config.catalog, "evo", REF).rows.to_pylist()
    assert [(r["qty__int2"], r["qty"], r["qty__int"]) for r in got] == [(7, None, None), (None, "x", 8)]
