"""Two pipelines given one state_dir (it defaults to ./state): the second must not start from the
first one's position (on another server that position would skip its own changes); it stops with
exit 2 saying the state_dir belongs to another pipeline, and `cdc status` of each shows its own runs."""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from pathlib import Path

from click.testing import CliRunner

from cdc.cli import main
from cdc.devstack.connections import StackConnections


def test_a_second_pipeline_on_the_same_state_dir_stops(stack: StackConnections, tmp_path: Path) -> None:
    m = stack.mariadb
    suffix = uuid.uuid4().hex[:8]
    db = f"statefix_{suffix}"
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY)")
    configs = {}
    for letter in "ab":
        configs[letter] = tmp_path / f"{letter}.yaml"
        configs[letter].write_text(
            f"name: statefix-{letter}-{suffix}\n"
            f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
            f" server_id: {random.randint(72_000, 72_999)}, tables: ['{db}.t']}}\n"
            f"sinks: [{{type: sql, url: 'sqlite:///{tmp_path / letter}.db'}}]\n"
            f"state_dir: {tmp_path / 'state'}\n"  # the same for both: the mistake
        )
    env = {"PW": m.password}

    def run(letter: str) -> int:
        args = ["run", "-c", str(configs[letter]), "--until-caught-up"]
        return CliRunner().invoke(main, args, env=env).exit_code

    assert run("a") == 0  # writes its start position
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {db}.t VALUES (1)")
    assert run("b") == 2
    status_b = CliRunner().invoke(main, ["status", "-c", str(configs["b"]), "--json"], env=env)
    b = json.loads(status_b.stdout)
    error = b["runs"]["run"]["last_exit"]["error"]
    assert f"statefix-a-{suffix}" in error and "own state_dir" in error, error
    assert b["exit_code"] == 1
    with sqlite3.connect(tmp_path / "b.db") as serving:  # nothing applied from A's position
        tables = [r[0] for r in serving.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert not [t for t in tables if t.endswith("t") and "headwater" not in t], tables
    status_a = CliRunner().invoke(main, ["status", "-c", str(configs["a"]), "--json"], env=env)
    a = json.loads(status_a.stdout)
    assert a["runs"]["run"]["last_exit"]["exit_code"] == 0 and a["exit_code"] == 0, a["problems"]


def test_status_names_the_account_that_may_not_read_the_binlog_position(
    stack: StackConnections, tmp_path: Path
) -> None:
    """`cdc status` reads the source as the daemon does (server_position.py): a missing privilege is
    reported naming the account and the grant, not as a bare server error."""
    m = stack.mariadb
    suffix = uuid.uuid4().hex[:8]
    user, password = f"statefix_{suffix}", uuid.uuid4().hex
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
        cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY %s", (password,))
    try:
        config = tmp_path / "cdc.yaml"
        config.write_text(
            f"name: statefix-{suffix}\n"
            f"source: {{host: {m.host}, port: {m.port}, user: {user}, password: '${{PW}}',"
            f" server_id: {random.randint(72_000, 72_999)}, tables: ['statefix_{suffix}.t']}}\n"
            f"sinks: [{{type: sql, url: 'sqlite:///{tmp_path / 's.db'}'}}]\n"
            f"state_dir: {tmp_path / 'state'}\n"
        )
        result = CliRunner().invoke(main, ["status", "-c", str(config), "--json"], env={"PW": password})
        status = json.loads(result.stdout)
        assert result.exit_code == 2, status
        assert user in status["source"]["error"], status["source"]["error"]
        assert password not in result.stdout
    finally:
        with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")
