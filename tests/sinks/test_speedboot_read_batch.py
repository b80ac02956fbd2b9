"""A snapshot chunk handed to a sink as one ReadBatch (the bootstrap's columnar path) ends exactly as
the same rows handed as one ChangeEvent each, in every sink (issue 9, speed).

Two copies of each sink take the same history: some streamed changes, then a chunk that replaces
the table (a lead truncate) and whose first rows one copy already holds (a resumed chunk). Copy A
gets the chunk as a ReadBatch, copy B as its events. Both must hold the same rows, and the Iceberg
histories the same rows at the same positions; and copy A must not have built an event per row (the
columnar path was taken). A bad row inside a chunk is dead-lettered under its own position.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.core.events import ChangeEvent, Op, RowImage
from cdc.core.positions import Gtid, Position, RestartPoint, snapshot_row_position
from cdc.core.schemas import ArrowKind
from sinks.contract import AppliedState, SinkBatch
from sinks.read_batch import ReadBatch
from snapshotter.chunk_log import ChunkLog, LoggedChunk
from tests.sinks.builders import col, event, schema
from tests.sinks.conftest import SINK_PARAMS, make_sink_under_test

WIDE = schema(
    col("id", "bigint", ArrowKind.INT64, nullable=False),
    col("name", "varchar(40)", ArrowKind.STRING),
    col("qty", "int", ArrowKind.INT32),
    col("amount", "decimal(12,2)", ArrowKind.DECIMAL, 12, 2),
    col("seen", "datetime(6)", ArrowKind.TIMESTAMP),
    col("raw", "varbinary(16)", ArrowKind.BINARY),
    col("big", "bigint unsigned", ArrowKind.UINT64),
)
ROWS = 2_500  # above PostgreSQL's COPY threshold (1,000)
HELD = 700  # rows of the chunk copy A holds already when the chunk comes (a resumed chunk)


def _row(i: int, name: str | None = None) -> RowImage:
    return (
        i,
        name if name is not None else f"name-{i}",
        None if i % 7 == 0 else i * 3,
        decimal.Decimal(f"{i}.{i % 100:02d}"),
        dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i, microseconds=i),
        bytes([i % 256, 0, 255]),
        2**64 - 1 - i,
    )


def _chunk(rows: tuple[RowImage, ...]) -> ReadBatch:
    boundary = RestartPoint(Position(Gtid(0, 1, 50), "bin.000001", 90_000, 0))
    first = snapshot_row_position(boundary, 1)
    lead = ChangeEvent(
        Op.TRUNCATE,
        WIDE,
        None,
        None,
        None,
        snapshot_row_position(boundary, 0),
        1_700_000_100_000,
        "snapshot-x-0",
    )
    return ReadBatch(WIDE, rows, first, 1_700_000_100_000, "snapshot-x-0", lead)


def _streamed() -> SinkBatch:
    """Rows the table held before the chunk (a truncate at the chunk's start wipes them)."""
    events = [
        event(
            Op.CREATE, Position(Gtid(0, 1, 10 + n), "bin.000001", 1_000 * (n + 1)), _row(i, "old"), table=WIDE
        )
        for n, i in enumerate((3, 4_000))
    ]
    return SinkBatch(tuple(events), AppliedState(events[-1].position))


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the events a ReadBatch builds (iterated or indexed)."""
    count = [0]
    iterate, single = ReadBatch.__iter__, ReadBatch.event

    def counting_iter(self: ReadBatch) -> Iterator[ChangeEvent]:
        for e in iterate(self):
            count[0] += 1
            yield e

    def counting_event(self: ReadBatch, i: int) -> ChangeEvent:
        count[0] += 1
        return single(self, i)

    monkeypatch.setattr(ReadBatch, "__iter__", counting_iter)
    monkeypatch.setattr(ReadBatch, "event", counting_event)
    yield count


@pytest.mark.parametrize("kind", SINK_PARAMS)
def test_read_batch_lands_like_its_events(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, built: list[int]
) -> None:
    chunk = _chunk(tuple(_row(i) for i in range(ROWS)))
    events = tuple(chunk)
    state = AppliedState(chunk.position)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = make_sink_under_test(kind, request, tmp_path / "a")
    b = make_sink_under_test(kind, request, tmp_path / "b")
    try:
        for sut in (a, b):
            sut.sink.open()
            sut.sink.apply(_streamed())
        # copy A already holds the lead truncate and the chunk's first rows (a chunk sent again)
        held = events[: HELD + 1]
        a.sink.apply(SinkBatch(held, AppliedState(held[-1].position)))
        built[0] = 0
        a.sink.apply(SinkBatch(chunk, state))
        a.sink.flush()
        assert built[0] <= 2, f"{kind}: {built[0]} events built for a {ROWS}-row chunk (not columnar)"
        a.sink.apply(SinkBatch(chunk, state))  # the same chunk again: nothing changes
        a.sink.flush()
        b.sink.apply(SinkBatch(events, state))
        b.sink.flush()
        expected = {(i,): _row(i) for i in range(ROWS)}
        for sut in (a, b):
            got = sut.current_rows(WIDE.ref)
            assert {k: tuple(r[c] for c in WIDE.column_names) for k, r in got.items()} == expected
            assert sut.sink.applied() == state
        if a.history is not None and b.history is not None:
            history_a, history_b = a.history(WIDE.ref), b.history(WIDE.ref)
            assert len(history_a) == 2 + 1 + ROWS  # two streamed rows, the truncate, the chunk
            assert history_a == history_b
    finally:
        a.cleanup()
        b.cleanup()


@pytest.mark.parametrize("kind", SINK_PARAMS)
def test_chunk_over_rows_the_copy_holds_updates_them(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """No lead truncate: the copy holds a streamed row inside the chunk's key range (old values),
    and one outside it; the chunk's value wins, the other row stays (PostgreSQL: the upsert path)."""
    full = _chunk(tuple(_row(i) for i in range(ROWS)))
    chunk = ReadBatch(full.schema, full.rows, full.first, full.source_ts_ms, full.transaction_id)
    sut = make_sink_under_test(kind, request, tmp_path)
    try:
        sut.sink.open()
        sut.sink.apply(_streamed())  # keys 3 (in the chunk) and 4000 (not), both "old"
        sut.sink.apply(SinkBatch(chunk, AppliedState(chunk.position)))
        sut.sink.flush()
        got = sut.current_rows(WIDE.ref)
        expected = {(i,): _row(i) for i in range(ROWS)} | {(4_000,): _row(4_000, "old")}
        assert {k: tuple(r[c] for c in WIDE.column_names) for k, r in got.items()} == expected
    finally:
        sut.cleanup()


@pytest.mark.parametrize("kind", [p for p in SINK_PARAMS if p.id == "postgres"])
def test_bad_row_in_a_chunk_is_dead_lettered_at_its_own_position(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from sinks.sql import SqlSink

    rows = tuple(_row(i, "nul \x00 inside" if i == 1_234 else None) for i in range(ROWS))
    chunk = _chunk(rows)
    sut = make_sink_under_test(kind, request, tmp_path, on_bad_row="dead_letter")
    try:
        sut.sink.open()
        sut.sink.apply(SinkBatch(chunk, AppliedState(chunk.position)))
        assert len(sut.current_rows(WIDE.ref)) == ROWS - 1
        assert isinstance(sut.sink, SqlSink)
        with sut.sink._require_engine().connect() as conn:
            letters = conn.execute(sa.select(sut.sink._book.dead_letters)).mappings().all()
        assert [(x["key"], x["op"], x["position"]) for x in letters] == [
            ("[1234]", "r", chunk.first.at_row(chunk.first.row + 1_234).to_string())
        ]
    finally:
        sut.cleanup()


def test_chunk_log_keeps_a_read_batch_exactly(tmp_path: Path) -> None:
    chunk = _chunk(tuple(_row(i) for i in range(50)))
    log = ChunkLog(tmp_path, "speedboot")
    log.write(LoggedChunk(chunk, "state-text"))
    back = log.read()
    assert back is not None and back.state == "state-text"
    assert back.records == tuple(chunk)
    assert [e.position.to_string() for e in back.records] == [e.position.to_string() for e in chunk]


MIXED = schema(
    col("id", "int", ArrowKind.INT32, nullable=False),
    col("f", "double", ArrowKind.FLOAT64),
    col("flag", "bool", ArrowKind.BOOL),
    col("d", "date", ArrowKind.DATE),
    col("t", "time(6)", ArrowKind.DURATION),
    col("ts", "timestamp(6)", ArrowKind.TIMESTAMP_UTC),
    col("dt_mixed", "datetime", ArrowKind.TIMESTAMP),  # an aware value among them: pickled whole
    col("txt", "text", ArrowKind.STRING),
)


def test_chunk_log_gives_back_values_of_the_same_types(tmp_path: Path) -> None:
    utc = dt.UTC
    rows = tuple(
        (
            i,
            float("-0.0") if i == 0 else i / 3,
            i % 2 == 0,
            dt.date(2020, 1, 1) + dt.timedelta(days=i),
            dt.timedelta(hours=-i, microseconds=i),
            dt.datetime(2026, 1, 1, tzinfo=utc) + dt.timedelta(microseconds=i),
            dt.datetime(2026, 1, 1, tzinfo=utc) if i == 3 else dt.datetime(2026, 1, 1, 0, 0, i),
            None if i == 4 else f"ünïcode \u2603 {i}",
        )
        for i in range(10)
    )
    boundary = RestartPoint(Position(Gtid(0, 1, 50), "bin.000001", 90_000, 0))
    chunk = ReadBatch(MIXED, rows, snapshot_row_position(boundary, 0), 1, "snapshot-x-0")
    log = ChunkLog(tmp_path, "speedboot")
    log.write(LoggedChunk(chunk, "s"))
    back = log.read()
    assert back is not None
    got = tuple(e.after for e in back.records)
    assert got == rows
    assert [[type(v) for v in r] for r in got if r is not None] == [[type(v) for v in r] for r in rows]
    assert repr(got[0][1]) == "-0.0"


@pytest.mark.parametrize(
    ("file", "offset", "row", "era"),
    [
        ("bin.000001", 90_000, 1, 0),  # the row's digits equal the file's: once searched, not placed
        ("bin.000007", 7, 7, 0),
        ("mariadb-bin.000068", 36_491_089, 0, 0),
        ("bin.000002", 5_000, 3, 2),
    ],
)
def test_history_positions_built_column_wise_equal_their_text(
    file: str, offset: int, row: int, era: int
) -> None:
    from sinks.iceberg.read_batches import position_texts

    first = Position(Gtid(0, 4_294_967_295, 0), file, offset, row, era)
    got = position_texts(first, 1_500).to_pylist()
    assert got == [first.at_row(row + k).to_string() for k in range(1_500)]
