"""Capture's Kafka transaction cadence while it is behind, and its per-commit timing lines.

- Behind (more input always waiting), a Kafka transaction is committed by time (``flush_max_ms``),
  not every 10,000 events: on 1000-row statements that made a commit every ~65 ms, each a wait for
  the broker with the reading thread stalled behind a full queue (the default is now 100,000).
- HEADWATER_CAPTURE_TIMING=1 (logger ``cdc.run.timing``) writes one line per commit, in the form
  ``benchmarks.e2e`` parses to split the capture half of the latency.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from benchmarks.e2e_hops import capture_commits
from cdc.config.models import KafkaStreamConfig
from cdc.core.events import SourceRecord
from cdc.core.handover import Chunk, EndOfStream
from cdc.daemon.capture import CaptureDaemon, CaptureOptions, timing_log
from tests.unit.test_daemon_capture import BOUNDARY, Broker, FakeSource, FakeWriter, keys, transactions


class Writer(FakeWriter):
    snapshot_state: str | None = None


class BacklogPump:
    """Hands over prepared chunks at once, then the end of the stream: a reader far ahead."""

    def __init__(self, chunks: list[list[SourceRecord]]) -> None:
        self.chunks: list[Chunk] = [*chunks, EndOfStream()]

    def start(self) -> None:
        pass

    def get(self, timeout: float) -> Chunk | None:
        return self.chunks.pop(0) if self.chunks else None

    def stop(self) -> None:
        pass


def _behind(options: CaptureOptions, rows: int = 30_000) -> tuple[Broker, int]:
    """``rows`` in 1000-row transactions through the capture loop, more input always waiting."""
    broker = Broker()
    writer = Writer(broker)
    daemon = CaptureDaemon(lambda: writer, lambda: FakeSource([]), options)
    pump = BacklogPump(transactions(rows // 1000, 1000))
    daemon._pump_into(pump, writer, BOUNDARY, lambda: False, lambda: False)
    return broker, daemon.stats.commits


def test_a_backlog_is_committed_by_time_not_every_ten_thousand_events() -> None:
    assert KafkaStreamConfig(bootstrap_servers="x:9092").flush_max_events == CaptureOptions().flush_max_events
    broker, commits = _behind(CaptureOptions(until_caught_up=True))
    assert keys(broker.committed) == list(range(30_000))
    assert commits == 1  # 30,000 events handed over within flush_max_ms: one Kafka transaction
    # a lower limit still holds when set
    broker, commits = _behind(CaptureOptions(until_caught_up=True, flush_max_events=10_000))
    assert keys(broker.committed) == list(range(30_000))
    assert commits == 3


def test_each_commit_writes_a_timing_line(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    level = timing_log.level
    timing_log.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger="cdc.run.timing"):
            _, commits = _behind(CaptureOptions(until_caught_up=True, flush_max_events=10_000))
    finally:
        timing_log.setLevel(level)
    # only the timing logger's records: whether `cdc.run`'s INFO lines ("caught up with the source")
    # are captured too depends on what an earlier test in the same worker left the root logger at
    records = [r for r in caplog.records if r.name == timing_log.name]
    log = tmp_path / "run.log"
    log.write_text(
        "".join(f"2026-01-01 00:00:00,000 DEBUG cdc.run.timing: {r.getMessage()}\n" for r in records)
    )
    called, done, why = capture_commits(log)
    assert len(called) == commits == 3
    assert all(a <= b for a, b in zip(called, done, strict=True))
    assert called == sorted(called)
    assert why == ["txn_end"] * 3  # the in-memory writer takes no runs: each end is looked at
    assert [r.getMessage().split()[1] for r in records] == ["events=10000"] * 3
