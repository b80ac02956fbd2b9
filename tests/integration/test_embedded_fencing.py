"""Two embedded `cdc run` on one config (issue 8, item 5): the newer one fences the older one.

Both processes are real `cdc run` processes on the same config (SQLite serving tables and an Iceberg
history), under a workload. The first must exit 2, naming the second (its pid) and saying that two
`cdc run` for one pipeline must not run; afterwards the serving tables equal the source row by row
and the history holds each change exactly once.
"""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from cdc.devstack.connections import StackConnections
from tests.integration.test_sink_faults import verify
from tests.support.workload import Daemon, Workload

pytestmark = pytest.mark.slow


def write_config(tmp: Path, stack: StackConnections, name: str, db: str, server_id: int, file: str) -> Path:
    m = stack.mariadb
    path = tmp / file
    path.write_text(
        f"name: {name}\n"
        f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
        f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {server_id},"
        f" tables: ['{db}.*'], heartbeat_seconds: 1}}\n"
        "sinks:\n"
        f"  - {{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}\n"
        f"  - {{type: iceberg, namespace: {db}, commit_rows: 2000, commit_seconds: 1,"
        f" catalog: {{type: sql, uri: 'sqlite:///{tmp / 'catalog.db'}',"
        f" warehouse: '{(tmp / 'wh').as_uri()}'}}}}\n"
        "batch: {max_events: 500, max_ms: 100, idle_flush_seconds: 1}\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return path


def wait_for(log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{log.name} never logged {text!r}: {log.read_text()[-2000:]}")


@pytest.mark.parametrize("server_ids", ["same", "different"])
def test_second_embedded_run_fences_the_first(
    stack: StackConnections, tmp_path: Path, server_ids: str
) -> None:
    """``same``: one config started twice (on two hosts, say); the source also drops the older
    replica connection then (error 4052), and the first must still name the second. ``different``:
    the same pipeline with a server_id per host, where only the sinks can tell."""
    suffix = uuid.uuid4().hex[:8]
    workload = Workload(stack, f"embedded_fence_{suffix}", random.randrange(1 << 30))
    workload.create()
    name, ids = f"embedded-fence-{suffix}", random.sample(range(66_000, 67_000), 2)
    config = write_config(tmp_path, stack, name, workload.db, ids[0], "cdc.yaml")
    other = (
        config if server_ids == "same" else write_config(tmp_path, stack, name, workload.db, ids[1], "b.yaml")
    )
    first = Daemon(config, tmp_path / "first.log", "run", stack.mariadb.password)
    second = Daemon(other, tmp_path / "second.log", "run", stack.mariadb.password)
    first.catch_up()  # the pipeline's first start: where it begins
    writer = threading.Thread(target=workload.run, args=(25,))
    writer.start()
    old = new = None
    try:
        old = first.start()
        wait_for(first.log, "applying")
        time.sleep(3)  # the first daemon is writing both sinks
        new = second.start()
        wait_for(second.log, "applying")
        try:
            old_code: int | None = old.wait(60)
        except Exception:  # noqa: BLE001 - still running: two writers at once (the bug)
            old_code = None
        writer.join()
    finally:
        workload.stop.set()
        writer.join()
        for proc in (old, new):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
    assert workload.error is None, workload.error
    assert new is not None and new.returncode == 0, second.log.read_text()[-3000:]
    Daemon(config, tmp_path / "last.log", "run", stack.mariadb.password).catch_up()
    verify(config, workload)  # no change missing, none applied twice
    first_log = first.log.read_text()
    assert old_code == 2, f"the first daemon kept running beside the second: {first_log[-3000:]}"
    assert f"pid {new.pid}" in first_log, first_log[-3000:]
    assert "must not run" in first_log, first_log[-3000:]
    assert first_log.count(" ERROR ") == 1, first_log[-3000:]  # said once, clearly
