"""Source type changes into the Iceberg history against the real MariaDB (issue 8, the "icefix" work).

A narrowed type (BIGINT -> INT, a smaller DECIMAL) keeps the history's wider column; a type of
another family (INT -> VARCHAR) moves the old column aside to ``<name>__<its Iceberg type>``. Either
way the pipeline keeps running and the history keeps every value, within one run or with a restart
between each change. It used to stop for good: "type changed ... which is not a widening".
"""

from __future__ import annotations

import decimal
import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc.cli import main
from cdc.config import load_config
from cdc.config.models import IcebergSinkConfig
from cdc.devstack.connections import StackConnections
from sinks.iceberg import read_history

SERVER_IDS = range(71_000, 72_000)


@pytest.fixture
def db(stack: StackConnections) -> Iterator[str]:
    name = f"icefix_{uuid.uuid4().hex[:8]}"
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield name
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")


def _write_config(stack: StackConnections, tmp_path: Path, db: str) -> Path:
    m = stack.mariadb
    path = tmp_path / "cdc.yaml"
    path.write_text(
        f"name: icefix-{uuid.uuid4().hex[:8]}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
        f" server_id: {random.choice(SERVER_IDS)}, tables: ['{db}.*']}}\n"
        f"sinks: [{{type: iceberg, namespace: {db}, schema_changes: apply,"
        f" catalog: {{type: sql, uri: 'sqlite:///{tmp_path / 'catalog.db'}',"
        f" warehouse: '{(tmp_path / 'wh').as_uri()}'}}}}]\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    return path


def _cdc(config: Path, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, [args[0], "-c", str(config), *args[1:]], env=env)
    assert result.exit_code == 0, result.output
    return result.output


DDL = [
    "ALTER TABLE {t} MODIFY n INT",  # narrowed: the long column stays
    "ALTER TABLE {t} MODIFY price DECIMAL(10,2)",  # narrowed: decimal(12, 4) stays
    "ALTER TABLE {t} MODIFY n VARCHAR(20)",  # another family: n moves aside to n__long
]


@pytest.mark.parametrize("restarts", [False, True], ids=["one-run", "restart-between"])
def test_narrowed_and_refamilied_types_keep_the_history_whole(
    stack: StackConnections, tmp_path: Path, db: str, restarts: bool
) -> None:
    config = _write_config(stack, tmp_path, db)
    env = {"PW": stack.mariadb.password}
    table = f"{db}.t"
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, n BIGINT, price DECIMAL(12,4))")
        _cdc(config, env, "run", "--until-caught-up")
        cur.execute(f"INSERT INTO {table} VALUES (1, 123456789, 12345678.1234)")
        for i, ddl in enumerate(DDL, start=2):
            if restarts:
                _cdc(config, env, "run", "--until-caught-up")
            cur.execute(ddl.format(t=table))
            cur.execute(f"INSERT INTO {table} VALUES ({i}, {i}, {i}.5)")
    _cdc(config, env, "run", "--until-caught-up")
    sink = load_config(config, env).sinks[0]
    assert isinstance(sink, IcebergSinkConfig)
    history = read_history(sink.catalog, db, table).rows
    got = [(r["id"], r["n__long"], r["n"], r["price"]) for r in history.to_pylist()]
    d = decimal.Decimal
    assert got == [
        (1, 123456789, None, d("12345678.1234")),
        (2, 2, None, d("2.5000")),
        (3, 3, None, d("3.5000")),
        (4, None, "4", d("4.5000")),
    ]
    last = str(history.column("_position")[-1])
    printed = _cdc(config, env, "history", table, "--at", last, "--format", "jsonl")
    rows = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert sorted((r["id"], r["n"]) for r in rows) == [(1, None), (2, None), (3, None), (4, "4")]
