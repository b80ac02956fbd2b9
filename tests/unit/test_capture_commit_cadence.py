"""When changes trickle in faster than the capture loop can call the source quiet (more input is always
waiting, say a transaction every few ms), the loop still commits once it has written everything handed
over and the last commit is COMMIT_GAP_S old: no change waits for ``flush_max_ms`` in an open Kafka
transaction only because the next one had already arrived (the capture half of the end-to-end p99
was ~110 ms at 10k changes/s with the 200 ms default)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from cdc.core.events import SourceRecord, TransactionEnd
from cdc.core.positions import RestartPoint
from cdc.daemon.capture import CaptureDaemon, CaptureOptions
from tests.unit.test_daemon_capture import Broker, FakeSource, FakeWriter, keys, transactions


class TrickleSource(FakeSource):
    """A transaction every ``every_s``. Asked at a transaction's end by the reading thread, nothing
    more is waiting (so each transaction is handed over at once); asked by the writer's loop, the
    next transaction's first bytes have already arrived (so the source is never quiet for it)."""

    def __init__(self, count: int, every_s: float) -> None:
        super().__init__(transactions(count, 2))
        self.every_s = every_s
        self.ended_at: list[float] = []
        self.reading: threading.Thread | None = None

    def input_ready(self) -> bool:
        return threading.current_thread() is not self.reading

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        self.reading = threading.current_thread()
        for record in super().records(start):
            if record.__class__ is TransactionEnd:
                self.ended_at.append(time.monotonic())
            yield record
            if record.__class__ is TransactionEnd:
                time.sleep(self.every_s)


class TimedBroker(Broker):
    """Notes when each commit made which keys visible."""

    def __init__(self) -> None:
        super().__init__()
        self.visible_at: dict[int, float] = {}


class TimedWriter(FakeWriter):
    broker: TimedBroker
    snapshot_state: str | None = None

    def commit(self, checkpoint: RestartPoint) -> None:
        super().commit(checkpoint)
        now = time.monotonic()
        for key in keys(self.broker.committed):
            self.broker.visible_at.setdefault(key, now)


def test_a_trickle_is_committed_without_waiting_for_flush_max_ms() -> None:
    broker = TimedBroker()
    source = TrickleSource(count=60, every_s=0.01)
    options = CaptureOptions(flush_max_events=100_000, flush_max_ms=2_000, until_caught_up=True)
    daemon = CaptureDaemon(lambda: TimedWriter(broker), lambda: source, options)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    thread.join(20)
    assert keys(broker.committed) == list(range(120))
    # the transaction ending at ended_at[t] (keys 2t, 2t+1) became visible soon after, not at the
    # 2 s deadline nor at the end of the stream
    waits = sorted(broker.visible_at[2 * t + 1] - ended for t, ended in enumerate(source.ended_at))
    assert waits[len(waits) // 2] < 0.1, waits
    assert daemon.stats.commits >= 5
