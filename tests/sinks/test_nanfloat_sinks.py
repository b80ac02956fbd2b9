"""real/double NaN and ±Infinity into each sink: stored as they are, or refused by name, never NULL.

SQLite REAL holds ±Infinity, but stores a bound NaN as NULL: the SQL sink treats NaN as a value
SQLite cannot hold (the row stops the sink naming the column, or goes to the dead letters).
Iceberg float/double hold all three."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cdc.core.errors import BadRowError
from cdc.core.schemas import ArrowKind, TableRef
from tests.sinks.builders import Writer, col, schema
from tests.sinks.conftest import make_sink_under_test

REF = TableRef("shop", "floats")
FLOATS = schema(
    col("id", "integer", ArrowKind.INT64, nullable=False),
    col("r", "real", ArrowKind.FLOAT32),
    col("d", "double precision", ArrowKind.FLOAT64),
    ref=REF,
)
INF = math.inf


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


@pytest.mark.parametrize("kind", ["iceberg", pytest.param("postgres", marks=pytest.mark.integration)])
def test_nanfloat_sink_holds_all_three(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    sut = make_sink_under_test(kind, request, tmp_path)
    try:
        sut.sink.open()
        rows = [(1, math.nan, math.nan), (2, INF, -INF), (3, -INF, INF)]
        w = Writer()
        for row in rows:
            w.insert(*row, table=FLOATS)
        sut.sink.apply(w.batch())
        sut.sink.flush()
        got = sut.current_rows(REF)
        for row in rows:
            stored = got[(row[0],)]
            assert all(_same(v, stored[c]) for v, c in zip(row, ("id", "r", "d"), strict=True)), stored
    finally:
        sut.cleanup()


def test_nanfloat_sqlite_keeps_infinity_and_refuses_nan_by_name(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    sut = make_sink_under_test("sqlite", request, tmp_path / "stop", on_bad_row="stop")
    try:
        sut.sink.open()
        w = Writer()
        first = w.insert(2, INF, -INF, table=FLOATS).batch()
        sut.sink.apply(first)
        with pytest.raises(BadRowError) as info:
            sut.sink.apply(w.insert(1, 0.5, math.nan, table=FLOATS).batch())
        assert (info.value.column, info.value.key) == ("d", "[1]")
        assert "shop.floats" in str(info.value) and "NaN" in info.value.reason
        assert sut.current_rows(REF) == {(2,): {"id": 2, "r": INF, "d": -INF}}
    finally:
        sut.cleanup()
    dead = make_sink_under_test("sqlite", request, tmp_path / "dead", on_bad_row="dead_letter")
    try:
        dead.sink.open()
        w = Writer()
        dead.sink.apply(w.insert(1, math.nan, 0.5, table=FLOATS).insert(3, -INF, 1.0, table=FLOATS).batch())
        assert dead.current_rows(REF) == {(3,): {"id": 3, "r": -INF, "d": 1.0}}
    finally:
        dead.cleanup()


@pytest.mark.integration
@pytest.mark.parametrize("value", [INF, -INF])
def test_nanfloat_mariadb_refuses_infinity_by_name(
    value: float, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """MariaDB DOUBLE has no NaN and no Infinity (a PostgreSQL source's rows into a MariaDB sink)."""
    sut = make_sink_under_test("mariadb", request, tmp_path, on_bad_row="stop")
    try:
        sut.sink.open()
        with pytest.raises(BadRowError) as info:
            sut.sink.apply(Writer().insert(1, 0.5, value, table=FLOATS).batch())
        assert (info.value.column, info.value.key) == ("d", "[1]")
        assert "Infinity" in info.value.reason and "MariaDB" in info.value.reason
    finally:
        sut.cleanup()
