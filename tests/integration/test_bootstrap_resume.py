"""Incremental bootstraps through a running `cdc run`, and bootstraps killed with SIGKILL (issue 9).

- With `cdc run` running (embedded and Kafka mode), `cdc bootstrap` hands the tables to it through
  the request files and returns once the daemon has committed the last chunk; the stream never
  stops meanwhile, and the copies end exact.
- A direct `cdc bootstrap` (no daemon) killed with SIGKILL at random moments, at least five times,
  resumes each time after its last committed chunk (never from the start) and ends exact, with
  nothing twice in the history.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cdc.devstack.connections import StackConnections
from snapshotter.state import SnapshotState
from tests.integration.test_bootstrap_stream import (
    TABLES,
    ItemsWorkload,
    bootstrap,
    verify_history,
    verify_serving,
    write_config,
)
from tests.support.workload import Daemon

pytestmark = pytest.mark.slow


def status_json(config: Path, password: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "status", "--json", "-c", str(config)],
        env={**os.environ, "CDC_SOURCE_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return dict(json.loads(done.stdout))


def _log_count(tmp: Path, text: str) -> int:
    path = tmp / "bootstrap.log"
    return path.read_text(errors="replace").count(text) if path.exists() else 0


def _state(tmp: Path) -> SnapshotState:
    files = list((tmp / "state").glob("snapshot-state-*.json"))
    return SnapshotState.parse(files[0].read_text() if files else None)


def _rows_committed(tmp: Path) -> int:
    state = _state(tmp)
    return sum(j.rows for j in state.jobs) + sum(f.rows for f in state.finished)


@pytest.mark.parametrize("kafka", [False, True], ids=["embedded", "kafka"])
def test_bootstrap_through_a_running_daemon(stack: StackConnections, tmp_path: Path, kafka: bool) -> None:
    suffix = uuid.uuid4().hex[:8]
    workload = ItemsWorkload(stack, f"boot_live_{suffix}", random.randrange(1 << 30))
    workload.create()
    # small chunks: the bootstrap lasts long enough for `cdc status` to see it under way
    name = f"boot-live-{suffix}"
    config = write_config(tmp_path, stack, name, workload.db, kafka=kafka, mode="never", chunk_rows=120)
    daemon = Daemon(config, tmp_path / "run.log", "run", stack.mariadb.password)
    daemon.catch_up()
    proc = daemon.start()
    writer = threading.Thread(target=workload.run, args=(12,))
    try:
        time.sleep(2)
        writer.start()
        handed = bootstrap(config, stack.mariadb.password, f"{workload.db}.*", "--no-wait")
        assert handed.returncode == 0, handed.stdout + handed.stderr[-3000:]
        assert "handed to the running `cdc run`" in handed.stdout, handed.stdout
        # `cdc status` shows the bootstrap while it runs, then the tables it finished
        seen_reading = False
        deadline = time.monotonic() + 300
        seen: list[tuple[float, int, int]] = []
        while time.monotonic() < deadline:
            boots = status_json(config, stack.mariadb.password)["bootstraps"]
            seen.append((time.monotonic(), len(boots["in_progress"]), len(boots["finished"])))
            seen_reading |= any(j["state"] == "reading" for j in boots["in_progress"])
            if len(boots["finished"]) == 3 and not boots["in_progress"]:
                break
            time.sleep(0.3)
        # (Kafka mode: one `cdc status` takes seconds here, longer than this bootstrap may last)
        assert seen_reading or kafka, f"cdc status never showed the bootstrap in progress: {seen}"
        assert {f["table"] for f in boots["finished"]} == {f"{workload.db}.{t}" for t in TABLES}, boots
        writer.join()
        assert proc.poll() is None, "the daemon stopped"
        time.sleep(3)
    finally:
        if writer.is_alive():
            writer.join()
        proc.terminate()
        proc.wait(60)
    assert workload.error is None, workload.error
    log = daemon.log.read_text()
    assert "bootstrap " in log and "done," in log, log[-3000:]
    daemon.catch_up()
    if kafka:
        Daemon(config, tmp_path / "sink.log", "sink", stack.mariadb.password).catch_up()
    verify_serving(config, workload)
    verify_history(config, workload)
    # the request file went once its last chunk was committed
    leftover = list((tmp_path / "state").glob("bootstrap-requests-*/*.json"))
    assert not leftover, leftover


def test_bootstrap_killed_repeatedly_resumes_and_ends_exact(stack: StackConnections, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    rng = random.Random()
    workload = ItemsWorkload(stack, f"boot_kill_{suffix}", rng.randrange(1 << 30))
    workload.create()
    name = f"boot-kill-{suffix}"  # small chunks: many commits to be killed between
    config = write_config(tmp_path, stack, name, workload.db, kafka=False, mode="never", chunk_rows=100)
    daemon = Daemon(config, tmp_path / "run.log", "run", stack.mariadb.password)
    daemon.catch_up()
    env = {**os.environ, "CDC_SOURCE_PASSWORD": stack.mariadb.password}
    command = [sys.executable, "-m", "cdc.cli", "bootstrap", "-c", str(config), f"{workload.db}.*"]
    writer = threading.Thread(target=workload.run, args=(25,))
    writer.start()
    kills, progress = 0, []
    log = (tmp_path / "bootstrap.log").open("ab")
    try:
        while kills < 6:
            started = _log_count(tmp_path, "applying ")
            proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
            deadline = time.monotonic() + 60  # wait until it reads (start-up is slow on a loaded machine)
            while _log_count(tmp_path, "applying ") == started and proc.poll() is None:
                assert time.monotonic() < deadline, "the bootstrap never started reading"
                time.sleep(0.1)
            # a kill only after this run committed a chunk more than the last one left: on a loaded
            # machine a fixed delay killed every run before its first commit, and nothing resumed
            # from a committed chunk (progress [0, 0, 0, 0, 0, 0])
            landed = progress[-1] if progress else 0
            while _rows_committed(tmp_path) <= landed and proc.poll() is None:
                assert time.monotonic() < deadline + 60, "no chunk committed in two minutes"
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
            if proc.poll() is not None:
                break  # finished before this kill
            proc.kill()
            proc.wait(30)
            kills += 1
            progress.append(_rows_committed(tmp_path))
        assert kills >= 5, f"the bootstrap finished after {kills} kills: make the tables bigger"
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    finally:
        writer.join()
        log.close()
    assert workload.error is None, workload.error
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "resuming after its last committed chunk" in done.stdout, done.stdout
    # it resumed: the committed progress only grew between kills (never started over)
    assert progress == sorted(progress) and progress[-1] > 0, progress
    daemon.catch_up()
    verify_serving(config, workload)
    verify_history(config, workload)
