"""The capture loop commits as soon as the source has nothing more waiting (low latency on a slow
stream), instead of holding the Kafka transaction open until ``flush_max_ms``; while more input is
waiting it keeps batching source transactions into one Kafka transaction (throughput)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from cdc.core.events import SourceRecord
from cdc.core.positions import RestartPoint
from cdc.daemon.capture import CaptureDaemon, CaptureOptions
from tests.unit.test_daemon_capture import Broker, FakeSource, FakeWriter, keys, transactions


class QuietSource(FakeSource):
    """Says whether more input is waiting; after the first transaction it goes quiet until released."""

    def __init__(self, ready: bool) -> None:
        super().__init__(transactions(2, 3))
        self.ready = ready
        self.release = threading.Event()

    def input_ready(self) -> bool:
        return self.ready

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        for i, record in enumerate(super().records(start)):
            if i == 4:  # the second transaction comes only when released
                self.release.wait(10)
            yield record


def _committed_while_quiet(ready: bool) -> tuple[list[int], Broker]:
    broker = Broker()
    source = QuietSource(ready)
    options = CaptureOptions(flush_max_events=1_000, flush_max_ms=60_000)
    daemon = CaptureDaemon(lambda: FakeWriter(broker), lambda: source, options)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    time.sleep(1.0)  # the first transaction is read; the source is quiet
    seen = keys(broker.committed)
    source.release.set()
    thread.join(10)
    assert keys(broker.committed) == list(range(6))
    return seen, broker


def test_a_quiet_source_gets_its_transaction_committed_at_once() -> None:
    seen, _ = _committed_while_quiet(ready=False)
    assert seen == [0, 1, 2]  # not held for flush_max_ms (60 s here)


def test_while_input_is_waiting_transactions_are_batched() -> None:
    seen, _ = _committed_while_quiet(ready=True)
    assert seen == []  # the source says more is coming: the Kafka transaction stays open
