"""PostgreSQL source, embedded mode, bootstrap.mode when_needed: a lost replication slot.

The slot is dropped while it holds changes (deletes among them, which only a truncate of the copies
can undo). The next `cdc run` does not stop: it truncates the table's copies and reads the table
again in a new slot's snapshot, writes going on, then streams. The serving table ends equal to the
source table. (Kafka mode has the same test in test_pg_source.py.)
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cdc.devstack.connections import PgSourceConnection, StackConnections


@pytest.fixture(scope="module", autouse=True)
def _daemons_warm() -> None:
    from tests.support.pgsrc_daemon import warm_up

    warm_up()


@pytest.fixture
def pgdb(stack: StackConnections) -> Iterator[tuple[PgSourceConnection, str]]:
    from tests.support.pg_databases import pg_source_database

    assert stack.pgsource is not None, "the dev stack has no pgsource cluster: run `cdc dev up`"
    with pg_source_database(stack.pgsource, "pglost") as name:
        yield stack.pgsource, name


def test_embedded_when_needed_rebootstraps_after_the_slot_is_lost(
    pgdb: tuple[PgSourceConnection, str], tmp_path: Path
) -> None:
    from tests.support.pgsrc_daemon import ForkedDaemon

    conn, name = pgdb

    def admin() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(conn.admin_conninfo(name), autocommit=True)

    with admin() as c:
        c.execute("CREATE PUBLICATION pglost_pub FOR ALL TABLES")
        c.execute("CREATE TABLE item (id int PRIMARY KEY, qty int NOT NULL)")
        c.execute("INSERT INTO item SELECT g, 0 FROM generate_series(1, 2000) g")
        c.execute(f"GRANT SELECT ON item TO {conn.user}")
    config = tmp_path / "pg.yaml"
    config.write_text(
        f"name: {name.replace('_', '-')}\n"
        "source:\n"
        "  type: postgresql\n"
        f"  host: {conn.host}\n  port: {conn.port}\n  user: {conn.user}\n"
        f"  password: {conn.password}\n  database: {name}\n  slot: {name}\n"
        "  publication: pglost_pub\n  heartbeat_seconds: 0.5\n"
        f"sinks: [{{type: sql, url: 'sqlite:///{tmp_path / 'serving.db'}'}}]\n"
        "batch: {max_events: 200, max_ms: 50}\n"
        "bootstrap: {mode: when_needed}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    daemon = ForkedDaemon(config, tmp_path / "cdc.log")
    daemon.catch_up(120)  # first start: `initial`'s bootstrap, then the stream
    with admin() as c:
        c.execute("UPDATE item SET qty = 1 WHERE id <= 100")
    daemon.catch_up(120)
    with admin() as c:  # the slot is lost holding deletes, updates and inserts
        c.execute("SELECT pg_drop_replication_slot(%s)", (name,))
        c.execute("DELETE FROM item WHERE id > 1800")
        c.execute("UPDATE item SET qty = qty + 100 WHERE id <= 50")
        c.execute("INSERT INTO item SELECT g, 7 FROM generate_series(5001, 5100) g")
    stop = threading.Event()

    def writes() -> None:
        rng = secrets.SystemRandom()
        with admin() as c:
            while not stop.is_set():
                key = rng.randrange(1, 2100)
                if rng.random() < 0.2:
                    c.execute("DELETE FROM item WHERE id = %s", (key,))
                else:
                    c.execute(
                        "INSERT INTO item VALUES (%s, 1) ON CONFLICT (id) DO UPDATE SET qty = item.qty + 1",
                        (key,),
                    )
                time.sleep(0.002)

    writer = threading.Thread(target=writes, daemon=True)
    writer.start()
    try:
        daemon.catch_up(120)  # bootstraps afresh, writes going on
        time.sleep(0.3)
    finally:
        stop.set()
        writer.join(10)
    daemon.catch_up(120)
    log = daemon.log_text()
    assert "bootstrap.mode when_needed: bootstrapping every captured table afresh" in log, log[-3000:]
    with admin() as c:
        rows = c.execute("SELECT id, qty FROM item ORDER BY id").fetchall()
    with sqlite3.connect(tmp_path / "serving.db") as lite:
        got = lite.execute("SELECT id, qty FROM item ORDER BY id").fetchall()
    assert len(got) == len(rows) and got == rows
