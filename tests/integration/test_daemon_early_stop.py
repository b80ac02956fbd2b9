"""A SIGTERM that reaches `cdc run` before its supervisor listens (imports and config take about a
second) is a stop request like any other: exit 0, not death by signal (-15), which a service manager
reports as a crash. Commands that are no daemon still die of it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from cdc.devstack.connections import StackConnections


def _config(tmp: Path, stack: StackConnections) -> Path:
    m = stack.mariadb
    db = f"earlystop_{uuid.uuid4().hex[:8]}"
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY)")
    path = tmp / "cdc.yaml"
    path.write_text(
        f"name: earlystop-{db[-8:]}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{CDC_SOURCE_PASSWORD}}',"
        f" server_id: {random.randint(7_600, 7_699)}, tables: ['{db}.*']}}\n"
        f"sinks:\n  - {{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return path


def _terminated_after(config: Path, password: str, command: str, delay_s: float) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc.cli", command, "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "CDC_SOURCE_PASSWORD": password},
    )
    time.sleep(delay_s)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode is not None
    if command == "run":
        told = f"SIGTERM after {delay_s:.2f}s: exit {proc.returncode}\n{err.decode()[-2000:]}"
        assert proc.returncode == 0, told
    return proc.returncode


def _interpreter_start_s() -> float:
    """How long a bare interpreter takes to reach our first line here (before it, nothing can listen)."""
    times = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import cdc.early_stop"], check=True)
        times.append(time.monotonic() - started)
    return max(times)


def test_sigterm_during_startup_is_a_clean_stop(stack: StackConnections, tmp_path: Path) -> None:
    config = _config(tmp_path, stack)
    floor = 2 * _interpreter_start_s()
    # inside the imports and the config load (the window is about a second, more under load)
    delays = [d for d in (0.2, 0.5, 1.0) if d > floor]
    assert len(delays) >= 2, f"a bare interpreter took {floor / 2:.2f}s to start"
    for delay in delays:
        _terminated_after(config, stack.mariadb.password, "run", delay)
    # a command that is no daemon still ends at once on SIGTERM, as a killed process; the signal
    # comes while it imports (it loads only what it needs: done in ~0.3 s, so 0.3 s came too late)
    assert _terminated_after(config, stack.mariadb.password, "validate", floor / 2) == -signal.SIGTERM
