"""History tables read back: faithful types, state as of a position or time, maintenance, catalogs."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pytest

from cdc.core.errors import ConfigError
from cdc.core.events import ChangeEvent, Op
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from sinks.contract import AppliedState, SinkBatch
from sinks.iceberg import history_rows_as_of, maintain, read_history, state_as_of
from sinks.iceberg.as_of import parse_at
from sinks.iceberg.catalogs import open_catalog, resolve_catalog_properties
from sinks.iceberg.snapshot_state import stored_state
from tests.unit.test_iceberg_sink import T0_MS, batch, config, event, opened, pos, schema

DAY_MS = 86_400_000


def test_types_are_stored_faithfully(tmp_path: Path) -> None:
    def col(name: str, source: str, kind: ArrowKind, p: int = 0, s: int = 0) -> Column:
        return Column(name, source, ArrowType(kind, p, s))

    columns = (
        col("id", "bigint unsigned", ArrowKind.UINT64),
        col("i8", "tinyint", ArrowKind.INT8),
        col("u16", "smallint unsigned", ArrowKind.UINT16),
        col("u32", "int unsigned", ArrowKind.UINT32),
        col("f", "float", ArrowKind.FLOAT32),
        col("dbl", "double", ArrowKind.FLOAT64),
        col("small", "decimal(10,2)", ArrowKind.DECIMAL, 10, 2),
        col("big", "decimal(65,30)", ArrowKind.DECIMAL, 65, 30),
        col("t", "time(6)", ArrowKind.DURATION),
        col("dt", "datetime(6)", ArrowKind.TIMESTAMP),
        col("ts", "timestamp(6)", ArrowKind.TIMESTAMP_UTC),
        col("d", "date", ArrowKind.DATE),
        col("b", "varbinary(4)", ArrowKind.BINARY),
        col("ok", "tinyint(1)", ArrowKind.BOOL),
    )
    s = TableSchema.build(TableRef("db", "types"), columns, ("id",))
    big = decimal.Decimal("-12345678901234567890123456789012345.123456789012345678901234567891")
    image = (
        2**64 - 1,
        -128,
        65535,
        2**32 - 1,
        1.5,
        -2.25,
        decimal.Decimal("-12345678.99"),
        big,
        dt.timedelta(hours=-838, minutes=-59, seconds=-59),
        dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
        dt.datetime(2038, 1, 19, 3, 14, 7, 1, tzinfo=dt.UTC),
        dt.date(1000, 1, 1),
        b"\x00\xff",
        True,
    )
    cfg = config(tmp_path)
    sink = opened(cfg)
    sink.apply(batch(ChangeEvent(Op.CREATE, s, (image[0],), None, image, pos(1), T0_MS, "0-1-1")))
    sink.close()
    table = open_catalog(cfg.catalog).load_table("hist.types__history")
    types = {f.name: str(f.field_type) for f in table.schema().fields}
    assert types == {
        "id": "decimal(20, 0)",
        "i8": "int",
        "u16": "int",
        "u32": "long",
        "f": "float",
        "dbl": "double",
        "small": "decimal(10, 2)",
        "big": "string",
        "t": "long",
        "dt": "timestamp",
        "ts": "timestamptz",
        "d": "date",
        "b": "binary",
        "ok": "boolean",
        "_op": "string",
        "_position": "string",
        "_source_ts": "timestamptz",
        "_txn": "string",
    }
    docs = {f.name: f.doc for f in table.schema().fields}
    assert (
        docs["id"] == "source type: bigint unsigned; stored as decimal(20, 0): Iceberg has no unsigned long"
    )
    assert (
        docs["t"] == "source type: time(6); stored as microseconds: TIME may be negative or exceed 24 hours"
    )
    assert (
        docs["big"]
        == "source type: decimal(65,30); stored as exact decimal text: Iceberg decimals stop at precision 38"
    )
    assert docs["small"] == "source type: decimal(10,2)"
    row = read_history(cfg.catalog, "hist", "db.types").rows.to_pylist()[0]
    assert row["id"] == decimal.Decimal(2**64 - 1)
    assert (row["i8"], row["u16"], row["u32"], row["f"], row["dbl"]) == (-128, 65535, 2**32 - 1, 1.5, -2.25)
    assert row["small"] == decimal.Decimal("-12345678.99")
    assert decimal.Decimal(row["big"]) == big and row["big"] == format(big, "f")
    assert row["t"] == -(838 * 3600 + 59 * 60 + 59) * 1_000_000
    assert row["dt"] == dt.datetime(2024, 2, 29, 23, 59, 59, 999999)
    assert row["ts"] == dt.datetime(2038, 1, 19, 3, 14, 7, 1, tzinfo=dt.UTC)
    assert (row["d"], row["b"], row["ok"]) == (dt.date(1000, 1, 1), b"\x00\xff", True)


@pytest.fixture
def story(tmp_path: Path):  # type: ignore[no-untyped-def]
    """id 1 created, updated, deleted; id 2 created; table truncated; id 3 created; id 2 re-created."""
    cfg = config(tmp_path, commit_rows=2)
    s = schema()
    sink = opened(cfg)
    sink.apply(
        batch(
            event(Op.CREATE, s, 1, (1, "a")),
            event(Op.CREATE, s, 2, (2, "b")),
            event(Op.UPDATE, s, 3, (1, "a2")),
            event(Op.DELETE, s, 4, (1, "a2")),
            ChangeEvent(Op.TRUNCATE, s, None, None, None, pos(5), T0_MS + 5000, "0-1-5"),
            event(Op.CREATE, s, 6, (3, "c")),
            event(Op.CREATE, s, 7, (2, "b2")),
        )
    )
    sink.close()
    return cfg


def rows_of(table: object) -> list[tuple[object, ...]]:
    return sorted((r["id"], r["name"]) for r in table.to_pylist())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("seq", "expected"),
    [
        (1, [(1, "a")]),
        (2, [(1, "a"), (2, "b")]),
        (3, [(1, "a2"), (2, "b")]),
        (4, [(2, "b")]),
        (5, []),
        (6, [(3, "c")]),
        (7, [(2, "b2"), (3, "c")]),
    ],
)
def test_state_as_of_a_position(story, seq: int, expected: list[tuple[object, ...]]) -> None:  # type: ignore[no-untyped-def]
    assert rows_of(state_as_of(story.catalog, "hist", TableRef("shop", "items"), pos(seq))) == expected


def test_state_as_of_a_time(story) -> None:  # type: ignore[no-untyped-def]
    at = dt.datetime.fromtimestamp((T0_MS + 3000) / 1000, dt.UTC)
    assert rows_of(state_as_of(story.catalog, "hist", "shop.items", at)) == [(1, "a2"), (2, "b")]
    naive = at.replace(tzinfo=None)  # naive = UTC
    assert rows_of(state_as_of(story.catalog, "hist", "shop.items", naive)) == [(1, "a2"), (2, "b")]
    before = at - dt.timedelta(seconds=10)
    assert state_as_of(story.catalog, "hist", "shop.items", before).num_rows == 0


def test_history_rows_as_of_takes_the_cli_strings(story) -> None:  # type: ignore[no-untyped-def]
    by_position = history_rows_as_of(story, "pipe", "shop.items", pos(3).to_string())
    assert rows_of(by_position) == [(1, "a2"), (2, "b")]
    iso = dt.datetime.fromtimestamp((T0_MS + 7000) / 1000, dt.UTC).isoformat()
    assert rows_of(history_rows_as_of(story, "pipe", "shop.items", iso)) == [(2, "b2"), (3, "c")]
    assert by_position.column_names == ["id", "name"]


def test_history_queries_name_what_is_wrong(story) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="neither a position"):
        parse_at("yesterday")
    with pytest.raises(ConfigError, match=r"no Iceberg history for shop\.nope"):
        history_rows_as_of(story, "pipe", "shop.nope", pos(1).to_string())
    with pytest.raises(ConfigError, match=r"'db\.table'"):
        history_rows_as_of(story, "pipe", "items", pos(1).to_string())


def _fill_three_days(tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = config(tmp_path, commit_rows=3)
    s = schema()
    sink = opened(cfg)
    seq = 0
    for day in range(3):
        for _ in range(9):  # 3 commits per day -> 3 files per day partition
            seq += 1
            sink.apply(batch(event(Op.CREATE, s, seq, (seq, f"d{day}"), ts_ms=T0_MS + day * DAY_MS + seq)))
    sink.apply(SinkBatch([], AppliedState(pos(seq + 5), {"t:0": 99})))
    sink.close()
    return cfg


def test_maintenance_compacts_closed_days_keeping_content_and_applied(tmp_path: Path) -> None:
    cfg = _fill_three_days(tmp_path)
    before = read_history(cfg.catalog, "hist", "shop.items").rows
    table = open_catalog(cfg.catalog).load_table("hist.items__history")
    state_before = stored_state(table)
    applied_before = opened(cfg).applied()
    # "today" is the third day: its partition is open and stays as it is
    now = dt.datetime.fromtimestamp((T0_MS + 2 * DAY_MS) / 1000, dt.UTC)

    report = maintain(cfg, "pipe", older_than=dt.timedelta(days=7), now=now)

    items = next(t for t in report.tables if t.identifier == "hist.items__history")
    assert items.files_before == 9 and items.files_after == 5  # 3 + 3 -> 1 + 1, today's 3 untouched
    assert items.rows_rewritten == 18 and len(items.partitions_rewritten) == 2
    after = read_history(cfg.catalog, "hist", "shop.items").rows
    assert after.to_pylist() == before.to_pylist()  # identical content, same order by position
    table = open_catalog(cfg.catalog).load_table("hist.items__history")
    assert stored_state(table) == state_before
    assert opened(cfg).applied() == applied_before
    # compacting again finds nothing to do
    again = maintain(cfg, "pipe", now=now)
    assert all(not t.partitions_rewritten for t in again.tables)


def test_maintenance_expires_old_snapshots_but_keeps_the_last_ones(tmp_path: Path) -> None:
    cfg = _fill_three_days(tmp_path)
    applied_before = opened(cfg).applied()
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    report = maintain(cfg, "pipe", older_than=dt.timedelta(days=1), retain_last=2, now=future)
    items = next(t for t in report.tables if t.identifier == "hist.items__history")
    assert (
        items.snapshots_after == 2 and items.snapshots_expired == items.snapshots_before + 2 * 3 - 2
    )  # compaction: delete + append per day
    progress = next(t for t in report.tables if "_headwater_progress__" in t.identifier)
    assert progress.snapshots_after == 2
    assert opened(cfg).applied() == applied_before
    history = read_history(cfg.catalog, "hist", "shop.items").rows
    assert history.num_rows == 27


def test_maintenance_leaves_other_pipelines_alone(tmp_path: Path) -> None:
    cfg = _fill_three_days(tmp_path)
    assert maintain(cfg, "another").tables == ()


def test_relative_sqlite_and_warehouse_paths_are_resolved(tmp_path: Path) -> None:
    props = resolve_catalog_properties(
        {"type": "sql", "uri": "sqlite:///state/catalog.db", "warehouse": "file://state/wh", "name": "x"},
        base=tmp_path,
    )
    assert props["uri"] == f"sqlite:///{tmp_path}/state/catalog.db"
    assert props["warehouse"] == (tmp_path / "state" / "wh").as_uri()
    assert "name" not in props and (tmp_path / "state" / "wh").is_dir()
    plain = resolve_catalog_properties(
        {"type": "sql", "uri": "sqlite:///:memory:", "warehouse": "wh"}, tmp_path
    )
    assert plain["warehouse"] == (tmp_path / "wh").as_uri()
    remote = {"type": "rest", "uri": "https://cat", "warehouse": "s3://bucket/wh", "s3.region": "eu"}
    assert resolve_catalog_properties(remote, tmp_path) == remote
    pg = {"type": "sql", "uri": "postgresql+psycopg://u:p@h/db", "warehouse": "s3://b/w"}
    assert resolve_catalog_properties(pg, tmp_path) == pg


def test_an_update_that_moves_the_key_is_a_delete_and_an_update_at_one_position(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    s = schema()
    sink = opened(cfg)
    moved = ChangeEvent(Op.UPDATE, s, (5,), (1, "a"), (5, "a"), pos(2), T0_MS + 2000, "0-1-2")
    sink.apply(batch(event(Op.CREATE, s, 1, (1, "a")), moved))
    sink.close()
    history = read_history(cfg.catalog, "hist", "shop.items").rows.to_pylist()
    assert [(r["_op"], r["id"], r["_position"]) for r in history] == [
        ("c", 1, pos(1).to_string()),
        ("d", 1, pos(2).to_string()),
        ("u", 5, pos(2).to_string()),
    ]
    assert rows_of(state_as_of(cfg.catalog, "hist", "shop.items", pos(2))) == [(5, "a")]


def test_maintenance_defaults_come_from_the_config(tmp_path: Path) -> None:
    cfg = _fill_three_days(tmp_path).model_copy(update={"maintenance_retain_last": 1})
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)  # everything is older than 7 days
    report = maintain(cfg, "pipe", now=future)
    assert all(t.snapshots_after == 1 for t in report.tables)
