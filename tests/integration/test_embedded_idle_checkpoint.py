"""The idle checkpoint in embedded mode (issue 8, item 3): ~1 MB written to a table that is not
captured moves the resume point past it without a write to the sinks; `cdc status` shows no lag and
the next start resumes after it (before: 1,035,725 bytes of lag while fully caught up, and a restart
that re-read everything, or failed as "purged" once that binlog expired)."""

from __future__ import annotations

import json
import random
import signal
import time
import uuid
from pathlib import Path

from click.testing import CliRunner

from cdc.cli import main
from cdc.core.positions import RestartPoint
from cdc.devstack.connections import StackConnections
from tests.support.workload import Daemon


def test_writes_to_other_tables_move_the_resume_point(stack: StackConnections, tmp_path: Path) -> None:
    m = stack.mariadb
    db = f"embedded_idle_{uuid.uuid4().hex[:8]}"
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.captured (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute(f"CREATE TABLE {db}.other (id INT PRIMARY KEY, blob_ MEDIUMTEXT)")
    config = tmp_path / "cdc.yaml"
    config.write_text(
        f"name: {db.replace('_', '-')}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{CDC_SOURCE_PASSWORD}}',"
        f" server_id: {random.randint(66_000, 66_999)}, tables: ['{db}.captured'], heartbeat_seconds: 1}}\n"
        f"sinks: [{{type: sql, url: 'sqlite:///{tmp_path / 'serving.db'}'}}]\n"
        "batch: {idle_flush_seconds: 1}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    daemon = Daemon(config, tmp_path / "run.log", "run", m.password)
    daemon.catch_up()  # first start
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {db}.captured VALUES (1, 'a')")
    daemon.catch_up()
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        before = cur.fetchone()
        for i in range(100):  # ~1 MB in 100 transactions, none on a captured table
            cur.execute(f"INSERT INTO {db}.other VALUES (%s, REPEAT('x', 10000))", (i,))
        cur.execute("SHOW MASTER STATUS")
        after = cur.fetchone()
    assert before is not None and after is not None
    # a running daemon reads the 1 MB: the sink gets nothing, the idle checkpoint moves past it
    env = {"CDC_SOURCE_PASSWORD": m.password}
    end = (int(str(after[0]).rsplit(".", 1)[1]), int(after[1]))
    running = daemon.start()
    deadline = time.monotonic() + 60
    try:
        while True:
            result = CliRunner().invoke(
                main, ["status", "-c", str(config), "--json", "--max-lag-seconds", "30"], env=env
            )
            status = json.loads(result.stdout)
            [sink] = status["sinks"]
            resume = RestartPoint.parse(sink["resume_point"]).transaction
            if (resume.file_seq, resume.offset) >= end or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        running.send_signal(signal.SIGTERM)
        assert running.wait(60) == 0, daemon.log.read_text()[-3000:]
    # the shared server gets other tests' writes too: what counts is that ours are behind the sink
    assert (resume.file_seq, resume.offset) >= end, sink
    assert sink["lag_seconds"] is not None and sink["lag_seconds"] < 30, sink
    assert result.exit_code == 0, status["problems"]

    daemon.catch_up()  # the next start resumes after the 1 MB
    resumed = [line for line in daemon.log.read_text().splitlines() if "applying 1 tables" in line][-1]
    point = RestartPoint.parse(resumed.rsplit(" from ", 1)[1]).transaction
    assert (point.file_seq, point.offset) >= end, resumed
    assert "idle checkpoint" in daemon.log.read_text()
