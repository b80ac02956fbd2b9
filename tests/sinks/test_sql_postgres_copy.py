"""The PostgreSQL COPY path gives the same results as executemany (threshold 1: every write copies)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.sql import SqlSink
from tests.sinks.builders import REF, Writer
from tests.sinks.conftest import make_sink_under_test
from tests.sinks.harness import SinkUnderTest
from tests.sinks.test_sink_behaviour import VALUE_ROWS, VALUES_SCHEMA, rows

pytestmark = pytest.mark.integration


@pytest.fixture
def copying(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkUnderTest]:
    sut = make_sink_under_test("postgres", request, tmp_path, copy_threshold=1)
    sut.sink.open()
    try:
        yield sut
    finally:
        sut.cleanup()


def test_copy_path_round_trips_every_value_type(copying: SinkUnderTest) -> None:
    w = Writer()
    for row in VALUE_ROWS:
        w.insert(*row, table=VALUES_SCHEMA)
    copying.sink.apply(w.batch())
    got = copying.current_rows(VALUES_SCHEMA.ref)
    names = VALUES_SCHEMA.column_names
    for row in VALUE_ROWS:
        back = got[(row[0],)]
        for name, value in zip(names, row, strict=True):
            assert (type(back[name]), back[name]) == (type(value), value), f"{row[0]} {name}"


def test_copy_path_upserts_deletes_and_truncates(copying: SinkUnderTest) -> None:
    w = Writer()
    for i in range(50):
        w.insert(i, f"n{i}", i)
    copying.sink.apply(w.batch())
    for i in range(0, 50, 2):
        w.delete(i, f"n{i}", i)
    for i in range(1, 50, 2):
        w.update((i, f"n{i}", i), (i, f"m{i}", None))
    w.insert(100, "new", 1)
    copying.sink.apply(w.batch())
    expected = rows(*[(i, f"m{i}", None) for i in range(1, 50, 2)], (100, "new", 1))
    assert copying.current_rows(REF) == expected
    copying.sink.apply(w.insert(7, "x", 1).truncate().insert(8, "y", 2).batch())
    assert copying.current_rows(REF) == rows((8, "y", 2))


def test_copy_path_is_used_above_the_threshold(
    copying: SinkUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sinks.sql import postgres_copy  # table_writer imports them from it at each call

    calls: list[tuple[str, int]] = []
    real_insert, real_upsert = postgres_copy.copy_insert, postgres_copy.copy_upsert

    def insert_spy(conn, target, columns, types, rows_):  # type: ignore[no-untyped-def]
        calls.append(("insert", len(rows_)))
        real_insert(conn, target, columns, types, rows_)

    def upsert_spy(conn, target, columns, types, rows_, pk, stages=None):  # type: ignore[no-untyped-def]
        calls.append(("upsert", len(rows_)))
        real_upsert(conn, target, columns, types, rows_, pk, stages)

    monkeypatch.setattr(postgres_copy, "copy_insert", insert_spy)
    monkeypatch.setattr(postgres_copy, "copy_upsert", upsert_spy)
    assert isinstance(copying.sink, SqlSink)
    w = Writer()
    copying.sink.apply(w.insert(1, "a", 1).insert(2, "b", 2).batch())
    assert calls == [("insert", 2)]  # new keys only: straight into the table
    copying.sink.apply(w.update((1, "a", 1), (1, "a", 5)).update((2, "b", 2), (2, "b", 6)).batch())
    assert calls[1:] == [("upsert", 2)]
    assert copying.current_rows(REF) == rows((1, "a", 5), (2, "b", 6))


def test_inserts_of_keys_the_table_holds_end_as_upserts(copying: SinkUnderTest) -> None:
    """A replay (after a bootstrap, or of a batch whose commit was not seen): the straight COPY
    meets a held key, the batch is rolled back and written again by upsert."""
    assert isinstance(copying.sink, SqlSink)
    w = Writer()
    copying.sink.apply(w.insert(1, "a", 1).insert(2, "b", 2).batch())
    copying.sink.apply(w.insert(2, "B", 20).insert(3, "c", 3).delete(1, "a", 1).batch())
    assert copying.current_rows(REF) == rows((2, "B", 20), (3, "c", 3))
    assert copying.sink._pg_upserting == {"items": 16}
    copying.sink.apply(w.insert(4, "d", 4).insert(2, "b2", 21).batch())  # by upsert: no fallback
    assert copying.sink._pg_upserting == {"items": 15}
    assert copying.current_rows(REF) == rows((2, "b2", 21), (3, "c", 3), (4, "d", 4))
