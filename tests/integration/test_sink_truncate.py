"""A TRUNCATE through Kafka into a serving table, over a topic of several partitions.

The writer sends the truncate to every partition; `cdc sink` must apply it once, after every older
change and before every newer one, whichever partition each lives in."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

from click.testing import CliRunner

from cdc.cli import main
from cdc.config import load_config
from cdc.config.models import SqlSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from sinks.sql import create_sql_sink


def test_truncate_lands_between_older_and_newer_rows(stack: StackConnections, tmp_path: Path) -> None:
    m = stack.mariadb
    db, name = f"trunc_{uuid.uuid4().hex[:8]}", f"trunc-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "cdc.yaml"
    config.write_text(
        f"name: {name}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
        f" server_id: {random.randint(10_000, 4_000_000)}, tables: ['{db}.*']}}\n"
        f"stream: {{bootstrap_servers: '{stack.kafka.bootstrap_servers}', partitions: 4}}\n"
        f"sinks: [{{type: sql, url: 'sqlite:///{tmp_path / 'serving.db'}'}}]\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    env = {"PW": m.password}

    def cdc(*args: str) -> None:
        result = CliRunner().invoke(main, [*args, "-c", str(config)], env=env)
        assert result.exit_code == 0, result.output

    with (
        m.connect_root(autocommit=True) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)")
        cdc("run", "--until-caught-up")  # the pipeline starts here
        cur.executemany(f"INSERT INTO {db}.t VALUES (%s, 1)", [(i,) for i in range(40)])
        cur.execute(f"TRUNCATE TABLE {db}.t")
        cur.executemany(f"INSERT INTO {db}.t VALUES (%s, 2)", [(i,) for i in range(30, 70)])
        cur.execute(f"SELECT id, v FROM {db}.t")
        source = {int(i): int(v) for i, v in cur.fetchall()}
    cdc("run", "--until-caught-up")
    cdc("sink", "--until-caught-up")

    loaded = load_config(config, env)
    sink_config = loaded.sinks[0]
    assert isinstance(sink_config, SqlSinkConfig)
    sink = create_sql_sink(sink_config, loaded.name)
    sink.open()
    try:
        rows = {int(r["id"]): int(r["v"]) for r in sink.read_rows(TableRef(db, "t"))}  # type: ignore[call-overload]
    finally:
        sink.close()
    assert rows == source
