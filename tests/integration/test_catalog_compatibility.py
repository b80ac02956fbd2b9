"""The `compatibility` policy in `cdc run` (embedded, SQLite sink): a breaking change stops the daemon
(exit 2 naming the table and the change) before any row of it is written, `cdc schema accept` lets it
through; a backward change, and a breaking one under `on_incompatible: flag`, go through, classified."""

from __future__ import annotations

import random
import sqlite3
import uuid
from pathlib import Path

from click.testing import CliRunner

from cdc.cli import main
from cdc.daemon.schema_versions_file import SchemaVersionsFile
from cdc.devstack.connections import StackConnections


def setup(stack: StackConnections, tmp_path: Path, action: str) -> tuple[str, Path, dict[str, str]]:
    m = stack.mariadb
    db = f"catalog_{uuid.uuid4().hex[:8]}"
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.page (id INT PRIMARY KEY, title VARCHAR(20), len INT)")
        cur.execute(f"CREATE TABLE {db}.log (id INT PRIMARY KEY, note VARCHAR(20))")
    config = tmp_path / "cdc.yaml"
    config.write_text(
        f"name: {db.replace('_', '-')}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
        f" server_id: {random.randint(4800, 4899)}, tables: ['{db}.*']}}\n"
        f"sinks: [{{type: sql, name: serving, url: 'sqlite:///{tmp_path / 'serving.db'}'}}]\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "catalog:\n"
        "  owner: {team: wiki-core}\n"
        f"  tables: {{'{db}.page': {{compatibility: backward, on_incompatible: {action}}}}}\n"
    )
    return db, config, {"PW": m.password}


def sql(stack: StackConnections, *statements: str) -> None:
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def run(config: Path, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", "-c", str(config), "--until-caught-up"], env=env)
    return result.exit_code, result.output + str(result.exception or "")


def served(tmp_path: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / "serving.db") as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchall():
            return []
        return sorted(conn.execute(f"SELECT id FROM {table}").fetchall())


def test_breaking_change_stops_run_until_accepted(stack: StackConnections, tmp_path: Path) -> None:
    db, config, env = setup(stack, tmp_path, "stop")
    assert run(config, env)[0] == 0  # starts from the source's end (bootstrap mode never)
    sql(stack, f"INSERT INTO {db}.page VALUES (1, 'a', 1)")
    assert run(config, env)[0] == 0
    # backward: a nullable column; then breaking: a dropped one; the other table goes on meanwhile
    sql(
        stack,
        f"ALTER TABLE {db}.page ADD COLUMN note TEXT NULL",
        f"INSERT INTO {db}.page VALUES (2, 'b', 2, 'n')",
        f"ALTER TABLE {db}.page DROP COLUMN len",
        f"INSERT INTO {db}.page VALUES (3, 'c', 'n')",
        f"INSERT INTO {db}.log VALUES (1, 'x')",
    )
    code, output = run(config, env)
    assert code == 2, output
    assert f"{db}.page" in output and "drop len" in output and "cdc schema accept" in output
    assert served(tmp_path, "page") == [(1,), (2,)]  # nothing of the breaking version was written
    code, output = run(config, env)  # a restart stops again: nothing was skipped
    assert code == 2 and "drop len" in output
    accept = CliRunner().invoke(main, ["schema", "accept", "-c", str(config), f"{db}.page"], env=env)
    assert accept.exit_code == 0 and "drop len" in accept.output, accept.output
    assert run(config, env)[0] == 0
    assert served(tmp_path, "page") == [(1,), (2,), (3,)]
    assert served(tmp_path, "log") == [(1,)]
    versions = [e for e in SchemaVersionsFile(tmp_path / "state", config.read_text().split()[1]).read()]
    expected = [
        "version/",
        "version/backward",
        "held/breaking",
        "held/breaking",
        "accepted/",
        "version/breaking",
    ]
    assert [f"{e.kind}/{e.compatibility}" for e in versions if e.table == f"{db}.page"] == expected


def test_flag_lets_a_breaking_change_through_with_a_warning(stack: StackConnections, tmp_path: Path) -> None:
    db, config, env = setup(stack, tmp_path, "flag")
    assert run(config, env)[0] == 0  # starts from the source's end (bootstrap mode never)
    sql(stack, f"INSERT INTO {db}.page VALUES (1, 'a', 1)")
    assert run(config, env)[0] == 0
    sql(stack, f"ALTER TABLE {db}.page MODIFY len SMALLINT", f"INSERT INTO {db}.page VALUES (2, 'b', 2)")
    code, output = run(config, env)
    assert code == 0, output
    assert served(tmp_path, "page") == [(1,), (2,)]
    [last] = [e for e in SchemaVersionsFile(tmp_path / "state", config.read_text().split()[1]).read()][-1:]
    assert last.compatibility == "breaking" and "narrows the integer range" in last.breaking


def test_kafka_capture_stops_on_a_breaking_change_and_loses_nothing(
    stack: StackConnections, tmp_path: Path
) -> None:
    db, config, env = setup(stack, tmp_path, "stop")
    text = config.read_text()
    config.write_text(
        text.replace("sinks:", f"stream: {{bootstrap_servers: '{stack.kafka.bootstrap_servers}'}}\nsinks:")
    )
    assert run(config, env)[0] == 0
    sql(
        stack,
        f"INSERT INTO {db}.page VALUES (1, 'a', 1)",
        f"ALTER TABLE {db}.page CHANGE len size INT",  # a rename: breaking
        f"INSERT INTO {db}.page VALUES (2, 'b', 2)",
    )
    code, output = run(config, env)
    assert code == 2 and "rename len to size" in output, output
    sink = CliRunner().invoke(main, ["sink", "-c", str(config), "--until-caught-up"], env=env)
    assert sink.exit_code == 0, sink.output
    # the topic holds nothing of the breaking version; the Kafka transaction open when capture
    # stopped (row 1 here, with flush_max_ms) was aborted with it and is read again later
    assert served(tmp_path, "page") in ([], [(1,)])
    accept = CliRunner().invoke(main, ["schema", "accept", "-c", str(config), f"{db}.page"], env=env)
    assert accept.exit_code == 0, accept.output
    assert run(config, env)[0] == 0
    sink = CliRunner().invoke(main, ["sink", "-c", str(config), "--until-caught-up"], env=env)
    assert sink.exit_code == 0, sink.output
    assert served(tmp_path, "page") == [(1,), (2,)]
