"""`cdc sink --until-caught-up` ends as soon as its last batch is applied: once every assigned
partition's end is marked, the loop waits for the sink thread, not out a poll's timeout (it polled
for up to 0.2 s while the last batch was applied, and ended only when that poll returned)."""

from __future__ import annotations

import time

from cdc.daemon.sink_runner import SinkRunner, SinkRunnerOptions, _Consumption
from cdc.stream.kafka_chunks import ChangeChunk
from sinks.contract import SinkBatch
from tests.unit.test_daemon_sink_runner import TOPIC, FakeSink, change


class SlowSink(FakeSink):
    def __init__(self) -> None:
        super().__init__("s", None)
        self.done_at: list[float] = []

    def apply(self, batch: SinkBatch) -> None:
        time.sleep(0.05)
        self.done_at.append(time.monotonic())


class EndingReader:
    """One change, then the partition's end mark; a poll that finds nothing takes its whole
    timeout, as ``consume(1, timeout)`` does."""

    def __init__(self) -> None:
        self.assigned = {f"{TOPIC}:0"}
        self.at_end: set[str] = set()
        self.assignment_changed = 0.0
        self.backlog = False
        self.polls = 0

    def poll_chunks(self, max_messages: int, timeout_s: float) -> list[ChangeChunk]:
        self.polls += 1
        if self.polls == 1:
            return [change(1, 0, 0)]
        if not self.at_end:
            self.at_end |= self.assigned  # the mark comes in a poll of its own, at once
            return []
        time.sleep(timeout_s)
        return []

    def table_partitions(self) -> set[str]:
        return set(self.assigned)


def test_until_caught_up_ends_when_the_last_batch_is_applied() -> None:
    runner = SinkRunner(lambda: [], lambda offsets: None, SinkRunnerOptions(until_caught_up=True))  # type: ignore[arg-type,return-value]
    sink = SlowSink()
    consumption = _Consumption(runner, [sink])  # type: ignore[list-item]
    consumption.reader = EndingReader()  # type: ignore[assignment]
    consumption.run()
    ended = time.monotonic()
    assert len(sink.done_at) == 1
    # before: 0.15 s later (the 0.2 s poll begun as the 50 ms apply started)
    assert ended - sink.done_at[0] < 0.08
