"""SQLite and MariaDB upserts go to the driver as one executemany of plain tuples.

SQLAlchemy's executemany built a parameter dict per row and ran its per-row parameter processing
(``construct_params`` once per row): about a third of an embedded SQLite apply's CPU
(benchmarks/results/profiles). The sink now compiles each statement once per batch and hands the
driver tuples, with the type's own bind processors applied per value, so what is stored is what
SQLAlchemy stored. These tests pin both: no per-row parameter construction, and every kind read
back equal (a column name that needs quoting included).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.sql import compiler

from cdc.core.events import Op, RowImage
from cdc.core.schemas import ArrowKind, TableRef
from sinks.contract import AppliedState, SinkBatch
from sinks.sql import SqlSink, SqlSinkSettings
from tests.sinks.builders import Clock, col, event, schema
from tests.sinks.conftest import mariadb_url

ROWS = 1_500
REF = TableRef("applyspeed", "kinds")
KINDS = schema(
    col("id", "bigint", ArrowKind.INT64, nullable=False),
    col("u64", "bigint unsigned", ArrowKind.UINT64),
    col("odd-name col", "varchar(40)", ArrowKind.STRING),
    col("price", "decimal(12,2)", ArrowKind.DECIMAL, 12, 2),
    col("at", "datetime(6)", ArrowKind.TIMESTAMP),
    col("at_utc", "timestamp(6)", ArrowKind.TIMESTAMP_UTC),
    col("day", "date", ArrowKind.DATE),
    col("dur", "time(6)", ArrowKind.DURATION),
    col("blob", "varbinary(16)", ArrowKind.BINARY),
    col("flag", "tinyint(1)", ArrowKind.BOOL),
    col("ratio", "double", ArrowKind.FLOAT64),
    ref=REF,
)


def _row(i: int, bump: int = 0) -> RowImage:
    base = dt.datetime(2024, 2, 29, 23, 59, 58)
    return (
        i,
        2**64 - 1 - i if i % 3 == 0 else i,
        None if i % 7 == 0 else f"name {i + bump} é '%s' %%",
        Decimal(i % 10_000) / 100 + bump,
        base + dt.timedelta(microseconds=i * 1_001),
        dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i, microseconds=7),
        dt.date(2024, 1, 1) + dt.timedelta(days=i % 400),
        dt.timedelta(hours=-1, minutes=-30) if i % 5 == 0 else dt.timedelta(seconds=i, microseconds=3),
        i.to_bytes(8, "big"),
        i % 2 == 0,
        i / 3 + bump,
    )


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlSinkSettings]:
    if request.param == "sqlite":
        yield SqlSinkSettings(f"sqlite:///{tmp_path / 'serving.db'}", "applyspeed")
        return
    stack = request.getfixturevalue("sink_stack")
    database = f"applyspeed_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(mariadb_url(stack))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    try:
        yield SqlSinkSettings(mariadb_url(stack, database), "applyspeed")
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE `{database}`"))
        admin.dispose()


def test_upserts_skip_per_row_parameter_processing_and_store_every_kind_exactly(
    settings: SqlSinkSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = [0]
    original = compiler.SQLCompiler.construct_params

    def counted(self: compiler.SQLCompiler, *args: object, **kwargs: object) -> object:
        calls[0] += 1
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    clock = Clock()
    sink = SqlSink(settings)
    sink.open()
    try:
        first = [event(Op.CREATE, clock.txn() if i == 0 else clock.next_row(), _row(i), table=KINDS)
                 for i in range(ROWS)]  # fmt: skip
        sink.apply(SinkBatch(first, AppliedState(first[-1].position)))
        # a second batch updates a third of the rows and deletes a few: the same paths again
        second = [
            event(Op.UPDATE, clock.txn() if n == 0 else clock.next_row(), _row(i, 1), _row(i), table=KINDS)
            for n, i in enumerate(range(0, ROWS, 3))
        ]
        second += [event(Op.DELETE, clock.next_row(), None, _row(i), table=KINDS) for i in range(1, 40, 3)]
        monkeypatch.setattr(compiler.SQLCompiler, "construct_params", counted)
        sink.apply(SinkBatch(second, AppliedState(second[-1].position)))
        monkeypatch.undo()
        stored = {row["id"]: tuple(row.values()) for row in sink.read_rows(REF)}
    finally:
        sink.close()
    expected = {i: _row(i, 1 if i % 3 == 0 else 0) for i in range(ROWS) if i not in range(1, 40, 3)}
    assert stored == expected
    # a handful per batch (the positions row, the schema check), not one per row
    assert calls[0] < 50, f"{calls[0]} parameter constructions for {len(second)} changes"
