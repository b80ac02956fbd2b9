"""Embedded mode applies each batch on its own thread while the next is gathered (embpg): the sinks
still see one call at a time, the batches in order, a flush only once every batch handed is
applied; a failed apply stops the run and no later batch reaches a sink."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from cdc.core.events import ChangeEvent
from cdc.daemon.embedded import EmbeddedDaemon, EmbeddedOptions
from sinks.contract import SinkBatch
from tests.unit.test_daemon_capture import FakeSource, transactions
from tests.unit.test_daemon_embedded import MemorySink


class WatchedSink(MemorySink):
    """Notes every call's thread, fails when two calls overlap, and applies slowly."""

    def __init__(self, name: str, fail_at_batch: int | None = None) -> None:
        super().__init__(name)
        self.calls: list[tuple[str, str]] = []  # (call, thread name)
        self.batches: list[list[int]] = []
        self.overlaps = 0
        self._busy = threading.Lock()
        self._fail_at = fail_at_batch

    def _enter(self, call: str) -> None:
        if not self._busy.acquire(blocking=False):
            self.overlaps += 1
            self._busy.acquire()
        self.calls.append((call, threading.current_thread().name))

    def apply(self, batch: SinkBatch) -> None:
        self._enter("apply")
        try:
            if self._fail_at is not None and len(self.batches) == self._fail_at:
                raise RuntimeError("the sink refused the batch")
            time.sleep(0.01)  # the daemon gathers the next batch meanwhile
            self.batches.append(
                [int(e.key[0]) for e in batch.records if isinstance(e, ChangeEvent) and e.key]
            )  # type: ignore[arg-type]
            super().apply(batch)
        finally:
            self._busy.release()

    def flush(self) -> None:
        self._enter("flush")
        self._busy.release()


def _options() -> EmbeddedOptions:
    return EmbeddedOptions(max_events=3, max_ms=1, backoff_initial_s=0.01)


def test_batches_are_applied_off_the_daemons_thread_one_call_at_a_time_in_order(tmp_path: Path) -> None:
    sink = WatchedSink("a")
    daemon = EmbeddedDaemon(lambda: [sink], lambda: FakeSource(transactions(8, 4)), tmp_path, _options())
    assert daemon.run() == 0
    assert sink.overlaps == 0
    assert sink.keys == list(range(32))
    assert [k for batch in sink.batches for k in batch] == list(range(32))
    applies = {thread for call, thread in sink.calls if call == "apply"}
    assert applies == {"embedded-apply"}  # the daemon's own thread gathers the next batch meanwhile
    assert sink.calls[-1][0] == "flush"  # the last flush comes after every apply ended


def test_a_failed_apply_stops_the_run_and_nothing_after_it_is_applied(tmp_path: Path) -> None:
    sink = WatchedSink("a", fail_at_batch=2)
    daemon = EmbeddedDaemon(lambda: [sink], lambda: FakeSource(transactions(8, 4)), tmp_path, _options())
    assert daemon.run() != 0
    assert sink.overlaps == 0
    assert len(sink.batches) == 2  # the two batches before the failed one, none after
    assert sink.keys == [k for batch in sink.batches for k in batch]
