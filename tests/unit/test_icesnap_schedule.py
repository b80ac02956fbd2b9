"""The default maintenance schedule keeps a history table's snapshot count bounded (icesnap).

A history table's commit costs more CPU the more snapshots it holds (~0.17 ms per snapshot,
``benchmarks/iceberg_snapshot_cost.py``): with snapshots kept for days, a table committed every
``commit_seconds`` reaches thousands and each commit seconds of CPU. The daemon's maintenance
expires them; this drives it on a simulated clock (snapshot timestamps and ``now`` both simulated)
as the daemon's schedule would, with the config's defaults, and checks the count stays bounded and
the sink's applied position and rows survive every run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyiceberg.table import snapshots as pyiceberg_snapshots

from cdc.core.events import Op
from sinks.contract import AppliedState
from sinks.iceberg import maintain
from sinks.iceberg.catalogs import open_catalog
from tests.unit.test_iceberg_sink import batch, config, event, opened, pos, positions, schema, settle

COMMIT_EVERY = dt.timedelta(minutes=10)  # a coarse commit rate keeps the test fast; the bound scales
SIMULATED = dt.timedelta(hours=6)


class _Clock:
    """Stands in for the ``time`` module pyiceberg stamps new snapshots with."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def time(self) -> float:
        return self.now.timestamp()


def test_the_default_schedule_keeps_a_history_tables_snapshots_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(tmp_path, commit_rows=1)  # every change is a commit; maintenance settings: defaults
    # start just after the coming UTC midnight: the simulated hours stay in one day, so the closed-day
    # compaction (its own snapshots) does not depend on when the test runs
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    clock = _Clock(today + dt.timedelta(days=1, minutes=1))
    monkeypatch.setattr(pyiceberg_snapshots, "time", clock)
    interval = dt.timedelta(hours=cfg.maintenance_interval_hours)
    # what the defaults promise (docs/governance.md): a table holds the snapshots of its last 2 hours
    # of commits (kept 1 h, expired every hour) or its retain_last newest, whichever is more (+1: a
    # commit may land at the moment of the run)
    bound = max(dt.timedelta(hours=2) // COMMIT_EVERY, cfg.maintenance_retain_last) + 1

    s = schema()
    sink = opened(cfg)
    next_run = clock.now + interval  # APScheduler's interval job first fires one interval after start
    most = seq = runs = 0
    end = clock.now + SIMULATED
    while clock.now < end:
        seq += 1
        ts_ms = int(clock.now.timestamp() * 1000)
        sink.apply(batch(event(Op.CREATE, s, seq, (seq, "x"), ts_ms=ts_ms)))
        settle(sink)
        clock.now += COMMIT_EVERY
        if clock.now >= next_run:
            report = maintain(cfg, "pipe", now=clock.now)
            runs += 1
            next_run += interval
            assert all(not t.failed for t in report.tables)
            assert sink.applied() == AppliedState(pos(seq))
        table = open_catalog(cfg.catalog).load_table("hist.items__history")
        most = max(most, len(table.metadata.snapshots))
    sink.close()

    assert most <= bound, f"{most} snapshots held at once, bound {bound}"
    assert runs >= 2, "the default schedule must have run maintenance within the simulated hours"
    # the sink's applied position survives the expiries: a reopened sink (embedded mode: no Kafka
    # offsets) resumes there and drops a re-delivered change instead of writing it twice
    reopened = opened(cfg)
    assert reopened.applied() == AppliedState(pos(seq))
    reopened.apply(batch(event(Op.CREATE, s, seq, (seq, "x"))))
    reopened.apply(batch(event(Op.CREATE, s, seq + 1, (seq + 1, "x"))))
    reopened.close()
    assert positions(cfg, "shop.items") == [pos(i).to_string() for i in range(1, seq + 2)]
