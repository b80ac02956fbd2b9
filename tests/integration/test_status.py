"""`cdc status` against the real services: checkpoint, source position, lag and tables."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

from click.testing import CliRunner

from cdc.cli import main
from cdc.devstack.connections import StackConnections


def test_status_reports_checkpoint_position_lag_and_tables(stack: StackConnections, tmp_path: Path) -> None:
    m = stack.mariadb
    db, name = f"status_{uuid.uuid4().hex[:8]}", f"status-{uuid.uuid4().hex[:8]}"
    with (
        m.connect_root(autocommit=True) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY)")
    config = tmp_path / "cdc.yaml"
    config.write_text(
        f"name: {name}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
        f" server_id: {random.randint(10_000, 4_000_000)}, tables: ['{db}.*']}}\n"
        f"stream: {{bootstrap_servers: '{stack.kafka.bootstrap_servers}'}}\n"
    )
    env = {"PW": m.password}
    result = CliRunner().invoke(main, ["status", "-c", str(config)], env=env)
    assert result.exit_code == 0, result.output  # no checkpoint yet is not an error
    assert "checkpoint  none" in result.output
    assert CliRunner().invoke(main, ["run", "-c", str(config), "--until-caught-up"], env=env).exit_code == 0
    result = CliRunner().invoke(main, ["status", "-c", str(config), "--json"], env=env)
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["checkpoint"]["restart_point"].startswith("mdb1:")
    assert status["source"]["file"] and status["lag_bytes"] is not None
    assert status["tables"] == [f"{db}.t"]
    assert m.password not in result.output
