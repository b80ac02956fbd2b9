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

import pytest

from cdc.core.events import SourceRecord, TransactionEnd
from cdc.core.positions import RestartPoint
from cdc.daemon import capture
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


class SlowFirstCommitWriter(ClockedWriter):
    """The first data commit takes ``slow_s`` (a starved broker); the others are quick."""

    def __init__(self, broker: Broker, commits: list[tuple[float, float]], slow_s: float) -> None:
        super().__init__(broker, commits)
        self.slow_s = slow_s
        self.data_commits = 0

    def commit(self, checkpoint: RestartPoint) -> None:
        if self.pending:
            self.data_commits += 1
            if self.data_commits == 1:
                time.sleep(self.slow_s)
        super().commit(checkpoint)


class DuringCommitSource(FakeSource):
    """One transaction, a second while the first one's commit runs, then quiet."""

    def __init__(self, arrive_after_s: float, quiet_s: float) -> None:
        super().__init__(transactions(2, 2))
        self.arrive_after_s, self.quiet_s = arrive_after_s, quiet_s

    def input_ready(self) -> bool:
        return False

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        ends = 0
        for record in super().records(start):
            yield record
            if record.__class__ is TransactionEnd:
                ends += 1
                time.sleep(self.arrive_after_s if ends == 1 else self.quiet_s)


def test_a_commit_slower_than_the_gap_is_its_own_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The change written while a slow commit ran is committed as soon as the source is quiet after
    it, not a gap later: it has waited for the whole slow commit already (the gap made the slowest
    changes of an end-to-end run, those written during a slow commit, wait ~12 ms more)."""
    gap = 0.5  # long, so that a loaded machine cannot blur the two outcomes
    monkeypatch.setattr(capture, "QUIET_GAP_S", gap)
    monkeypatch.setattr(capture, "COMMIT_GAP_S", gap)  # the timer waits for the sooner of the two
    broker = Broker()
    commits: list[tuple[float, float]] = []
    source = DuringCommitSource(arrive_after_s=0.1, quiet_s=2 * gap + 0.5)
    options = CaptureOptions(flush_max_events=100_000, flush_max_ms=10_000, until_caught_up=True)
    daemon = CaptureDaemon(lambda: SlowFirstCommitWriter(broker, commits, 2 * gap), lambda: source, options)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    assert keys(broker.committed) == list(range(4))
    # the starting checkpoint, the first transaction (slow), the second
    assert len(commits) >= 3, commits
    (_, slow_returned), (next_called, _) = commits[1], commits[2]
    assert next_called - slow_returned < gap / 2, (next_called - slow_returned, commits)
