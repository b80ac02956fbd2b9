"""Truncates fenced by position in the sinks, whatever the order the partitions deliver in.

The writer sends a truncate to every partition of the table's topic. A sink sees the three copies
and the rows around them in any interleaving of the partitions (each partition in its own order),
split into batches anyhow, by one process or several: the serving table must end as the source
did, and the Iceberg history must hold the truncate once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from cdc.core.events import ChangeEvent, Op
from cdc.core.schemas import TableRef
from sinks.contract import AppliedState, Sink, SinkBatch
from sinks.iceberg.as_of import rebuild_state
from sinks.sql import SqlSink, SqlSinkSettings
from tests.sinks.builders import ITEMS, REF, Writer
from tests.sinks.iceberg_factory import make_iceberg_sink_under_test
from tests.sinks.sql_targets import SqlTarget, make_target

TOPIC = "fence.shop.items"
PARTITIONS = 3


@dataclass(frozen=True)
class Delivered:
    partition: int
    offset: int
    event: ChangeEvent


def source() -> tuple[list[list[Delivered]], dict[object, tuple[object, ...]]]:
    """The three partitions' streams, and the table the source ends with.

    Rows go to partition ``id % 3``; the truncate goes to every partition, each copy after that
    partition's earlier rows and before its later ones (what the Kafka writer does).
    """
    w = Writer()
    w.insert(1, "one", 1).insert(2, "two", 2).insert(3, "three", 3)
    w.update((1, "one", 1), (1, "one", 10))
    w.insert(7, "seven", 7)
    before = list(w.pending)
    w.pending = []
    w.truncate()
    truncate = w.pending[0]
    w.pending = []
    w.insert(4, "four", 4).insert(5, "five", 5).insert(6, "six", 6)
    w.insert(3, "three again", 33)
    w.delete(5, "five", 5)
    after = list(w.pending)
    w.pending = []
    streams: list[list[ChangeEvent]] = [[] for _ in range(PARTITIONS)]
    for e in before:
        streams[int(e.key[0]) % PARTITIONS].append(e)  # type: ignore[index, arg-type]
    for stream in streams:
        stream.append(truncate)
    for e in after:
        streams[int(e.key[0]) % PARTITIONS].append(e)  # type: ignore[index, arg-type]
    partitions = [[Delivered(p, o, e) for o, e in enumerate(stream)] for p, stream in enumerate(streams)]
    expected: dict[object, tuple[object, ...]] = {
        4: (4, "four", 4),
        6: (6, "six", 6),
        3: (3, "three again", 33),
    }
    return partitions, expected


def batch_of(items: Sequence[Delivered]) -> SinkBatch:
    offsets: dict[str, int] = {}
    for d in items:
        offsets[f"{TOPIC}:{d.partition}"] = d.offset + 1
    return SinkBatch(
        tuple(d.event for d in items), AppliedState(max(d.event.position for d in items), offsets)
    )


def partial_assignment(parts: list[list[Delivered]]) -> list[list[Delivered]]:
    """The order of the bug: a restarted process gets partition 0 alone and applies all of it (its
    truncate copy and the rows after it); partitions 1 and 2 come later, older rows first."""
    p0, p1, p2 = parts
    cut1 = next(i for i, d in enumerate(p1) if d.event.op is Op.TRUNCATE)
    return [p0, p1[:cut1], p1[cut1:], p2]


def copies_apart(parts: list[list[Delivered]]) -> list[list[Delivered]]:
    """Each copy of the truncate in its own batch, the rows after one copy before the next copy."""
    batches: list[list[Delivered]] = []
    for part in parts:
        cut = next(i for i, d in enumerate(part) if d.event.op is Op.TRUNCATE)
        batches += [part[:cut], [part[cut]], part[cut + 1 :]]
    return [b for b in batches if b]


def random_schedule(parts: list[list[Delivered]], rng: random.Random) -> list[list[Delivered]]:
    """A random interleaving of the partitions (each in its own order), cut into random batches."""
    heads = [0] * len(parts)
    merged: list[Delivered] = []
    while any(h < len(p) for h, p in zip(heads, parts, strict=True)):
        p = rng.choice([i for i, part in enumerate(parts) if heads[i] < len(part)])
        merged.append(parts[p][heads[p]])
        heads[p] += 1
    batches: list[list[Delivered]] = []
    i = 0
    while i < len(merged):
        n = rng.randint(1, 5)
        batches.append(merged[i : i + n])
        i += n
    return batches


def schedules() -> list[tuple[str, list[list[Delivered]]]]:
    parts, _ = source()
    rng = random.Random(8)
    named = [("partial-assignment", partial_assignment(parts)), ("copies-apart", copies_apart(parts))]
    named += [(f"random-{n}", random_schedule(parts, rng)) for n in range(12)]
    return named


# -- the SQL serving sink -----------------------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.integration),
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlTarget]:
    yield from make_target(request.param, tmp_path, request)


def serving_rows(sink: SqlSink, ref: TableRef = REF) -> dict[object, tuple[object, ...]]:
    return {row["id"]: (row["id"], row["name"], row["qty"]) for row in sink.read_rows(ref)}


@pytest.mark.parametrize("processes", [1, 2])
def test_sql_sink_ends_as_the_source_whatever_the_partition_order(target: SqlTarget, processes: int) -> None:
    _, expected = source()
    rng = random.Random(processes)
    for n, (name, batches) in enumerate(schedules()):
        # each schedule on its own target table and pipeline of the same database
        settings = {"table_format": f"items_{processes}_{n}", "pipeline": f"fence_{processes}_{n}"}
        sinks = [target.sink(**settings) for _ in range(processes)]  # several `cdc sink` processes
        for batch in batches:
            rng.choice(sinks).apply(batch_of(batch))
        assert serving_rows(sinks[0]) == expected, name
        state = sinks[0].applied()
        assert state is not None
        assert dict(state.offsets) == {f"{TOPIC}:{p}": len(parts) for p, parts in enumerate(source()[0])}, (
            name
        )


def test_sql_sink_truncate_copy_after_a_restart_changes_nothing(target: SqlTarget) -> None:
    """The fence is stored with the data: a new sink object (a restart) still knows the copy is old."""
    parts, expected = source()
    for batch in partial_assignment(parts):
        sink = target.sink()
        sink.apply(batch_of(batch))
        sink.close()
    assert serving_rows(target.sink()) == expected


def test_sql_sink_embedded_mode_gives_the_same_result(target: SqlTarget) -> None:
    """One copy per truncate, events in position order, no offsets (embedded mode), cut anywhere and
    delivered again from the start after a restart: the same rule gives the source's table."""
    parts, expected = source()
    events = sorted(
        {d.event.position: d.event for part in parts for d in part}.values(), key=lambda e: e.position
    )
    for cut in range(1, len(events)):
        settings = {"table_format": f"embedded_{cut}", "pipeline": f"embedded_{cut}"}
        sink = target.sink(**settings)
        for chunk in (events[:cut], events[cut:], events):  # the last one: a re-delivery
            sink.apply(SinkBatch(tuple(chunk), AppliedState(chunk[-1].position)))
        assert serving_rows(sink) == expected, cut


# -- the Iceberg history ------------------------------------------------------------------------------


def history_of(tmp_path: Path, batches: list[list[Delivered]], commit_rows: int, reopen: bool) -> None:
    sut = make_iceberg_sink_under_test(tmp_path, commit_rows=commit_rows)
    sink: Sink = sut.sink
    sink.open()
    try:
        for batch in batches:
            sink.apply(batch_of(batch))
            if reopen:
                sink.close()
                assert sut.reopen is not None
                sink = sut.reopen()
                sink.open()
        sink.flush()
    finally:
        sink.close()
    _, expected = source()
    assert sut.history is not None
    history = sut.history(REF)
    truncates = [row for row in history if row["_op"] == "t"]
    assert len(truncates) == 1, truncates
    # every row change is recorded once, the rows below the truncate too
    rows = [row for row in history if row["_op"] != "t"]
    assert len(rows) == sum(len(p) - 1 for p in source()[0])
    current = sut.current_rows(REF)
    assert {k[0]: (r["id"], r["name"], r["qty"]) for k, r in current.items()} == expected
    sut.cleanup()


@pytest.mark.parametrize(("name", "batches"), schedules()[:4])
@pytest.mark.parametrize("commit_rows", [1, 1000], ids=["commit-each", "buffered"])
def test_iceberg_history_records_each_truncate_once(
    tmp_path: Path, name: str, batches: list[list[Delivered]], commit_rows: int
) -> None:
    history_of(tmp_path, batches, commit_rows, reopen=False)


def test_iceberg_history_truncate_copies_across_restarts(tmp_path: Path) -> None:
    parts, _ = source()
    history_of(tmp_path, copies_apart(parts), commit_rows=1, reopen=True)


def test_state_as_of_orders_by_position_not_by_file() -> None:
    """Rows below a truncate written after it (a later file) are still cut by it."""
    history = pa.table(
        {
            "id": [4, None, 1],
            "_op": ["c", "t", "c"],
            "_position": ["p3", "p2", "p1"],  # the truncate (p2) landed before row p1
        }
    )
    assert rebuild_state(history, ("id",)).column("id").to_pylist() == [4]
    assert ITEMS.primary_key == ("id",)


def test_positions_table_without_truncates_column_is_migrated(tmp_path: Path) -> None:
    """A serving database of the previous release (no fence column) gets it at open, and fences."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE _headwater_positions (pipeline VARCHAR(200) PRIMARY KEY, "
                "position VARCHAR(255) NOT NULL, offsets TEXT NOT NULL, updated_at DATETIME NOT NULL, "
                "writer_epoch BIGINT, writer VARCHAR(400))"
            )
        )
    parts, expected = source()
    sink = SqlSink(SqlSinkSettings(url, "old"))
    sink.open()
    try:
        for batch in partial_assignment(parts):
            sink.apply(batch_of(batch))
        assert serving_rows(sink) == expected
    finally:
        sink.close()
    columns = {c["name"] for c in sa.inspect(engine).get_columns("_headwater_positions")}
    assert "truncates" in columns
    engine.dispose()


def test_iceberg_two_processes_record_the_truncate_once(tmp_path: Path) -> None:
    """Two sink objects of one group, each with a stale view of the table, each committing a copy:
    the second commit conflicts, re-reads the table and leaves its copy out."""
    sut = make_iceberg_sink_under_test(tmp_path, commit_rows=1000)
    assert sut.reopen is not None and sut.history is not None
    a, b = sut.sink, sut.reopen()
    a.open()
    b.open()
    try:
        p0, p1, p2 = source()[0]
        cut0 = next(i for i, d in enumerate(p0) if d.event.op is Op.TRUNCATE)
        cut1 = next(i for i, d in enumerate(p1) if d.event.op is Op.TRUNCATE)
        a.apply(batch_of(p0[:cut0]))
        b.apply(batch_of(p1[:cut1]))
        a.flush()
        b.flush()  # both writers now hold the table as of their own commit
        a.apply(batch_of(p0[cut0:]))
        b.apply(batch_of(p1[cut1:]))
        a.flush()
        b.flush()
        b.apply(batch_of(p2))
        b.flush()
    finally:
        a.close()
        b.close()
    history = sut.history(REF)
    assert len([row for row in history if row["_op"] == "t"]) == 1
    assert len(history) - 1 == sum(len(p) - 1 for p in source()[0])
    sut.cleanup()
