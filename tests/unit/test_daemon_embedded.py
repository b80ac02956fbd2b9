"""Embedded mode's rules on an in-memory source and sinks (real sinks have their own suite):
resume from the lowest applied position over all sinks; a fresh sink starts at the first start's
position, which is written before anything is read; every change reaches every sink exactly once."""

from __future__ import annotations

from pathlib import Path

from cdc.core.errors import SourceUnavailable
from cdc.core.events import ChangeEvent, SchemaChange
from cdc.core.positions import Position
from cdc.daemon.embedded import EmbeddedDaemon, EmbeddedOptions, StartFile
from sinks.contract import AppliedState, SinkBatch
from tests.unit.test_daemon_capture import BOUNDARY, FakeSource, transactions


class MemorySink:
    def __init__(self, name: str, fail_after_batches: int | None = None) -> None:
        self.name = name
        self.keys: list[int] = []
        self.position: Position | None = None
        self.fail_after = fail_after_batches

    def open(self) -> None:
        pass

    def applied(self) -> AppliedState | None:
        return None if self.position is None else AppliedState(self.position)

    def apply(self, batch: SinkBatch) -> None:
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


def options() -> EmbeddedOptions:
    return EmbeddedOptions(max_events=3, max_ms=1, backoff_initial_s=0.01)


def test_first_start_writes_the_start_position_and_applies_everything(tmp_path: Path) -> None:
    sink = MemorySink("a")
    source = FakeSource(transactions(4, 5))
    assert EmbeddedDaemon(lambda: [sink], lambda: source, tmp_path, options()).run() == 0
    assert sink.keys == list(range(20))
    assert StartFile(tmp_path).read() == BOUNDARY


def test_resume_from_the_lowest_sink_and_each_skips_what_it_holds(tmp_path: Path) -> None:
    txs = transactions(6, 4)
    ahead, behind = MemorySink("ahead"), MemorySink("behind")
    StartFile(tmp_path).write(BOUNDARY)
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
