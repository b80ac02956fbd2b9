"""`cdc bootstrap --sink NAME` (snapshotter.sink_fill): a sink added to a running pipeline later is
filled from one consistent view while the source keeps changing, and then follows the stream; the
pipeline's other sinks receive nothing from the fill. Real MariaDB, Kafka, PostgreSQL, SQLite and
Iceberg; `cdc run` / `cdc sink` as real processes."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.core.errors import ConfigError, TerminalError
from cdc.core.positions import RestartPoint
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from snapshotter.sink_fill import FillProgress, fill_sink
from snapshotter.sink_fill_state import progress_path, read_state
from tests.snapshotter.sink_fill_pipeline import PREFILLED, TABLES, SinkFillPipeline, Writes
from tests.support.kafka_pipeline import wait_for
from tests.support.workload import Daemon

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded(stack: StackConnections, tmp_path: Path) -> Iterator[SinkFillPipeline]:
    pipeline = SinkFillPipeline.create(stack, tmp_path)
    yield pipeline
    pipeline.drop()


def _new_sink(pipeline: SinkFillPipeline, kind: str) -> str:
    if kind == "sqlite":
        return pipeline.sqlite_sink("late")
    if kind == "postgres":
        return pipeline.postgres_sink("late")
    return pipeline.iceberg_sink("late")


def _started(pipeline: SinkFillPipeline, first_sink: str, rows: int = PREFILLED) -> Writes:
    """The pipeline with one sink, started, fed the prefilled rows and a workload; the workload goes on."""
    pipeline.write_config(first_sink)
    run = pipeline.daemon("run", "run.log")
    run.catch_up()  # the first start: the pipeline begins here
    pipeline.prefill(rows)
    writes = Writes(pipeline, random.randrange(1 << 30)).start()
    time.sleep(1.0)
    run.catch_up()
    return writes


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "iceberg"])
def test_embedded_fill_under_writes_then_run_ends_exact(embedded: SinkFillPipeline, kind: str) -> None:
    p = embedded
    writes = _started(p, p.iceberg_sink("first"))
    before = p.assert_history_once("first", snapshot_rows=False)
    p.write_config(*p.sinks, _new_sink(p, kind), server_id=int(p.loaded().source.server_id))
    seen: list[FillProgress] = []
    # the writes go on meanwhile
    result = fill_sink(p.loaded(), "late", p.refs(), replace=False, progress=seen.append, batch_rows=1000)
    time.sleep(0.5)
    writes.finish()
    assert writes.transactions > 50
    assert result.rows == sum(t.rows for t in result.tables) > 0
    assert seen and seen[-1].table_done and seen[-1].total_rows == result.rows
    assert result.applied is not None and result.applied.is_snapshot_anchor
    assert p.assert_history_once("first", snapshot_rows=False) == before  # the fill sent it nothing
    done = p.daemon("run", "run.log")
    done.catch_up()
    log = done.log.read_text()
    assert "sink " in log and "has applied up to" in log
    p.assert_equal("first")
    p.assert_equal("late")
    p.assert_history_once("first", snapshot_rows=False)
    if kind == "iceberg":
        ops = p.assert_history_once("late", snapshot_rows=True)
        assert ops["r"] == result.rows


def test_replace_removes_rows_left_from_an_earlier_use(embedded: SinkFillPipeline) -> None:
    p = embedded
    _started(p, p.sqlite_sink("first")).finish()
    p.write_config(*p.sinks, p.sqlite_sink("late"), server_id=int(p.loaded().source.server_id))
    done = subprocess.run(  # the first fill as a user runs it
        [sys.executable, "-m", "cdc.cli", "bootstrap", "-c", str(p.config), "--sink", "late", f"{p.db}.*"],
        env=p.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    rows = sum(len(p.source_rows(t)) for t in TABLES)  # the writes have stopped
    assert f"sink late: filled {rows} rows of 2 tables" in done.stdout, done.stdout
    # the sink is then left behind (not run) while rows go; a plain fill would keep them
    with p.connect() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM items WHERE id % 7 = 0")
        cur.execute("DELETE FROM pairs WHERE a % 5 = 0")
        conn.commit()
    result = fill_sink(p.loaded(), "late", p.refs(), replace=True, progress=None)
    assert not result.resumed
    for table in TABLES:
        assert p.sink_rows("late", table) == p.source_rows(table), table
    p.daemon("run", "run.log").catch_up()
    p.assert_equal("first")
    p.assert_equal("late")


class _Killed(BaseException):
    """The process dies (a SIGKILL) at this point of the sink's commit cycle."""


def test_iceberg_chunk_committed_without_its_progress_is_not_read_again_over_other_keys(
    embedded: SinkFillPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI found it (Kafka SIGKILL test: 5 keys missing). The fill dies after a history table took a
    # chunk and before the progress table recorded it; rows are deleted in that chunk's key range;
    # the resumed fill, judging the chunk by the progress table alone, read it again in a new view
    # at the same positions, and the sink skipped by position as many keys past the chunk's end
    # as had been deleted (the re-read chunk reached further): they were never in the copy.
    from sinks.iceberg.history_sink import IcebergHistorySink

    p = embedded
    p.write_config(p.sqlite_sink("first"))
    p.daemon("run", "run.log").catch_up()
    p.prefill(5_000)
    p.daemon("run", "run.log").catch_up()
    p.write_config(*p.sinks, p.iceberg_sink("late"), server_id=int(p.loaded().source.server_id))
    record = IcebergHistorySink._record_progress
    calls = 0

    def dies_on_the_second_chunk(self: IcebergHistorySink, state: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise _Killed
        return record(self, state)  # type: ignore[arg-type]

    monkeypatch.setattr(IcebergHistorySink, "_record_progress", dies_on_the_second_chunk)
    with pytest.raises(_Killed):
        fill_sink(p.loaded(), "late", p.refs(), replace=False, progress=None, batch_rows=1000)
    monkeypatch.setattr(IcebergHistorySink, "_record_progress", record)
    state = read_state(progress_path(p.tmp / "state", p.name, "late"))
    assert state is not None and state.pending is not None and state.pending.after is not None
    after = state.pending.after[0]
    assert isinstance(after, int)
    with p.connect() as conn, conn.cursor() as cur:  # inside the chunk that landed unrecorded
        cur.execute("DELETE FROM items WHERE id > %s AND id <= %s", (after, after + 5))
        conn.commit()
    result = fill_sink(p.loaded(), "late", p.refs(), replace=False, progress=None, batch_rows=1000)
    assert result.resumed
    missing = sorted(p.source_rows("items").keys() - p.sink_rows("late", "items").keys())
    assert not missing, f"keys never copied: {missing[:10]}"
    p.daemon("run", "run.log").catch_up()  # the deletes follow from the view on
    p.assert_equal("late")
    p.assert_history_once("late", snapshot_rows=True)


def _steps(log: Path) -> int:
    return log.read_text().count("sink fill step 1") if log.exists() else 0


def _wait_started(log: Path, proc: subprocess.Popen[bytes], seen: int) -> None:
    """Until this process has logged its first step (a kill before then would test only imports)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if _steps(log) > seen:
            return
        time.sleep(0.05)


def _rows_landed(p: SinkFillPipeline) -> int:
    state = read_state(progress_path(p.tmp / "state", p.name, "late"))
    return 0 if state is None else sum(t.rows for t in state.tables)


def _wait_landed(p: SinkFillPipeline, proc: subprocess.Popen[bytes], landed: int) -> None:
    """Until this process has recorded a chunk more than ``landed`` rows (or ended)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if _rows_landed(p) > landed:
            return
        time.sleep(0.05)


def _fill_killed_again_and_again(p: SinkFillPipeline) -> None:
    """The fill in a process killed with SIGKILL 6 times at random moments, then let finish."""
    rng = random.Random()
    kills = 0
    while True:
        seen = _steps(p.tmp / "fill.log")
        proc = p.fill_process("late", "--batch-rows", "1000")
        _wait_started(p.tmp / "fill.log", proc, seen)  # importing takes seconds on a busy machine
        if kills % 2:  # every other kill after a chunk more has landed (else, under load, every kill
            _wait_landed(p, proc, _rows_landed(p))  # could come before the first chunk: no resume)
        time.sleep(rng.uniform(0.05, 0.4) if kills < 6 else 0)  # the fill takes a few seconds in all
        if kills >= 6 or proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills += 1
    log = p.tmp / "fill.log"
    assert proc.wait(300) == 0, log.read_text()[-3000:]
    assert kills >= 5, f"the fill ended after {kills} kills: make the table bigger\n{log.read_text()[-2000:]}"
    # every process got as far as its first step (a kill before the first chunk's record starts afresh)
    text = log.read_text()
    assert _steps(log) == kills + 1 and "resuming the fill of sink late" in text, text[-3000:]
    state = read_state(progress_path(p.tmp / "state", p.name, "late"))
    assert state is not None and state.finished


@pytest.mark.parametrize("kind", ["iceberg", "postgres"])
def test_sigkill_during_fill_resumes_each_time_and_ends_exact(embedded: SinkFillPipeline, kind: str) -> None:
    p = embedded
    writes = _started(p, p.sqlite_sink("first"), rows=60_000)
    p.write_config(*p.sinks, _new_sink(p, kind), server_id=int(p.loaded().source.server_id))
    _fill_killed_again_and_again(p)
    writes.finish()
    p.daemon("run", "run.log").catch_up()
    p.assert_equal("first")
    p.assert_equal("late")
    if kind == "iceberg":
        p.assert_history_once("late", snapshot_rows=True)


@pytest.fixture
def kafka(stack: StackConnections, tmp_path: Path) -> Iterator[SinkFillPipeline]:
    pipeline = SinkFillPipeline.create(stack, tmp_path, kafka=True)
    yield pipeline
    pipeline.drop()


def _logged(daemon: Daemon, text: str) -> bool:
    return daemon.log.exists() and text in daemon.log.read_text()


def _stop(daemon: Daemon) -> None:
    if daemon.proc is not None and daemon.proc.poll() is None:
        daemon.proc.terminate()
        try:
            daemon.proc.wait(90)
        except subprocess.TimeoutExpired:
            daemon.kill()  # stopping cleanly took too long (a busy machine); nothing depends on it


@pytest.mark.parametrize("kind", ["postgres", "iceberg"])
def test_kafka_fill_while_capturing_then_sink_ends_exact(kafka: SinkFillPipeline, kind: str) -> None:
    p = kafka
    p.write_config(p.iceberg_sink("first"))
    capture, consume = p.daemon("run", "run.log"), p.daemon("sink", "sink.log")
    capture.start()
    consume.start()
    try:
        wait_for("`cdc run` to read the binlog", lambda: _logged(capture, "binlog dump started"), 90, capture)
        p.prefill()  # through the stream: the pipeline's first start came before
        writes = Writes(p, random.randrange(1 << 30)).start()
        wait_for("rows in sink first", lambda: bool(p.sink_rows("first", "items")), 90, consume, capture)
        # the new sink, filled while `cdc run` captures, `cdc sink` feeds sink first, and the writes go on
        p.write_config(*p.sinks, _new_sink(p, kind), server_id=int(p.loaded().source.server_id))
        result = fill_sink(p.loaded(), "late", p.refs(), replace=False, progress=None, batch_rows=1000)
        time.sleep(0.5)
        writes.finish()
        assert result.kafka_offsets, result
        assert writes.transactions > 50
        wait_for(
            "sink first to catch up with the source",
            lambda: all(p.sink_rows("first", t) == p.source_rows(t) for t in TABLES),
            120,
            consume,
            capture,
        )
        _stop(consume)  # it was started before sink late was configured
        p.daemon("sink", "sink2.log").catch_up()
        log = (p.tmp / "sink2.log").read_text()
        assert "has never consumed" not in log, log[-2000:]
        p.assert_equal("first")
        p.assert_equal("late")
        p.assert_history_once("first", snapshot_rows=False)  # nothing from the fill reached it
        if kind == "iceberg":
            ops = p.assert_history_once("late", snapshot_rows=True)
            assert ops["r"] == result.rows and ops["t"] == len(TABLES)
    finally:
        _stop(consume)
        _stop(capture)


def test_refuses_a_keyless_or_unselected_table_before_writing(
    embedded: SinkFillPipeline,
) -> None:
    p = embedded
    with p.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE nokey (x INT, y INT)")
        cur.execute("INSERT INTO nokey VALUES (1, 2)")
    late = p.sqlite_sink("late").replace("type: sql,", "type: sql, exclude_tables: ['*.pairs'],")
    p.write_config(p.sqlite_sink("first"), late)
    with pytest.raises(TerminalError, match=rf"table {p.db}\.nokey has no primary key"):
        fill_sink(p.loaded(), "late", [*p.refs()[:1], TableRef(p.db, "nokey")], replace=False, progress=None)
    with pytest.raises(ConfigError, match=rf"sink late does not take table {p.db}\.pairs"):
        fill_sink(p.loaded(), "late", p.refs(), replace=False, progress=None)
    with pytest.raises(ConfigError, match="no such sink in pipeline"):
        fill_sink(p.loaded(), "nope", p.refs(), replace=False, progress=None)
    assert not progress_path(p.tmp / "state", p.name, "late").exists()
    assert p.sink_rows("late", "items") == {}


def test_empty_tables_still_move_the_sink_to_the_view(embedded: SinkFillPipeline) -> None:
    """Nothing to copy, yet the sink's position must reach the view: else `cdc run` would treat it as
    a fresh sink and replay it from the pipeline's first start (maybe long purged)."""
    p = embedded
    p.write_config(p.sqlite_sink("first"))
    p.daemon("run", "run.log").catch_up()
    p.write_config(*p.sinks, p.sqlite_sink("late"), server_id=int(p.loaded().source.server_id))
    result = fill_sink(p.loaded(), "late", p.refs(), replace=False, progress=None)
    assert result.rows == 0 and result.applied is not None and result.applied.is_snapshot_anchor
    p.prefill(50)
    run = p.daemon("run", "run2.log")
    run.catch_up()
    assert "late.db has applied up to" in run.log.read_text()
    p.assert_equal("first")
    p.assert_equal("late")


def test_sigkill_during_kafka_fill_resumes_each_time_and_ends_exact(kafka: SinkFillPipeline) -> None:
    p = kafka
    p.write_config(p.sqlite_sink("first"))
    capture, consume = p.daemon("run", "run.log"), p.daemon("sink", "sink.log")
    capture.start()
    consume.start()
    try:
        wait_for("`cdc run` to read the binlog", lambda: _logged(capture, "binlog dump started"), 90, capture)
        p.prefill(60_000)
        writes = Writes(p, random.randrange(1 << 30)).start()
        wait_for("rows in sink first", lambda: bool(p.sink_rows("first", "items")), 120, consume, capture)
        p.write_config(*p.sinks, p.iceberg_sink("late"), server_id=int(p.loaded().source.server_id))
        _fill_killed_again_and_again(p)
        writes.finish()
        state = read_state(progress_path(p.tmp / "state", p.name, "late"))
        assert state is not None and state.offsets  # taken once, before the first view, kept since
        wait_for(
            "sink first to catch up with the source",
            lambda: all(p.sink_rows("first", t) == p.source_rows(t) for t in TABLES),
            180,
            consume,
            capture,
        )
        _stop(consume)
        p.daemon("sink", "sink2.log").catch_up()
        p.assert_equal("first")
        p.assert_equal("late")
        ops = p.assert_history_once("late", snapshot_rows=True)
        assert ops["r"] == sum(t.rows for t in state.tables) and ops["t"] == len(TABLES)
    finally:
        _stop(consume)
        _stop(capture)


def test_run_resumes_from_the_fill_anchor_when_it_is_the_lowest_point(embedded: SinkFillPipeline) -> None:
    """The other sinks went on past the view (here: `cdc run` with the config as it was before the
    sink was added), so the filled sink's anchor is the lowest resume point: the binlog is read from
    it (one byte after the anchor: the view's boundary) and the filled sink gets exactly what follows."""
    p = embedded
    first = p.sqlite_sink("first")
    p.write_config(first)
    sid = int(p.loaded().source.server_id)
    p.daemon("run", "run.log").catch_up()
    p.prefill(500)
    p.daemon("run", "run.log").catch_up()
    p.write_config(first, p.iceberg_sink("late"), server_id=sid)
    result = fill_sink(p.loaded(), "late", p.refs(), replace=False, progress=None)
    assert result.applied is not None
    with p.connect() as conn, conn.cursor() as cur:
        cur.execute("UPDATE items SET ver = ver + 1 WHERE id <= 10")
        cur.execute("INSERT INTO items VALUES (100000, 1, 'after the fill')")
        conn.commit()
    p.write_config(first, server_id=sid)
    p.daemon("run", "run.log").catch_up()  # sink first only: it moves past the view
    p.write_config(first, p.iceberg_sink("late"), server_id=sid)
    run = p.daemon("run", "run2.log")
    run.catch_up()
    log = run.log.read_text()
    # read from the view's boundary: the anchor's restart point, or the same boundary written as one
    # (an idle checkpoint there says no captured change lies between)
    lowest = RestartPoint.after(result.applied)
    started = log.split("applying 2 tables to 2 sinks, from ", 1)[1].split()[0]
    point = RestartPoint.parse(started)
    assert (point.transaction.file, point.binlog_offset) == (lowest.transaction.file, lowest.binlog_offset), (
        started,
        lowest.to_string(),
    )
    p.assert_equal("first")
    p.assert_equal("late")
    ops = p.assert_history_once("late", snapshot_rows=True)
    assert ops["u"] == 10 and ops["c"] == 1, ops
