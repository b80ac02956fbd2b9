"""The daemon's maintenance job first runs minutes after start, not one whole interval later (icesnap).

Snapshot expiry keeps a history table's commits cheap; a daemon restarted more often than
``maintenance_interval_hours`` never reached its first run, so its tables' snapshots grew for ever.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cdc.daemon.maintenance_schedule import FIRST_RUN_AFTER, start_maintenance
from tests.unit.test_iceberg_sink import config


def test_the_first_maintenance_run_comes_minutes_after_start(tmp_path: Path) -> None:
    daily = config(tmp_path, maintenance_interval_hours=24.0)
    often = config(tmp_path, namespace="often", maintenance_interval_hours=0.01)  # 36 s
    started = dt.datetime.now(dt.UTC)
    scheduler = start_maintenance([daily, often], "pipe")
    assert scheduler is not None
    try:
        runs = {job.id: job.next_run_time for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)
    assert dt.timedelta(minutes=10) >= FIRST_RUN_AFTER
    assert started < runs["maintain-hist"] <= started + FIRST_RUN_AFTER + dt.timedelta(seconds=5)
    assert runs["maintain-often"] <= started + dt.timedelta(seconds=36 + 5)
