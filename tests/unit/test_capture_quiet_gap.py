"""A source that goes quiet after every small transaction (10k changes/s written as 100 transactions a
second) is not committed after every one: a commit made because the source is quiet (or by the
timer while waiting for input) comes at least QUIET_GAP_S after the previous commit returned. Each
Kafka commit costs the broker ~2.5 ms of CPU whatever its size (benchmarks/results: e2etail), and at
~150 commits a second that CPU, on the machine that also runs the database, made the end-to-end tail
under load; the changes that come in the meantime go into the open transaction."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

from cdc.core.events import SourceRecord, TransactionEnd
from cdc.core.positions import RestartPoint
from cdc.daemon.capture import QUIET_GAP_S, CaptureDaemon, CaptureOptions
from tests.unit.test_daemon_capture import Broker, FakeSource, FakeWriter, keys, transactions


class QuietSource(FakeSource):
    """A transaction every ``every_s``, and nothing else waiting in between: quiet at every end."""

    def __init__(self, count: int, every_s: float) -> None:
        super().__init__(transactions(count, 2))
        self.every_s = every_s

    def input_ready(self) -> bool:
        return False

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        for record in super().records(start):
            yield record
            if record.__class__ is TransactionEnd:
                time.sleep(self.every_s)


class ClockedWriter(FakeWriter):
    """Notes when each commit was called and when it returned."""

    snapshot_state: str | None = None

    def __init__(self, broker: Broker, commits: list[tuple[float, float]]) -> None:
        super().__init__(broker)
        self.commits = commits

    def commit(self, checkpoint: RestartPoint) -> None:
        called = time.monotonic()
        super().commit(checkpoint)
        self.commits.append((called, time.monotonic()))


def test_quiet_commits_keep_a_gap_and_lose_nothing() -> None:
    broker = Broker()
    commits: list[tuple[float, float]] = []
    source = QuietSource(count=40, every_s=0.002)
    options = CaptureOptions(flush_max_events=100_000, flush_max_ms=2_000, until_caught_up=True)
    daemon = CaptureDaemon(lambda: ClockedWriter(broker, commits), lambda: source, options)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    assert keys(broker.committed) == list(range(80))
    # the first commit is the starting checkpoint's, the last the end of the stream's (caught up):
    # every commit between was made because the source was quiet or by the timer
    between = commits[1:-1]
    assert between, commits
    gaps = [called - returned for (_, returned), (called, _) in itertools.pairwise(commits[1:-1])]
    assert all(gap >= QUIET_GAP_S * 0.999 for gap in gaps), (QUIET_GAP_S, gaps)
    # and fewer commits than transactions (each was its own before)
    assert len(between) < 40
