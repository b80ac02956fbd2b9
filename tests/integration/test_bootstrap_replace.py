"""`cdc bootstrap TABLE --replace` with no daemon running (MariaDB source, embedded mode).

The copies drifted behind the pipeline's back: a serving table holds a row the source never had and
misses one it has. `--replace` empties each copy first (a truncate before the first chunk), then
reads the table in chunks while writes go on; the next `cdc run` streams on from where the
bootstrap left. The serving table ends equal to the source row by row, the extra row gone, and the
Iceberg history, read as of its end, equals it too (its truncate does not hide a later change).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc.devstack.connections import StackConnections

ROWS = 1500


@pytest.fixture(scope="module", autouse=True)
def _daemons_warm() -> None:
    from tests.support.pgsrc_daemon import warm_up

    warm_up()


@pytest.fixture
def db(stack: StackConnections) -> Iterator[str]:
    name = f"bootrepl_{uuid.uuid4().hex[:8]}"
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"USE {name}")
        cur.execute("CREATE TABLE item (id INT PRIMARY KEY, qty INT NOT NULL)")
        cur.execute(f"INSERT INTO item SELECT seq, 0 FROM seq_1_to_{ROWS}")  # the sequence engine
    try:
        yield name
    finally:
        with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")


def _config(tmp: Path, stack: StackConnections, db: str) -> Path:
    m = stack.mariadb
    path = tmp / "cdc.yaml"
    path.write_text(
        f"name: {db.replace('_', '-')}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '{m.password}',"
        f" server_id: {random.randint(6_100_001, 6_199_999)}, tables: ['{db}.*'], heartbeat_seconds: 1}}\n"
        "sinks:\n"
        f"  - {{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}\n"
        f"  - {{type: iceberg, namespace: {db}, commit_rows: 5000, commit_seconds: 1,"
        f" catalog: {{type: sql, uri: 'sqlite:///{tmp / 'catalog.db'}',"
        f" warehouse: '{(tmp / 'wh').as_uri()}'}}}}\n"
        "batch: {max_events: 500, max_ms: 50, idle_flush_seconds: 1}\n"
        "bootstrap: {mode: initial, min_chunk_rows: 100, max_chunk_rows: 200, chunk_seconds: 0.05}\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return path


def test_replace_without_a_daemon_empties_drifted_copies_and_refills_them_under_writes(
    stack: StackConnections, tmp_path: Path, db: str
) -> None:
    from sinks.iceberg import read_history
    from sinks.iceberg.history_schema import to_source_values
    from tests.support.pgsrc_daemon import ForkedDaemon

    config = _config(tmp_path, stack, db)
    daemon = ForkedDaemon(config, tmp_path / "cdc.log")
    daemon.catch_up(120)  # `initial`: the first start bootstraps, then streams
    with sqlite3.connect(tmp_path / "serving.db") as lite:  # drift behind the pipeline's back
        lite.execute("INSERT INTO item (id, qty) VALUES (999999, 5)")
        lite.execute("DELETE FROM item WHERE id = 7")

    stop = threading.Event()
    errors: list[BaseException] = []

    def writes() -> None:
        rng = random.Random(5)
        try:
            with stack.mariadb.connect_root(autocommit=True, database=db) as conn, conn.cursor() as cur:
                while not stop.is_set():
                    key = rng.randrange(1, ROWS + 200)
                    if rng.random() < 0.2:
                        cur.execute("DELETE FROM item WHERE id = %s", (key,))
                    else:
                        cur.execute(
                            "INSERT INTO item VALUES (%s, 1) ON DUPLICATE KEY UPDATE qty = qty + 1", (key,)
                        )
                    time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    from cdc.cli import main

    writer = threading.Thread(target=writes, daemon=True)
    writer.start()
    try:
        result = CliRunner().invoke(main, ["bootstrap", "-c", str(config), f"{db}.item", "--replace"])
        assert result.exit_code == 0, result.output
        time.sleep(0.3)
    finally:
        stop.set()
        writer.join(10)
    assert not errors, errors
    daemon.catch_up(120)

    with stack.mariadb.connect_root(database=db) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, qty FROM item ORDER BY id")
        source = [(int(r[0]), int(r[1])) for r in cur.fetchall()]
    with sqlite3.connect(tmp_path / "serving.db") as lite:
        serving = [(int(r[0]), int(r[1])) for r in lite.execute("SELECT id, qty FROM item ORDER BY id")]
    assert serving == source
    catalog = {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path / 'catalog.db'}",
        "warehouse": (tmp_path / "wh").as_uri(),
    }
    found = read_history(catalog, db, f"{db}.item")
    state: dict[int, int] = {}
    ordered = sorted(to_source_values(found.rows, found.column_kinds), key=lambda r: str(r["_position"]))
    positions = [str(r["_position"]) for r in ordered if r["_op"] != "t"]
    assert len(positions) == len(set(positions)), "a change is in the history twice"
    for r in ordered:
        if r["_op"] == "t":
            state.clear()
        elif r["_op"] == "d":
            state.pop(int(r["id"]), None)
        else:
            state[int(r["id"])] = int(r["qty"])
    assert sorted(state.items()) == source
    assert sum(1 for r in ordered if r["_op"] == "t") == 1  # the one truncate of --replace
