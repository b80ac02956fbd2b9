"""`cdc sink`'s per-batch timing lines (logger ``cdc.sink.timing``, DEBUG; HEADWATER_SINK_TIMING=1 turns
them on): one line a batch, its changes, the wall-clock times of its hops in order and each poll that
went into it, in the form `benchmarks.e2e` parses to split the sink half of the end-to-end latency."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from benchmarks.e2e_hops import TIMING as _TIMING
from cdc.daemon.sink_runner import SinkRunner, SinkRunnerOptions, _Consumption, timing_log
from tests.unit.test_sinkwall_trickle import SlowSink, TrickleReader


def test_each_batch_logs_its_hops_in_order(caplog: pytest.LogCaptureFixture) -> None:
    reader, sink = TrickleReader(), SlowSink()
    runner = SinkRunner(lambda: [], lambda offsets: None, SinkRunnerOptions())  # type: ignore[arg-type,return-value]
    consumption = _Consumption(runner, [sink])  # type: ignore[list-item]
    consumption.reader = reader  # type: ignore[assignment]
    level = timing_log.level
    timing_log.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger="cdc.sink.timing"):
            worker = threading.Thread(target=consumption.run)
            worker.start()
            time.sleep(0.3)
            runner._stop.set()
            worker.join(10)
    finally:
        timing_log.setLevel(level)
    lines = [r.getMessage().encode() for r in caplog.records if r.name == "cdc.sink.timing"]
    assert len(lines) == len(sink.chunks) >= 2
    total = 0
    for line in lines:
        found = _TIMING.search(line)
        assert found is not None, line
        changes, *times, polls = found.groups()
        total += int(changes)
        polled, handed, started, committed, done = (float(t) for t in times)
        assert polled <= handed <= started <= committed <= done, line
        assert committed - started >= 0.04  # the sink's 50 ms apply is inside started..committed
        # each poll that went into the batch: its changes and when, the first one first
        made = [(int(n), float(at)) for n, at in (p.split(b"@") for p in polls.split(b","))]
        assert sum(n for n, _ in made) == int(changes)
        assert made[0][1] == polled and all(polled <= at <= handed for _, at in made), line
        assert [at for _, at in made] == sorted(at for _, at in made)
    assert total == runner.applied_events == reader.taken
