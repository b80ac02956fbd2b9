"""Lag is not drift: under a concurrent workload, with the daemon applying, an in-sync pipeline's
copies report nothing, run after run; and the HTML report renders in headless Chromium."""

from __future__ import annotations

import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
import sqlalchemy as sa

from cdc.devstack.connections import StackConnections
from tests.reconciler.recon_pipeline import ReconPipeline


@pytest.fixture
def pipeline(stack: StackConnections, tmp_path: Path) -> Iterator[ReconPipeline]:
    p = ReconPipeline.create(stack, tmp_path)
    try:
        p.run_until_caught_up()
        p.execute(
            "CREATE TABLE busy (id INT PRIMARY KEY, ver INT NOT NULL, amount DECIMAL(10,2), note TEXT)",
            "INSERT INTO busy SELECT seq, 0, seq / 100, CONCAT('n', seq) FROM seq_1_to_2000",
        )
        p.run_until_caught_up()
        yield p
    finally:
        p.close()


def _workload(p: ReconPipeline, stop: threading.Event, errors: list[BaseException]) -> None:
    rng = random.Random(7)
    next_id = 3000
    try:
        with p.source() as conn, conn.cursor() as cur:
            while not stop.is_set():
                op = rng.random()
                key = rng.randint(1, 2000)
                if op < 0.6:
                    cur.execute("UPDATE busy SET ver = ver + 1, amount = amount + 0.01 WHERE id = %s", (key,))
                elif op < 0.8:
                    cur.execute("INSERT INTO busy VALUES (%s, 0, 1.5, 'new')", (next_id,))
                    next_id += 1
                else:
                    cur.execute("DELETE FROM busy WHERE id = %s", (key,))
                time.sleep(0.005)
    except pymysql.Error as exc:  # pragma: no cover - shown by the test's assertion
        errors.append(exc)


def test_busy_in_sync_pipeline_reports_nothing(pipeline: ReconPipeline) -> None:
    from reconciler.report import summary

    pipeline.start_daemon()
    stop = threading.Event()
    errors: list[BaseException] = []
    writer = threading.Thread(target=_workload, args=(pipeline, stop, errors), daemon=True)
    writer.start()
    try:
        # ten runs in a row, against each kind of copy in turn (in this process: the same comparison
        # as `cdc reconcile`, without an interpreter start per run; the Iceberg history's state is
        # rebuilt per run, the slowest, so it takes two of the ten)
        for run, sink in enumerate(("pg", "lite", "maria", "history") * 2 + ("pg", "lite")):
            report = pipeline.reconcile_here(f"{pipeline.db}.busy", sink=sink)
            assert report.exit_code == 0, (run, summary(report))
            (result,) = report.results
            assert result.rows_source > 1000, summary(report)
    finally:
        stop.set()
        writer.join(10)
    assert not errors


def test_html_report_shows_drift_in_chromium(pipeline: ReconPipeline, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: scripts/setup.sh installs it (apt-get install -y chromium)")
    pg = pipeline.pg()
    with pg.begin() as conn:
        conn.execute(sa.text("UPDATE busy SET note = 'drifted <b>' WHERE id = 17"))
        conn.execute(sa.text("DELETE FROM busy WHERE id = 18"))
    pg.dispose()
    pipeline.start_daemon()
    report = tmp_path / "owners.html"
    done = pipeline.cdc("reconcile", "--sink", "pg", "--report", str(report), "--wait", "20")
    assert done.returncode == 1, done.stdout + done.stderr
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert '<td class="drift">drift</td>' in dom
    assert "drifted &lt;b&gt;" in dom  # values are escaped, shown in the samples
    assert "<td>missing</td><td>18</td>" in dom
    assert "<td>different</td><td>17</td><td>note</td>" in dom
