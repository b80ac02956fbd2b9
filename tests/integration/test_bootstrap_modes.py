"""Bootstrap modes (issue 9): ``initial``, a table captured later, ``when_needed`` after a purge, keyless.

- ``initial``: the first `cdc run` bootstraps every captured table; a table the include patterns
  cover only after a config change is bootstrapped when the daemon first sees it.
- ``when_needed``: once the checkpoint's binlog is purged, `cdc run` starts at the source's current
  position and bootstraps every table afresh, truncating the copies first: rows deleted while the
  pipeline was away are gone from the copies too. Under ``initial`` the same purge stops the daemon
  with an error naming the purged binlog. Needs a private MariaDB (purging the shared one's binlogs
  would break everyone else's tests).
- A table without a primary key is refused by name (exit 2), and the others are bootstrapped.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pymysql
import pytest

from cdc.config import load_config
from cdc.config.models import SqlSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.connections import MariaDbConnection, StackConnections
from cdc.devstack.private_mariadb import PrivateMariaDb
from sinks.sql import create_sql_sink

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # purges the shared server's binlogs


def write_config(tmp: Path, m: MariaDbConnection, db: str, tables: str, mode: str) -> Path:
    path = tmp / "cdc.yaml"
    path.write_text(
        f"name: modes-{db.replace('_', '-')}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{CDC_SOURCE_PASSWORD}}',"
        f" server_id: {random.randint(5_900_001, 5_999_999)}, tables: [{tables}], heartbeat_seconds: 1}}\n"
        "sinks:\n"
        f"  - {{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}\n"
        "batch: {max_events: 2000, max_ms: 100, idle_flush_seconds: 1}\n"
        f"bootstrap: {{mode: {mode}, min_chunk_rows: 50, max_chunk_rows: 500}}\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return path


def cdc(config: Path, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc.cli", *args, "-c", str(config)],
        env={**os.environ, "CDC_SOURCE_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def rows_of(config: Path, password: str, ref: TableRef) -> dict[int, dict[str, Any]]:
    cfg = load_config(config, {"CDC_SOURCE_PASSWORD": password})
    sink_config = cfg.sinks[0]
    assert isinstance(sink_config, SqlSinkConfig)
    sink = create_sql_sink(sink_config, cfg.name)
    sink.open()
    try:
        return {int(r["id"]): dict(r) for r in sink.read_rows(ref)}  # type: ignore[call-overload]
    except Exception:  # noqa: BLE001 - a table never created reads as empty here
        return {}
    finally:
        sink.close()


def source_of(conn: pymysql.Connection, db: str, table: str) -> dict[int, dict[str, Any]]:  # type: ignore[type-arg]
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM `{db}`.`{table}`")
        return {int(r["id"]): dict(r) for r in cur.fetchall()}


def test_initial_mode_and_a_table_captured_later(stack: StackConnections, tmp_path: Path) -> None:
    db = f"modes_{uuid.uuid4().hex[:8]}"
    m = stack.mariadb
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"USE {db}")
        for table in ("a", "b"):
            cur.execute(f"CREATE TABLE {db}.{table} (id INT PRIMARY KEY, v VARCHAR(20))")
            cur.execute(f"INSERT INTO {db}.{table} SELECT seq, CONCAT('{table}', seq) FROM seq_1_to_1200")
        config = write_config(tmp_path, m, db, f"'{db}.a'", "initial")
        first = cdc(config, m.password, "run", "--until-caught-up")
        assert first.returncode == 0, first.stderr[-3000:]
        assert rows_of(config, m.password, TableRef(db, "a")) == source_of(conn, db, "a")
        assert rows_of(config, m.password, TableRef(db, "b")) == {}, "b is not captured yet"
        cur.execute(f"UPDATE {db}.a SET v = 'changed' WHERE id <= 10")
        again = cdc(config, m.password, "run", "--until-caught-up")
        assert again.returncode == 0, again.stderr[-3000:]
        assert "bootstrapping" not in again.stderr, "a table already bootstrapped is not read again"
        # the include patterns now cover b as well: it is bootstrapped at the next start
        config = write_config(tmp_path, m, db, f"'{db}.*'", "initial")
        later = cdc(config, m.password, "run", "--until-caught-up")
        assert later.returncode == 0, later.stderr[-3000:]
        assert f"tables captured since the last start: {db}.b" in later.stderr, later.stderr[-3000:]
        assert rows_of(config, m.password, TableRef(db, "a")) == source_of(conn, db, "a")
        assert rows_of(config, m.password, TableRef(db, "b")) == source_of(conn, db, "b")
        cur.execute(f"DROP DATABASE {db}")


def test_keyless_table_is_refused_by_name(stack: StackConnections, tmp_path: Path) -> None:
    db = f"modes_{uuid.uuid4().hex[:8]}"
    m = stack.mariadb
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"USE {db}")
        cur.execute(f"CREATE TABLE {db}.keyed (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute(f"CREATE TABLE {db}.keyless (id INT, v VARCHAR(20))")
        cur.execute(f"INSERT INTO {db}.keyed SELECT seq, 'x' FROM seq_1_to_300")
        cur.execute(f"INSERT INTO {db}.keyless SELECT seq, 'x' FROM seq_1_to_300")
        config = write_config(tmp_path, m, db, f"'{db}.*'", "never")
        assert cdc(config, m.password, "run", "--until-caught-up").returncode == 0
        done = cdc(config, m.password, "bootstrap", f"{db}.*")
        assert done.returncode == 2, done.stdout + done.stderr[-2000:]
        assert f"{db}.keyless: NOT bootstrapped" in done.stderr and "primary key" in done.stderr, done.stderr
        assert rows_of(config, m.password, TableRef(db, "keyed")) == source_of(conn, db, "keyed")
        cur.execute(f"DROP DATABASE {db}")


def purge_all_but_current(cur: Any) -> None:
    """The server keeps a binlog InnoDB still needs for crash recovery: retry until it lets go."""
    cur.execute("SHOW BINARY LOGS")
    first = cur.fetchall()[0][0]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW MASTER STATUS")
        current = cur.fetchone()[0]
        cur.execute(f"PURGE BINARY LOGS TO '{current}'")
        cur.execute("SHOW BINARY LOGS")
        if first not in [row[0] for row in cur.fetchall()]:
            return
        time.sleep(0.5)
    raise AssertionError(f"the server kept {first}")


@pytest.mark.parametrize("mode", ["when_needed", "initial"])
def test_purged_binlog(tmp_path: Path, mode: str) -> None:
    with PrivateMariaDb(tmp_path / "db") as server:
        m = server.connection()
        db = "purge_test"
        with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {db}")
            cur.execute(f"USE {db}")
            cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))")
            cur.execute(f"INSERT INTO {db}.t SELECT seq, 'before' FROM seq_1_to_2000")
            config = write_config(tmp_path, m, db, f"'{db}.*'", mode)
            first = cdc(config, m.password, "run", "--until-caught-up")
            assert first.returncode == 0, first.stderr[-3000:]
            assert rows_of(config, m.password, TableRef(db, "t")) == source_of(conn, db, "t")
            # while the pipeline is away: deletes, updates, inserts, and the binlog they went to purged
            cur.execute(f"DELETE FROM {db}.t WHERE id <= 300")
            cur.execute(f"UPDATE {db}.t SET v = 'during' WHERE id > 1900")
            cur.execute(f"INSERT INTO {db}.t SELECT seq, 'new' FROM seq_2001_to_2500")
            purge_all_but_current(cur)
            after = cdc(config, m.password, "run", "--until-caught-up")
            if mode == "initial":
                assert after.returncode == 2, after.stderr[-2000:]
                assert "purged" in after.stderr.lower(), after.stderr[-2000:]
                return
            assert after.returncode == 0, after.stderr[-3000:]
            assert "bootstrapping every captured table afresh" in after.stderr, after.stderr[-3000:]
            assert rows_of(config, m.password, TableRef(db, "t")) == source_of(conn, db, "t")
            cur.execute(f"UPDATE {db}.t SET v = 'streamed' WHERE id = 1000")
            last = cdc(config, m.password, "run", "--until-caught-up")
            assert last.returncode == 0, last.stderr[-3000:]
            assert "bootstrapping" not in last.stderr
            assert rows_of(config, m.password, TableRef(db, "t")) == source_of(conn, db, "t")
