"""A large table's reconcile killed with SIGKILL resumes from the last finished slice (progress under
state_dir), not from the start; throttled by a chunk time target and --pause so the kill lands
mid-way. The source and the copy are filled straight by SQL (no pipeline: the compare is the subject)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.devstack.connections import StackConnections
from tests.reconciler.recon_pipeline import PASSWORD_ENV, SERVER_IDS

ROWS = 60_000


@pytest.fixture
def big(stack: StackConnections, tmp_path: Path) -> Iterator[tuple[Path, str, sa.Engine]]:
    db = f"recon2_{uuid.uuid4().hex[:8]}"
    m = stack.mariadb
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"USE `{db}`")
        cur.execute("CREATE TABLE big (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(40) NOT NULL)")
        cur.execute(f"INSERT INTO big SELECT seq, seq * 3, CONCAT('row ', seq) FROM seq_1_to_{ROWS}")
    admin = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    pg = sa.create_engine(stack.postgres.sqlalchemy_url(db))
    with pg.begin() as conn:
        conn.execute(sa.text("CREATE TABLE big (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(40) NOT NULL)"))
        conn.execute(
            sa.text(f"INSERT INTO big SELECT n, n * 3, 'row ' || n FROM generate_series(1, {ROWS}) n")
        )
    url = sa.engine.make_url(stack.postgres.sqlalchemy_url(db)).render_as_string(hide_password=False)
    config = tmp_path / "cdc.yaml"
    config.write_text(
        f"name: recon2-{db[7:]}\n"
        f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
        f" password: '${{{PASSWORD_ENV}}}', server_id: {random.randint(*SERVER_IDS)}, tables: ['{db}.*']}}\n"
        f"sinks:\n  - {{type: sql, name: pg, url: '{url}'}}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    try:
        yield config, db, pg
    finally:
        pg.dispose()
        with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


def test_killed_reconcile_resumes_from_the_last_finished_slice(
    big: tuple[Path, str, sa.Engine], stack: StackConnections, tmp_path: Path
) -> None:
    config, db, pg = big
    with pg.begin() as conn:  # drift at both ends: one found before the kill, one after
        conn.execute(sa.text("UPDATE big SET v = -1 WHERE id IN (5, 59990)"))
    env = {**os.environ, PASSWORD_ENV: stack.mariadb.password}
    command = [sys.executable, "-m", "cdc.cli", "--log-level", "INFO", "reconcile", "-c", str(config),
               f"{db}.big", "--wait", "0.5", "--chunk-seconds", "0.02", "--pause", "2"]  # fmt: skip
    progress_dir = tmp_path / "state" / "reconcile" / "progress"
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done_until = 0
    deadline = time.monotonic() + 60
    while first.poll() is None and time.monotonic() < deadline:
        for path in progress_dir.glob("*.json"):
            try:
                done_until = json.loads(path.read_text())["done_until"]
            except (ValueError, OSError):
                continue
        if done_until > 1000:
            break
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, "the first run ended before the kill: slow it down more"
    (path,) = progress_dir.glob("*.json")
    kept = json.loads(path.read_text())  # the last finished slice, at the kill
    assert 1000 < kept["done_until"] < ROWS, kept
    assert kept["drift"] == [["different", ["5"]]], kept  # keys only: values are read again
    second = subprocess.run(command[:-4], env=env, capture_output=True, text=True, timeout=120)
    output = second.stdout + second.stderr
    assert f"resuming a stopped run: keys 1 to {kept['done_until'] - 1} were compared" in output, output
    # both differences reported (the copy has no pipeline position: BEHIND, exit 1, but listed)
    assert second.returncode == 1, output
    assert "60000 source rows, 60000 copy rows; 2 different" in output, output
    assert not list(progress_dir.glob("*.json"))  # a finished run leaves no progress


def test_lag_pause_waits_while_the_copy_lags(stack: StackConnections) -> None:
    """--max-lag: before a slice, the compare waits (up to --wait) while the copy has not reached
    where the source was max_lag seconds ago; a copy that has goes on at once."""
    from cdc.core.positions import RestartPoint
    from reconciler.canonical import Engine
    from reconciler.progress import LagPause
    from reconciler.stores import SqlRunner

    m = stack.mariadb
    url = sa.URL.create("mysql+pymysql", username=m.root_user, password=m.root_password or None,
                        host=m.host, port=m.port)  # fmt: skip
    runner = SqlRunner(sa.create_engine(url), Engine.MARIADB)
    try:
        file, offset = runner.query("SHOW MASTER STATUS", ())[0][:2]
        seq = int(str(file).rsplit(".", 1)[1])
        ahead = RestartPoint.parse(
            f"mdb1:{seq:010d}:{int(offset) + 10**9:010d}:0000000000:"
            f"0000000000-0000000001-00000000000000000001:{str(file).rsplit('.', 1)[0]}+skip=0000000000"
        )
        caught_up = LagPause(runner, lambda: ahead, max_lag=0.1, wait=0.6)
        lagging = LagPause(runner, lambda: None, max_lag=0.1, wait=0.6)
        for pause in (caught_up, lagging):
            pause()  # the source's position now
        time.sleep(0.15)
        for pause in (caught_up, lagging):
            pause()  # the copy must hold that position by now
        assert caught_up.paused_seconds == 0
        assert lagging.paused_seconds >= 0.6  # waited the whole --wait for a copy that never came
    finally:
        runner.close()
