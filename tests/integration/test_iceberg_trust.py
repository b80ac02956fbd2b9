"""The Iceberg history against the real MariaDB (issue 8): keyless tables and schema changes.

Embedded `cdc run --until-caught-up` into an Iceberg-only pipeline. Keyless: MediaWiki's
``user_newtalk`` (no primary key, identical rows are normal); `cdc history` must give the source's
rows with their copies at every point. Schema changes: DROP COLUMN and RENAME COLUMN, all within one
run or with a restart between each, give the same history (the source's rows, the dropped column kept).
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cdc.cli import main
from cdc.config import load_config
from cdc.config.models import IcebergSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from sinks.iceberg import create_iceberg_sink, read_history

SERVER_IDS = range(65_000, 66_000)


class Pipeline:
    def __init__(self, stack: StackConnections, tmp_path: Path, db: str, policy: str = "apply") -> None:
        m = stack.mariadb
        self.db = db
        self.config = tmp_path / "cdc.yaml"
        self.config.write_text(
            f"name: iceberg-{uuid.uuid4().hex[:8]}\n"
            f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
            f" server_id: {random.choice(SERVER_IDS)}, tables: ['{db}.*']}}\n"
            f"sinks: [{{type: iceberg, namespace: {db}, schema_changes: {policy},"
            f" catalog: {{type: sql, uri: 'sqlite:///{tmp_path / 'catalog.db'}',"
            f" warehouse: '{(tmp_path / 'wh').as_uri()}'}}}}]\n"
            f"state_dir: {tmp_path / 'state'}\n"
        )
        self.env = {"PW": m.password}

    def cdc(self, *args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, [args[0], "-c", str(self.config), *args[1:]], env=self.env)
        assert result.exit_code == code, result.output
        return result.output

    def sink_config(self) -> IcebergSinkConfig:
        config = load_config(self.config, self.env).sinks[0]
        assert isinstance(config, IcebergSinkConfig)
        return config

    def applied_position(self) -> str:
        sink = create_iceberg_sink(self.sink_config(), load_config(self.config, self.env).name)
        sink.open()
        try:
            applied = sink.applied()
            assert applied is not None
            return applied.position.to_string()
        finally:
            sink.close()


@pytest.fixture
def db(stack: StackConnections) -> Any:
    name = f"iceberg_{uuid.uuid4().hex[:8]}"
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield name
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")


def _source_rows(stack: StackConnections, query: str) -> Counter[tuple[object, ...]]:
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(query)
        return Counter(tuple(row) for row in cur.fetchall())


def test_keyless_history_gives_every_copy_at_every_point(
    stack: StackConnections, tmp_path: Path, db: str
) -> None:
    pipeline = Pipeline(stack, tmp_path, db)
    table = f"{db}.user_newtalk"
    query = f"SELECT user_id, user_ip, user_last_timestamp FROM {table}"
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {table} (user_id INT UNSIGNED NOT NULL DEFAULT 0,"
            " user_ip VARBINARY(40) NOT NULL DEFAULT '', user_last_timestamp BINARY(14) NULL)"
        )
        pipeline.cdc("run", "--until-caught-up")  # the pipeline starts here
        steps = [
            f"INSERT INTO {table} VALUES (7, '', NULL), (7, '', NULL), (0, '10.0.0.1', NULL)",
            f"DELETE FROM {table} WHERE user_id = 7 LIMIT 1",
            f"INSERT INTO {table} VALUES (7, '', NULL)",
            f"UPDATE {table} SET user_last_timestamp = '20261130041500' WHERE user_id = 7 LIMIT 1",
        ]
        expected: list[tuple[str, Counter[tuple[object, ...]]]] = []
        for statement in steps:
            cur.execute(statement)
            pipeline.cdc("run", "--until-caught-up")
            expected.append((pipeline.applied_position(), _source_rows(stack, query)))
    assert expected[-1][1] == Counter(
        {(7, b"", None): 1, (7, b"", b"20261130041500"): 1, (0, b"10.0.0.1", None): 1}
    )
    for position, source in expected:
        printed = pipeline.cdc("history", table, "--at", position, "--format", "jsonl")
        lines = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
        got = Counter((r["user_id"], _bytes(r["user_ip"]), _bytes(r["user_last_timestamp"])) for r in lines)
        assert got == source, position
    history = read_history(pipeline.sink_config().catalog, db, table).rows.to_pylist()
    update = [r for r in history if r["_position"] == history[-1]["_position"]]
    assert [r["_op"] for r in update] == ["d", "u"]  # both images of the keyless update


def _bytes(value: object) -> object:
    """`cdc history --format jsonl` prints binary values in base64; compare as the source's bytes."""
    return None if value is None else base64.b64decode(str(value))


DDL = [
    "ALTER TABLE {t} DROP COLUMN c",
    "ALTER TABLE {t} RENAME COLUMN b TO bb",
    "ALTER TABLE {t} ADD COLUMN d INT NULL",
]


@pytest.mark.parametrize("restarts", [False, True], ids=["one-run", "restart-between"])
def test_drop_rename_add_column_keep_the_history_whole(
    stack: StackConnections, tmp_path: Path, db: str, restarts: bool
) -> None:
    pipeline = Pipeline(stack, tmp_path, db)
    table = f"{db}.t"
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, a INT, b VARCHAR(20), c INT)")
        pipeline.cdc("run", "--until-caught-up")
        cur.execute(f"INSERT INTO {table} VALUES (1, 1, 'one', 10), (2, 2, 'two', 20)")
        for n, ddl in enumerate(DDL, start=3):
            if restarts:
                pipeline.cdc("run", "--until-caught-up")
            cur.execute(ddl.format(t=table))
            cur.execute(f"UPDATE {table} SET a = a + 100 WHERE id = 1")
            if n == 3:
                cur.execute(f"INSERT INTO {table} (id, a, b) VALUES ({n}, {n}, 'x{n}')")
            elif n == 4:
                cur.execute(f"INSERT INTO {table} (id, a, bb) VALUES ({n}, {n}, 'x{n}')")
            else:
                cur.execute(f"INSERT INTO {table} (id, a, bb, d) VALUES ({n}, {n}, 'x{n}', {n})")
        cur.execute(f"SELECT id, a, bb, d FROM {table}")
        source = {int(r[0]): r for r in cur.fetchall()}
    pipeline.cdc("run", "--until-caught-up")
    printed = pipeline.cdc("history", table, "--at", pipeline.applied_position(), "--format", "jsonl")
    rows = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert {r["id"]: (r["id"], r["a"], r["bb"], r["d"]) for r in rows} == source
    assert {r["id"]: r["c"] for r in rows} == {
        1: None,
        2: 20,
        3: None,
        4: None,
        5: None,
    }  # kept, null after the drop
    history = read_history(pipeline.sink_config().catalog, db, table).rows
    assert "b" not in history.column_names  # renamed, not dropped and added
    first = history.to_pylist()[0]
    assert (first["id"], first["bb"], first["c"]) == (1, "one", 10)  # the oldest row, under the new name


def test_stop_policy_stops_on_a_rename_until_accepted(
    stack: StackConnections, tmp_path: Path, db: str
) -> None:
    pipeline = Pipeline(stack, tmp_path, db, policy="stop")
    table = f"{db}.t"
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, b VARCHAR(20))")
        pipeline.cdc("run", "--until-caught-up")
        cur.execute(f"INSERT INTO {table} VALUES (1, 'one')")
        cur.execute(f"ALTER TABLE {table} RENAME COLUMN b TO bb")
        cur.execute(f"INSERT INTO {table} VALUES (2, 'two')")
    output = pipeline.cdc("run", "--until-caught-up", code=2)
    assert f"{db}.t" in output and "rename b to bb" in output and "cdc schema accept" in output
    pipeline.cdc("run", "--until-caught-up", code=2)  # a restart does not get past it
    sink = create_iceberg_sink(pipeline.sink_config(), load_config(pipeline.config, pipeline.env).name)
    sink.open()
    try:
        pending = sink.pending_schema_changes()
        assert [(p.table, p.change) for p in pending] == [(TableRef(db, "t"), "rename b to bb")]
        assert sink.accept_schema_change(TableRef(db, "t")) == pending[0]
    finally:
        sink.close()
    pipeline.cdc("run", "--until-caught-up")
    printed = pipeline.cdc("history", table, "--at", pipeline.applied_position(), "--format", "jsonl")
    rows = sorted(
        (json.loads(line) for line in printed.splitlines() if line.startswith("{")), key=lambda r: r["id"]
    )
    assert rows == [{"id": 1, "bb": "one"}, {"id": 2, "bb": "two"}]
