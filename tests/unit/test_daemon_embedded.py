"""Embedded mode's rules on an in-memory source and sinks (real sinks have their own suite):
resume from the lowest applied position over all sinks; a fresh sink starts at the first start's
position, which is written before anything is read; every change reaches every sink exactly once;
a newer daemon's claim fences the older one; the idle checkpoint moves the resume point through
stretches with no captured change."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cdc.core.errors import ConfigError, SourceProtocolError, SourceUnavailable, WriterFenced
from cdc.core.events import ChangeEvent, SchemaChange, SourceProgress, SourceRecord, TransactionEnd
from cdc.core.positions import Gtid, Position, RestartPoint
from cdc.daemon.embedded import EmbeddedDaemon, EmbeddedOptions, StartFile
from cdc.daemon.embedded_resume import PipelineIdentity, ProgressFile, order
from sinks.contract import AppliedState, Sink, SinkBatch, WriterIdentity
from tests.unit.test_daemon_capture import BOUNDARY, FakeSource, transactions


class MemorySink:
    def __init__(self, name: str, fail_after_batches: int | None = None) -> None:
        self.name = name
        self.keys: list[int] = []
        self.position: Position | None = None
        self.fail_after = fail_after_batches
        self.epoch = 0  # the stored writer epoch (shared by every "process" using this object)
        self.writer = ""
        self.my_epoch: int | None = None  # what this process's claim got

    def open(self) -> None:
        pass

    def claim_writer(self, writer: WriterIdentity) -> None:
        self.epoch += 1
        self.writer, self.my_epoch = writer.describe(), self.epoch

    def check(self) -> None:
        if self.my_epoch is not None and self.my_epoch != self.epoch:
            raise WriterFenced(f"{self.name}: another writer ({self.writer}) took over this sink")

    def applied(self) -> AppliedState | None:
        return None if self.position is None else AppliedState(self.position)

    def apply(self, batch: SinkBatch) -> None:
        self.check()
        if self.fail_after is not None:
            if self.fail_after == 0:
                self.fail_after = None
                raise SourceUnavailable("sink database went away")
            self.fail_after -= 1
        for record in batch.records:
            if self.position is not None and record.position <= self.position:
                continue
            if isinstance(record, ChangeEvent) and record.key is not None:
                self.keys.append(int(record.key[0]))  # type: ignore[arg-type]
        if self.position is None or batch.state.position > self.position:
            self.position = batch.state.position  # never backwards (contract)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


UNNAMED = PipelineIdentity("", "", 0)  # what a daemon built without `identify` records


def options() -> EmbeddedOptions:
    return EmbeddedOptions(max_events=3, max_ms=1, backoff_initial_s=0.01)


def test_first_start_writes_the_start_position_and_applies_everything(tmp_path: Path) -> None:
    sink = MemorySink("a")
    source = FakeSource(transactions(4, 5))
    assert EmbeddedDaemon(lambda: [sink], lambda: source, tmp_path, options()).run() == 0
    assert sink.keys == list(range(20))
    assert StartFile(tmp_path).read(None) == BOUNDARY


def test_resume_from_the_lowest_sink_and_each_skips_what_it_holds(tmp_path: Path) -> None:
    txs = transactions(6, 4)
    ahead, behind = MemorySink("ahead"), MemorySink("behind")
    StartFile(tmp_path).write(BOUNDARY, UNNAMED)
    flat = [r for tx in txs for r in tx if isinstance(r, ChangeEvent | SchemaChange)]
    ahead.keys, ahead.position = list(range(14)), flat[13].position
    behind.keys, behind.position = list(range(5)), flat[4].position
    source = FakeSource(txs)
    assert EmbeddedDaemon(lambda: [ahead, behind], lambda: source, tmp_path, options()).run() == 0
    assert ahead.keys == list(range(24)) and behind.keys == list(range(24))
    assert source.starts[0].transaction == flat[4].position.at_row(0)
    assert source.starts[0].skip_rows == 1


def test_a_fresh_sink_added_later_starts_at_the_first_start(tmp_path: Path) -> None:
    txs = transactions(3, 2)
    old = MemorySink("old")
    assert EmbeddedDaemon(lambda: [old], lambda: FakeSource(txs), tmp_path, options()).run() == 0
    new = MemorySink("new")
    assert EmbeddedDaemon(lambda: [old, new], lambda: FakeSource(txs), tmp_path, options()).run() == 0
    assert old.keys == list(range(6)) and new.keys == list(range(6))


def test_transient_sink_failure_is_retried_without_loss_or_duplicate(tmp_path: Path) -> None:
    sink = MemorySink("flaky", fail_after_batches=2)
    source = FakeSource(transactions(5, 3))
    assert EmbeddedDaemon(lambda: [sink], lambda: source, tmp_path, options()).run() == 0
    assert sink.keys == list(range(15))
    assert len(source.starts) == 2


# -- writer fencing --------------------------------------------------------------------------------


class TakenOverSource(FakeSource):
    """Another daemon claims the sinks once ``after`` records have been read."""

    def __init__(self, txs: list[list[SourceRecord]], sinks: list[MemorySink], after: int) -> None:
        super().__init__(txs)
        self.sinks, self.after = sinks, after

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        for index, record in enumerate(super().records(start)):
            if index == self.after:
                for sink in self.sinks:
                    sink.epoch += 1
                    sink.writer = "pid 4242 on otherhost, started 2026-11-30T04:00:00+00:00"
            yield record


def test_a_newer_writer_fences_the_daemon_which_exits_2_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = MemorySink("a")
    source = TakenOverSource(transactions(6, 3), [sink], after=8)
    daemon = EmbeddedDaemon(lambda: [sink], lambda: source, tmp_path, options())
    assert daemon.run() == 2
    assert len(sink.keys) < 18  # nothing after the take-over landed
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, errors  # said once, clearly
    assert "pid 4242 on otherhost" in errors[0] and "must not run at once" in errors[0]


def test_each_attempt_claims_before_reading_positions(tmp_path: Path) -> None:
    sink = MemorySink("flaky", fail_after_batches=2)
    source = FakeSource(transactions(5, 3))
    assert EmbeddedDaemon(lambda: [sink], lambda: source, tmp_path, options()).run() == 0
    assert sink.epoch == 2 and sink.keys == list(range(15))


class FailingSource(FakeSource):
    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        yield from super().records(start)
        raise SourceProtocolError("server error 4052: a replica with the same server_id connected")


def test_a_source_failure_after_a_take_over_is_reported_as_the_take_over(tmp_path: Path) -> None:
    """A second `cdc run` on the same server_id makes the source drop the first one's connection:
    the first must still say who took over, not only that the source complained."""
    sink = MemorySink("a")
    source = FailingSource(transactions(2, 2))

    class Daemon(EmbeddedDaemon):
        def _probe_fence(self, sinks: Sequence[Sink]) -> None:
            sink.epoch += 1  # the newer daemon claimed just before it connected to the source
            sink.writer = "pid 4242 on otherhost"
            super()._probe_fence(sinks)

    daemon = Daemon(lambda: [sink], lambda: source, tmp_path, options())
    assert daemon.run() == 2
    assert daemon._supervisor.last_error is not None and "pid 4242" in daemon._supervisor.last_error


# -- idle checkpoint -------------------------------------------------------------------------------


def idle_after(txs: list[list[SourceRecord]], gap: int) -> SourceProgress:
    """Progress ``gap`` bytes past the last transaction (other tables' writes in between)."""
    last = [r for r in txs[-1] if isinstance(r, ChangeEvent)][-1].position
    end = Position(Gtid(0, 1, last.gtid.seq + 50), last.file, last.offset + gap, 0)
    return SourceProgress(RestartPoint(end, 0), 1_700_000_000_000)


class IdleSource(FakeSource):
    """Captured transactions, then a stretch of other tables' writes ending at ``progress``."""

    def __init__(self, txs: list[list[SourceRecord]], progress: SourceProgress | None) -> None:
        super().__init__(txs)
        self.progress = progress

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        self.starts.append(start)
        first = start.transaction.at_row(start.skip_rows)
        for record in self.flat:
            if isinstance(record, ChangeEvent) and record.position < first:
                continue
            if isinstance(record, TransactionEnd) and record.last_position < first:
                continue
            yield record
        if self.progress is not None and order(self.progress.restart) > order(start):
            yield self.progress


def run_idle(tmp_path: Path, sinks: list[MemorySink], source: IdleSource, **kw: object) -> EmbeddedDaemon:
    opts = EmbeddedOptions(max_events=3, max_ms=1, backoff_initial_s=0.01, tables=("db.*",), **kw)  # type: ignore[arg-type]
    daemon = EmbeddedDaemon(lambda: sinks, lambda: source, tmp_path, opts)
    assert daemon.run() == 0
    return daemon


def test_idle_stretch_moves_the_resume_point_without_writing_the_sinks(tmp_path: Path) -> None:
    txs = transactions(3, 2)
    progress = idle_after(txs, 1_000_000)
    sink = MemorySink("a")
    run_idle(tmp_path, [sink], IdleSource(txs, progress))
    applied_before = sink.position
    again = IdleSource(txs, None)
    daemon = run_idle(tmp_path, [sink], again)
    assert again.starts == [progress.restart] and daemon.resumed_from == progress.restart
    assert sink.position == applied_before and sink.keys == list(range(6))


def test_a_sink_behind_the_stretch_is_not_moved(tmp_path: Path) -> None:
    txs = transactions(4, 2)
    progress = idle_after(txs, 5000)
    ahead = MemorySink("ahead")
    run_idle(tmp_path, [ahead], IdleSource(txs, progress))
    behind = MemorySink("behind")
    flat = [r for tx in txs for r in tx if isinstance(r, ChangeEvent)]
    behind.keys, behind.position = [0, 1, 2], flat[2].position  # restored from an old backup, say
    source = IdleSource(txs, None)
    run_idle(tmp_path, [ahead, behind], source)
    assert source.starts == [RestartPoint.after(flat[2].position)]
    assert behind.keys == list(range(8)) and ahead.keys == list(range(8))


def test_a_sink_added_later_is_moved_only_over_what_holds_no_change(tmp_path: Path) -> None:
    txs = transactions(2, 2)
    old = MemorySink("old")
    run_idle(tmp_path, [old], IdleSource(txs, idle_after(txs, 5000)))
    new = MemorySink("new")  # the pipeline started before these changes: it must get them all
    source = IdleSource(txs, None)
    run_idle(tmp_path, [old, new], source)
    assert source.starts == [BOUNDARY] and new.keys == list(range(4))


def test_an_idle_pipeline_restarted_keeps_its_stretch(tmp_path: Path) -> None:
    txs = transactions(2, 2)
    first, second = idle_after(txs, 5000), idle_after(txs, 9000)
    sink = MemorySink("a")
    run_idle(tmp_path, [sink], IdleSource(txs, first))
    run_idle(tmp_path, [sink], IdleSource(txs, second))  # read from `first` on: nothing handed
    source = IdleSource(txs, None)
    run_idle(tmp_path, [sink], source)
    assert source.starts == [second.restart]


def test_a_stretch_seen_under_other_tables_is_not_used(tmp_path: Path) -> None:
    txs = transactions(2, 2)
    sink = MemorySink("a")
    run_idle(tmp_path, [sink], IdleSource(txs, idle_after(txs, 5000)))
    source = IdleSource(txs, None)
    run_idle(tmp_path, [sink], source, exclude_tables=("db.secret",))
    assert source.starts == [RestartPoint.after(sink.position)]  # type: ignore[arg-type]


def test_no_stretch_when_a_change_came_after_the_progress(tmp_path: Path) -> None:
    txs = transactions(3, 2)
    early = idle_after(txs[:1], 10)  # inside the stream, before the last two transactions

    class Source(IdleSource):
        def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
            self.starts.append(start)
            yield from txs[0]
            yield early
            yield from txs[1]
            yield from txs[2]

    sink = MemorySink("a")
    run_idle(tmp_path, [sink], Source(txs, None))
    assert not (tmp_path / "embedded-progress.json").exists()


def test_after_a_failed_attempt_the_stretch_starts_where_the_sinks_stand(tmp_path: Path) -> None:
    txs = transactions(2, 2)
    sink = MemorySink("a", fail_after_batches=0)  # the first apply fails; retried, then fine
    source = IdleSource(txs, idle_after(txs, 5000))
    daemon = EmbeddedDaemon(lambda: [sink], lambda: source, tmp_path, options())
    assert daemon.run() == 0
    stretch = ProgressFile(tmp_path).read((), (), UNNAMED)
    assert stretch is not None and stretch.start == RestartPoint.after(sink.position)  # type: ignore[arg-type]


def test_a_daemon_taken_over_during_a_transient_failure_stops_instead_of_claiming_back(
    tmp_path: Path,
) -> None:
    steady, flaky = MemorySink("steady"), MemorySink("flaky", fail_after_batches=1)
    original = flaky.apply

    def apply_then_taken_over(batch: SinkBatch) -> None:
        try:
            original(batch)
        except SourceUnavailable:
            for sink in (steady, flaky):  # a newer daemon started while this one's sink was down
                sink.epoch += 1
                sink.writer = "pid 4242 on otherhost"
            raise

    flaky.apply = apply_then_taken_over  # type: ignore[method-assign]
    daemon = EmbeddedDaemon(
        lambda: [steady, flaky], lambda: FakeSource(transactions(4, 3)), tmp_path, options()
    )
    assert daemon.run() == 2
    assert daemon._supervisor.last_error is not None and "pid 4242" in daemon._supervisor.last_error
    assert steady.epoch == 2  # not claimed back


# -- a state_dir shared by two pipelines -----------------------------------------------------------

A = PipelineIdentity("wiki-a", "db-a:3306", 1)
B = PipelineIdentity("wiki-b", "db-b:3306", 1)  # another server, with the same (default) server_id


def run_as(
    tmp_path: Path, identity: PipelineIdentity, sinks: list[MemorySink], source: IdleSource
) -> EmbeddedDaemon:
    opts = EmbeddedOptions(max_events=3, max_ms=1, backoff_initial_s=0.01, pipeline=identity.pipeline)
    return EmbeddedDaemon(lambda: sinks, lambda: source, tmp_path, opts, identify=lambda: identity)


def test_another_pipelines_idle_stretch_does_not_move_a_sink(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """B's sink stands, on its own server, inside the stretch A recorded: B must not skip to its end."""
    txs = transactions(3, 2)
    assert run_as(tmp_path, A, [MemorySink("a")], IdleSource(txs, idle_after(txs, 1_000_000))).run() == 0
    (tmp_path / "embedded-start.json").unlink()  # only the idle checkpoint is shared here
    b = MemorySink("b")
    flat = [r for tx in txs for r in tx if isinstance(r, ChangeEvent)]
    b.keys, b.position = list(range(6)), flat[-1].position
    source = IdleSource(txs, None)
    assert run_as(tmp_path, B, [b], source).run() == 0
    assert source.starts == [RestartPoint.after(flat[-1].position)]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("embedded-progress.json" in m and "wiki-a" in m for m in warned), warned


def test_another_pipelines_start_file_stops_the_daemon(tmp_path: Path) -> None:
    txs = transactions(2, 2)
    assert run_as(tmp_path, A, [MemorySink("a")], IdleSource(txs, None)).run() == 0
    b = MemorySink("b")  # fresh: would start at A's first position, on another server
    daemon = run_as(tmp_path, B, [b], IdleSource(txs, None))
    assert daemon.run() == 2 and b.keys == []
    error = daemon._supervisor.last_error or ""
    assert "wiki-a" in error and "own state_dir" in error, error


def test_a_start_file_written_before_identities_is_used_and_stamped(tmp_path: Path) -> None:
    (tmp_path / "embedded-start.json").write_text(json.dumps({"restart_point": BOUNDARY.to_string()}))
    sink = MemorySink("a")
    source = IdleSource(transactions(2, 2), None)
    assert run_as(tmp_path, A, [sink], source).run() == 0
    assert source.starts == [BOUNDARY] and sink.keys == list(range(4))
    assert StartFile(tmp_path).read(A) == BOUNDARY
    with pytest.raises(ConfigError):
        StartFile(tmp_path).read(B)


def test_a_progress_file_without_identity_is_ignored(tmp_path: Path) -> None:
    txs = transactions(2, 2)
    sink = MemorySink("a")
    assert run_as(tmp_path, A, [sink], IdleSource(txs, None)).run() == 0
    progress = idle_after(txs, 5000)
    legacy = {
        "start": RestartPoint.after(sink.position).to_string(),  # type: ignore[arg-type]
        "end": progress.restart.to_string(),
        "end_source_ts_ms": 1,
        "tables": [],
        "exclude_tables": [],
    }
    (tmp_path / "embedded-progress.json").write_text(json.dumps(legacy))
    source = IdleSource(txs, None)
    assert run_as(tmp_path, A, [sink], source).run() == 0
    assert source.starts == [RestartPoint.after(sink.position)]  # type: ignore[arg-type]
