"""Reconcile, repair through the stream, reconcile again (issue 10), as the scheduled run does it.

The daemon runs meanwhile (as it does when its own scheduler fires): the copy follows the source,
and the repair request goes through it.

Drift of several kinds is injected straight into the SQLite serving copy of an embedded pipeline; a
scheduled reconciliation with ``repair: true`` (run_scheduled_reconcile, what the daemon's scheduler
calls) finds it, sends the corrections through the stream, compares again and reports a match; the
report history's last result says so, and the Iceberg history records the repair.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.config import load_config
from cdc.daemon.reconcile_schedule import run_scheduled_reconcile, start_reconcile_schedule
from cdc.devstack.connections import StackConnections
from tests.integration.test_bootstrap_stream import ItemsWorkload, verify_serving, write_config
from tests.support.workload import Daemon

pytestmark = pytest.mark.slow


def test_scheduled_reconcile_repairs_drift_through_the_stream(
    stack: StackConnections, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = uuid.uuid4().hex[:8]
    workload = ItemsWorkload(stack, f"recrep_{suffix}", random.randrange(1 << 30))
    workload.create()
    config_path = write_config(tmp_path, stack, f"recrep-{suffix}", workload.db, kafka=False, mode="initial")
    with config_path.open("a") as cfg:
        cfg.write(f"reconcile: {{schedule: '0 3 * * *', tables: ['{workload.db}.accounts'], repair: true}}\n")
    daemon = Daemon(config_path, tmp_path / "run.log", "run", stack.mariadb.password)
    daemon.catch_up()
    verify_serving(config_path, workload)

    serving = sa.create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    with serving.begin() as conn:
        conn.execute(sa.text("DELETE FROM accounts WHERE id = 11"))
        conn.execute(sa.text("UPDATE accounts SET v = 'drifted' WHERE id = 12"))
        conn.execute(sa.text("UPDATE accounts SET v = NULL WHERE id = 13"))
        conn.execute(sa.text("INSERT INTO accounts (id, ver, v) VALUES (77777, 1, 'extra')"))
    serving.dispose()

    monkeypatch.setenv("CDC_SOURCE_PASSWORD", stack.mariadb.password)
    config = load_config(config_path)
    scheduler = start_reconcile_schedule(config)
    assert scheduler is not None and scheduler.get_job(f"reconcile-{config.name}") is not None
    scheduler.shutdown(wait=False)

    # the daemon runs, as it does when its scheduler fires: copies follow the (busy) source, and the
    # repair goes through it
    proc = daemon.start()
    deadline = time.monotonic() + 60
    while "applying" not in daemon.log.read_text().split("reconciliation scheduled")[-1]:
        assert time.monotonic() < deadline and proc.poll() is None, daemon.log.read_text()[-2000:]
        time.sleep(0.2)
    try:
        assert run_scheduled_reconcile(config) == 0  # found, repaired, matching when compared again
    finally:
        proc.terminate()
        proc.wait(60)
    assert "repair" in daemon.log.read_text()
    verify_serving(config_path, workload)
    last = json.loads((tmp_path / "state" / "reconcile" / "last.json").read_text())
    verdicts = {v["sink"]: v["verdict"] for v in last.values() if v["table"].endswith(".accounts")}
    assert verdicts and set(verdicts.values()) == {"match"}, last
    status = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "status", "-c", str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert f"reconciled  {workload.db}.accounts -> sql: match" in status.stdout, status.stdout
    reports = sorted((tmp_path / "state" / "reconcile").glob("2*.json"))
    assert len(reports) >= 2, reports  # the run that found the drift, and the one after the repair
    first = json.loads(reports[0].read_text())
    assert "drift" in json.dumps(first), first
