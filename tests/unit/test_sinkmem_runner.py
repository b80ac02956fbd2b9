"""`cdc sink` holds at most ``batch.max_events`` changes per batch: a poll into a pending batch asks
the consumer only for the room left (it asked for ``max_events`` again, and batches of 17k changes
at the default 10k raised the peak RSS)."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from cdc.daemon.memory_settings import use_lean_allocators
from cdc.daemon.sink_runner import SinkRunner, SinkRunnerOptions, _Consumption
from cdc.stream.kafka_chunks import ChangeChunk
from sinks.contract import SinkBatch
from tests.unit.test_daemon_sink_runner import TOPIC, FakeSink, change


class SizedSink(FakeSink):
    def __init__(self) -> None:
        super().__init__("s", None)
        self.sizes: list[int] = []

    def apply(self, batch: SinkBatch) -> None:
        self.sizes.append(sum(1 for _ in batch.records))


class BusyReader:
    """40 changes, more always waiting until then: each poll hands over up to three one-change chunks."""

    def __init__(self) -> None:
        self.assigned = {f"{TOPIC}:0"}
        self.at_end: set[str] = set()
        self.assignment_changed = 0.0
        self.backlog = True
        self.offset = 0

    def poll_chunks(self, max_messages: int, timeout_s: float) -> list[ChangeChunk]:
        if self.offset >= 40:
            self.backlog = False
            time.sleep(min(timeout_s, 0.01))
            return []
        out = []
        for _ in range(min(max_messages, 3, 40 - self.offset)):
            self.offset += 1
            out.append(change(self.offset, 0, self.offset - 1))
        return out


def test_a_batch_never_holds_more_than_max_events() -> None:
    reader, sink = BusyReader(), SizedSink()
    runner = SinkRunner(lambda: [], lambda offsets: None, SinkRunnerOptions(max_events=5, max_ms=60_000))  # type: ignore[arg-type,return-value]
    consumption = _Consumption(runner, [sink])  # type: ignore[list-item]
    consumption.reader = reader  # type: ignore[assignment]
    worker = threading.Thread(target=consumption.run)
    worker.start()
    time.sleep(0.3)
    runner._stop.set()
    worker.join(10)
    # before: 3 + 3 = 6 changes a batch. Since the sink thread applies one batch while the next is
    # filled (sinkwall), each holds at most half of max_events: two are held at once
    assert sink.sizes == [2] * 20


def test_arrow_allocates_through_malloc_unless_the_operator_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    """mimalloc kept what a batch's columns freed (PostgreSQL peak 245 MiB against 203-208)."""
    before = pa.default_memory_pool()
    try:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
        pa.set_memory_pool(pa.mimalloc_memory_pool())
        use_lean_allocators()
        assert pa.default_memory_pool().backend_name == "mimalloc"
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        use_lean_allocators()
        assert pa.default_memory_pool().backend_name == "system"
    finally:
        pa.set_memory_pool(before)
