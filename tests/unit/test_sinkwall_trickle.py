"""While the sink thread applies a batch, what trickles into the consumer's queue is taken in one
few polls (at most every 20 ms), not in a poll every millisecond or two: each poll's messages become a
chunk that is decoded and checked on its own, and at 10k changes/s the 2 ms polls made chunks of ~20
changes whose per-chunk work doubled the sink's latency."""

from __future__ import annotations

import threading
import time

from cdc.daemon.sink_runner import SinkRunner, SinkRunnerOptions, _Consumption
from cdc.stream.kafka_chunks import ChangeChunk, ChunkRecords
from sinks.contract import SinkBatch
from tests.unit.test_daemon_sink_runner import TOPIC, FakeSink, change


class SlowSink(FakeSink):
    def __init__(self) -> None:
        super().__init__("s", None)
        self.chunks: list[int] = []

    def apply(self, batch: SinkBatch) -> None:
        records = batch.records
        assert isinstance(records, ChunkRecords)
        self.chunks.append(len(records.chunks))
        time.sleep(0.05)


class TrickleReader:
    """One change a millisecond into a queue; a poll takes what is queued as one chunk (or waits)."""

    def __init__(self) -> None:
        self.assigned = {f"{TOPIC}:0"}
        self.at_end: set[str] = set()
        self.assignment_changed = 0.0
        self.backlog = False
        self.started = time.monotonic()
        self.taken = 0

    def poll_chunks(self, max_messages: int, timeout_s: float) -> list[ChangeChunk]:
        deadline = time.monotonic() + timeout_s
        while True:
            arrived = min(int((time.monotonic() - self.started) * 1000), 400)
            if arrived > self.taken or time.monotonic() >= deadline:
                break
            time.sleep(0.0005)
        n = min(arrived - self.taken, max_messages)
        if n <= 0:
            return []
        items = [change(self.taken + i + 1, 0, self.taken + i) for i in range(n)]
        self.taken += n
        self.backlog = n >= max_messages
        one = items[0]
        for item in items[1:]:
            one.values.extend(item.values)
            one.next_offsets.extend(item.next_offsets)
        return [one]


def test_what_trickles_in_during_an_apply_is_one_chunk_of_the_next_batch() -> None:
    reader, sink = TrickleReader(), SlowSink()
    runner = SinkRunner(lambda: [], lambda offsets: None, SinkRunnerOptions(max_ms=60_000))  # type: ignore[arg-type,return-value]
    consumption = _Consumption(runner, [sink])  # type: ignore[list-item]
    consumption.reader = reader  # type: ignore[assignment]
    worker = threading.Thread(target=consumption.run)
    worker.start()
    time.sleep(0.45)
    runner._stop.set()
    worker.join(10)
    assert len(sink.chunks) >= 4
    # before: ~50 chunks a batch (a poll every millisecond or two while the 50 ms apply ran); now
    # a poll at most every 20 ms
    assert max(sink.chunks[1:]) <= 8, sink.chunks
