"""`cdc status` against the real services: checkpoint, source position, each sink's position and lag,
the last run, and the documented exit codes (0 healthy, 1 behind or last run failed, 2 cannot run)."""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cdc.cli import main
from cdc.devstack.connections import StackConnections


def test_status_reports_checkpoint_position_lag_and_tables(stack: StackConnections, tmp_path: Path) -> None:
    m = stack.mariadb
    db, name = f"embedded_status_{uuid.uuid4().hex[:8]}", f"embedded-status-{uuid.uuid4().hex[:8]}"
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
        f" server_id: {random.randint(66_000, 66_999)}, tables: ['{db}.*']}}\n"
        f"stream: {{bootstrap_servers: '{stack.kafka.bootstrap_servers}'}}\n"
        f"state_dir: {tmp_path / 'state'}\n"
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
    assert status["runs"]["run"]["last_exit"]["exit_code"] == 0 and status["exit_code"] == 0
    assert m.password not in result.output


# -- embedded mode: each sink's position and lag, the last run, and the exit codes -----------------


def embedded_setup(stack: StackConnections, tmp_path: Path) -> tuple[str, Path, dict[str, str]]:
    m = stack.mariadb
    db = f"embedded_status_{uuid.uuid4().hex[:8]}"
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))")
    config = tmp_path / "cdc.yaml"
    config.write_text(
        f"name: {db.replace('_', '-')}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
        f" server_id: {random.randint(66_000, 66_999)}, tables: ['{db}.*']}}\n"
        f"sinks: [{{type: sql, name: serving, url: 'sqlite:///{tmp_path / 'serving.db'}'}}]\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    return db, config, {"PW": m.password}


def insert(stack: StackConnections, db: str, first: int, count: int) -> None:
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {db}.t VALUES (%s, 'x')", [(i,) for i in range(first, first + count)])


def status_json(config: Path, env: dict[str, str], *extra: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["status", "-c", str(config), "--json", *extra], env=env)
    assert result.exit_code in (0, 1, 2), result.output
    return result.exit_code, json.loads(result.stdout)


def catch_up(config: Path, env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["run", "-c", str(config), "--until-caught-up"], env=env)
    assert result.exit_code == 0, result.output


def test_embedded_status_shows_each_sink_and_exits_0_when_healthy(
    stack: StackConnections, tmp_path: Path
) -> None:
    db, config, env = embedded_setup(stack, tmp_path)
    catch_up(config, env)
    insert(stack, db, 1, 50)
    catch_up(config, env)
    code, status = status_json(config, env, "--max-lag-seconds", "120")
    assert code == 0, status["problems"]
    [sink] = status["sinks"]
    assert sink["name"] == "serving" and sink["target"].startswith("sql:sqlite")
    assert sink["applied_position"].startswith("mdb1:") and sink["error"] is None
    assert sink["lag_bytes"] is not None and sink["lag_seconds"] is not None
    assert sink["lag_seconds"] < 120
    run = status["runs"]["run"]
    assert run["last_exit"]["exit_code"] == 0 and run["last_progress"]["resume_point"].startswith("mdb1:")
    text = CliRunner().invoke(main, ["status", "-c", str(config)], env=env)
    assert text.exit_code == 0 and "sink        serving (sql:sqlite" in text.output
    assert "health      healthy (exit 0)" in text.output
    assert stack.mariadb.password not in text.output


def test_status_exits_1_when_a_sink_is_behind_more_than_max_lag(
    stack: StackConnections, tmp_path: Path
) -> None:
    db, config, env = embedded_setup(stack, tmp_path)
    catch_up(config, env)
    insert(stack, db, 1, 5)
    catch_up(config, env)
    time.sleep(2.5)
    insert(stack, db, 100, 5)  # not applied: the daemon is not running
    code, status = status_json(config, env, "--max-lag-seconds", "2")
    assert code == 1
    [sink] = status["sinks"]
    assert sink["lag_bytes"] > 0 and sink["lag_seconds"] > 2
    assert any("serving is" in p and "behind" in p for p in status["problems"])
    code, _ = status_json(config, env)  # lag is judged only when asked
    assert code == 0


def test_status_exits_1_when_the_last_run_failed(stack: StackConnections, tmp_path: Path) -> None:
    _, config, env = embedded_setup(stack, tmp_path)
    catch_up(config, env)
    (tmp_path / "state" / "embedded-start.json").write_text("{not json")  # an operator must act
    result = CliRunner().invoke(main, ["run", "-c", str(config), "--until-caught-up"], env=env)
    assert result.exit_code == 2
    code, status = status_json(config, env)
    assert code == 1
    run = status["runs"]["run"]
    assert run["last_exit"]["exit_code"] == 2 and "embedded-start.json" in run["last_exit"]["error"]
    assert any("stopped" in p and "embedded-start.json" in p for p in status["problems"])
    text = CliRunner().invoke(main, ["status", "-c", str(config)], env=env)
    assert text.exit_code == 1 and "health      unhealthy (exit 1)" in text.output
    assert stack.mariadb.password not in text.output


def test_status_exits_2_when_it_cannot_run(stack: StackConnections, tmp_path: Path) -> None:
    _, config, env = embedded_setup(stack, tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("server_id:", "server_idd:"))
    result = CliRunner().invoke(main, ["status", "-c", str(bad)], env=env)
    assert result.exit_code == 2 and "server_id" in result.output
    down = tmp_path / "down.yaml"  # nothing listens there: the source cannot be read
    down.write_text(config.read_text().replace(f"port: {stack.mariadb.port}", "port: 1"))
    code, status = status_json(down, env)
    assert code == 2 and status["source"]["error"]


def test_kafka_status_shows_each_sink_and_its_offsets_lag(stack: StackConnections, tmp_path: Path) -> None:
    m = stack.mariadb
    db = f"embedded_kstatus_{uuid.uuid4().hex[:8]}"
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY)")
    config = tmp_path / "cdc.yaml"
    config.write_text(
        f"name: {db.replace('_', '-')}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
        f" server_id: {random.randint(66_000, 66_999)}, tables: ['{db}.*']}}\n"
        f"stream: {{bootstrap_servers: '{stack.kafka.bootstrap_servers}', partitions: 2}}\n"
        f"sinks: [{{type: sql, name: serving, url: 'sqlite:///{tmp_path / 'serving.db'}'}}]\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    env = {"PW": m.password}
    catch_up(config, env)  # the first checkpoint
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {db}.t VALUES (%s)", [(i,) for i in range(20)])
    catch_up(config, env)
    code, status = status_json(config, env)
    [sink] = status["sinks"]
    assert code == 0 and sink["applied_position"] is None and sink["offsets_lag"] >= 20
    result = CliRunner().invoke(main, ["sink", "-c", str(config), "--until-caught-up"], env=env)
    assert result.exit_code == 0, result.output
    code, status = status_json(config, env)
    [sink] = status["sinks"]
    assert code == 0 and sink["applied_position"].startswith("mdb1:")
    assert sink["offsets_lag"] <= 2  # at most a transaction marker per partition
    assert sink["lag_bytes"] is not None  # others' writes to the shared server count too
    assert status["runs"]["sink"]["last_exit"]["exit_code"] == 0
