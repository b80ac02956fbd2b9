"""`cdc sink` applies what it consumed as soon as nothing more is waiting in the consumer's queue,
instead of holding a small batch until ``max_ms`` runs out (at a low rate that wait was the latency)."""

from __future__ import annotations

import threading
import time

from cdc.daemon.sink_runner import SinkRunner, SinkRunnerOptions, _Consumption
from cdc.stream.kafka_chunks import ChangeChunk
from sinks.contract import SinkBatch
from tests.unit.test_daemon_sink_runner import TOPIC, FakeSink, change


class RecordingSink(FakeSink):
    def __init__(self) -> None:
        super().__init__("s", None)
        self.applied_at: list[float] = []

    def apply(self, batch: SinkBatch) -> None:
        self.applied_at.append(time.monotonic())


class QuietReader:
    """One poll hands over two changes, with nothing more queued; later polls find nothing."""

    def __init__(self, backlog: bool) -> None:
        self.assigned = {f"{TOPIC}:0"}
        self.at_end: set[str] = set()
        self.assignment_changed = 0.0
        self.backlog = backlog
        self.handed_at: float | None = None

    def poll_chunks(self, max_messages: int, timeout_s: float) -> list[ChangeChunk]:
        if self.handed_at is None:
            self.handed_at = time.monotonic()
            return [change(1, 0, 0), change(2, 0, 1)]
        time.sleep(min(timeout_s, 0.02))
        return []


def run_for(reader: QuietReader, sink: RecordingSink, seconds: float) -> None:
    runner = SinkRunner(lambda: [], lambda offsets: None, SinkRunnerOptions(max_ms=60_000))  # type: ignore[arg-type,return-value]
    consumption = _Consumption(runner, [sink])  # type: ignore[list-item]
    consumption.reader = reader  # type: ignore[assignment]
    worker = threading.Thread(target=consumption.run)
    worker.start()
    time.sleep(seconds)
    runner._stop.set()
    worker.join(10)


def test_a_drained_queue_is_applied_at_once() -> None:
    reader, sink = QuietReader(backlog=False), RecordingSink()
    run_for(reader, sink, 1.0)
    assert reader.handed_at is not None and sink.applied_at
    # before: held until max_ms (here 60 s) ran out, or the stop at 1 s
    assert sink.applied_at[0] - reader.handed_at < 0.5


def test_with_more_waiting_the_batch_keeps_filling() -> None:
    reader, sink = QuietReader(backlog=True), RecordingSink()
    run_for(reader, sink, 0.6)
    assert reader.handed_at is not None and sink.applied_at
    assert sink.applied_at[0] - reader.handed_at >= 0.5  # applied at the stop, not before
