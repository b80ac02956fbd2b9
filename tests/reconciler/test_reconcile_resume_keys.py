"""Resume after SIGKILL and the chunk time target for tables without a single integer key: a
composite (INT, VARCHAR) key, and a VARCHAR key under a case-insensitive collation (chunks bounded by
source keys in byte order: 'B...' before 'a...'). Like test_reconcile_resume.py, the source and the
copy are filled straight by SQL (no pipeline: the compare is the subject)."""

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
from tests.reconciler.recon_pipeline import PASSWORD_ENV

SERVER_IDS = (7300, 7399)  # this area's range (recspeed)
ROWS = 12_000
TABLES = {  # name: (MariaDB DDL, MariaDB rows from seq, PostgreSQL DDL, PostgreSQL rows from n, drift)
    "pair": (
        "CREATE TABLE pair (a INT NOT NULL, b VARCHAR(10) NOT NULL, v INT NOT NULL, PRIMARY KEY (a, b))",
        "SELECT seq DIV 10, CONCAT('k', seq % 10), seq FROM seq_0_to_{last}",
        "CREATE TABLE pair (a INT NOT NULL, b VARCHAR(10) NOT NULL, v INT NOT NULL, PRIMARY KEY (a, b))",
        "SELECT n / 10, 'k' || (n % 10), n FROM generate_series(0, {last}) n",
        "(a = 0 AND b = 'k3') OR (a = 1199 AND b = 'k8')",
    ),
    "ci": (
        "CREATE TABLE ci (name VARCHAR(20) COLLATE utf8mb4_general_ci PRIMARY KEY, v INT NOT NULL)",
        "SELECT CONCAT(IF(seq % 2, 'a', 'B'), LPAD(seq, 6, '0')), seq FROM seq_0_to_{last}",
        "CREATE TABLE ci (name VARCHAR(20) PRIMARY KEY, v INT NOT NULL)",
        "SELECT CASE WHEN n % 2 = 1 THEN 'a' ELSE 'B' END || lpad(n::text, 6, '0'), n "
        "FROM generate_series(0, {last}) n",
        "name IN ('B000002', 'a011999')",  # the first and the last key in byte order but one
    ),
}


@pytest.fixture(scope="module")
def keyed(stack: StackConnections, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = f"recspeed_{uuid.uuid4().hex[:8]}"
    m = stack.mariadb
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"USE `{db}`")
        for name, (ddl, rows, *_) in TABLES.items():
            cur.execute(ddl)
            cur.execute(f"INSERT INTO {name} " + rows.format(last=ROWS - 1))
    admin = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as pg_admin:
        pg_admin.execute(sa.text(f'CREATE DATABASE "{db}"'))
    pg = sa.create_engine(stack.postgres.sqlalchemy_url(db))
    with pg.begin() as pg_conn:
        for name, (_, _, ddl, rows, drift) in TABLES.items():
            pg_conn.execute(sa.text(ddl))
            pg_conn.execute(sa.text(f"INSERT INTO {name} " + rows.format(last=ROWS - 1)))
            pg_conn.execute(sa.text(f"UPDATE {name} SET v = -1 WHERE {drift}"))
    try:
        yield db
    finally:
        pg.dispose()
        with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        with admin.connect() as pg_admin:
            pg_admin.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.parametrize("table", sorted(TABLES))
def test_killed_reconcile_of_other_keys_resumes_from_the_last_finished_slice(
    keyed: str, stack: StackConnections, tmp_path: Path, table: str
) -> None:
    db = keyed
    m = stack.mariadb
    url = sa.engine.make_url(stack.postgres.sqlalchemy_url(db)).render_as_string(hide_password=False)
    config = tmp_path / "cdc.yaml"
    config.write_text(
        f"name: recspeed-{db[9:]}\n"
        f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
        f" password: '${{{PASSWORD_ENV}}}', server_id: {random.randint(*SERVER_IDS)}, tables: ['{db}.*']}}\n"
        f"sinks:\n  - {{type: sql, name: pg, url: '{url}'}}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    env = {**os.environ, PASSWORD_ENV: m.password}
    command = [sys.executable, "-m", "cdc.cli", "--log-level", "INFO", "reconcile", "-c", str(config),
               f"{db}.{table}", "--wait", "0.5", "--chunk-rows", "500", "--chunk-seconds", "0.02",
               "--pause", "2"]  # fmt: skip
    progress_dir = tmp_path / "state" / "reconcile" / "progress"
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    compared = 0
    deadline = time.monotonic() + 60
    while first.poll() is None and time.monotonic() < deadline and compared < 1000:
        for path in progress_dir.glob("*.json"):
            try:
                compared = json.loads(path.read_text())["source_rows"]
            except (ValueError, OSError, KeyError):
                continue
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, "the first run ended before the kill: slow it down more"
    (path,) = progress_dir.glob("*.json")
    kept = json.loads(path.read_text())  # the last finished slice, at the kill
    assert 1000 <= kept["source_rows"] < ROWS, kept
    first_key = {"pair": ["0", "k3"], "ci": ["B000002"]}[table]
    assert [d[1] for d in kept["drift"]] == [first_key], kept  # keys only: values are read again
    # the chunk time target (20 ms) shrank the slices from the first one's 10,000 rows
    assert kept["source_rows"] < 10_000, kept
    second = subprocess.run(command[:-6], env=env, capture_output=True, text=True, timeout=120)
    output = second.stdout + second.stderr
    assert "resuming a stopped run: keys before (" in output, output
    # both differences reported (the copy has no pipeline position: BEHIND, exit 1, but listed)
    assert second.returncode == 1, output
    assert f"{ROWS} source rows, {ROWS} copy rows; 2 different" in output, output
    assert not list(progress_dir.glob("*.json"))  # a finished run leaves no progress
