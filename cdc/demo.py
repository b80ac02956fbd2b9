"""`cdc dev demo`: a small MediaWiki-like workload on the local MariaDB, read back from its binlog.

It shows the first leg of the pipeline on real services: SQL in, typed change events out, each with
its position (GTID, binlog file and offset, row index). Later legs (Kafka, sinks) join the demo as
they land.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import pymysql

from cdc.core.events import ChangeEvent, SchemaChange, SourceRecord
from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.sources.mariadb import ConnectionSettings, MariaDbBinlogReader, ReaderConfig, StartAt

# MediaWiki stores titles as VARBINARY and timestamps as BINARY(14) 'YYYYMMDDHHMMSS'.
SCHEMA = (
    "CREATE DATABASE IF NOT EXISTS wikidb",
    """CREATE TABLE IF NOT EXISTS wikidb.actor (
        actor_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        actor_user INT UNSIGNED NULL,
        actor_name VARBINARY(255) NOT NULL,
        UNIQUE KEY actor_name (actor_name)) DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS wikidb.page (
        page_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        page_namespace INT NOT NULL,
        page_title VARBINARY(255) NOT NULL,
        page_is_redirect TINYINT UNSIGNED NOT NULL DEFAULT 0,
        page_touched BINARY(14) NOT NULL,
        page_latest INT UNSIGNED NOT NULL DEFAULT 0,
        page_len INT UNSIGNED NOT NULL DEFAULT 0,
        UNIQUE KEY page_name_title (page_namespace, page_title)) DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS wikidb.revision (
        rev_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        rev_page INT UNSIGNED NOT NULL,
        rev_actor BIGINT UNSIGNED NOT NULL,
        rev_timestamp DATETIME(6) NOT NULL,
        rev_minor_edit TINYINT UNSIGNED NOT NULL DEFAULT 0,
        rev_len INT UNSIGNED NULL,
        rev_sha1 VARBINARY(32) NOT NULL DEFAULT '',
        rev_comment TEXT NULL) DEFAULT CHARSET=utf8mb4""",
)


def _workload(cur: pymysql.cursors.Cursor, title: bytes) -> None:
    cur.execute("INSERT INTO wikidb.actor (actor_user, actor_name) VALUES (%s, %s)", (7, b"Ada"))
    actor = cur.lastrowid
    cur.execute(
        "INSERT INTO wikidb.page (page_namespace, page_title, page_touched) VALUES (0, %s, %s)",
        (title, time.strftime("%Y%m%d%H%M%S").encode()),
    )
    page = cur.lastrowid
    cur.execute(
        "INSERT INTO wikidb.revision (rev_page, rev_actor, rev_timestamp, rev_len, rev_comment) "
        "VALUES (%s, %s, NOW(6), %s, %s)",
        (page, actor, 42, "First edit \N{GRINNING FACE}"),
    )
    cur.execute(
        "UPDATE wikidb.page SET page_latest = %s, page_len = 42 WHERE page_id = %s", (cur.lastrowid, page)
    )
    cur.connection.commit()
    cur.execute("DELETE FROM wikidb.actor WHERE actor_id = %s", (actor,))
    cur.connection.commit()


def _describe(record: SourceRecord) -> str:
    if isinstance(record, ChangeEvent):
        names = record.schema.column_names
        image = record.after if record.after is not None else record.before
        values = ", ".join(f"{n}={v!r}" for n, v in zip(names, image or (), strict=False))
        return f"  {record.op.value} {record.table}  {values}\n      at {record.position.to_string()}"
    if isinstance(record, SchemaChange):
        return f"  DDL {record.kind.value} {record.table}: {record.ddl.strip()[:70]}"
    return f"  -- transaction {record.transaction_id} committed ({record.row_count} rows)"


@click.command("demo")
@click.option(
    "--dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dev stack state directory (default .devstack, or HEADWATER_DEVSTACK_DIR).",
)
def demo(state_dir: Path | None) -> None:
    """Write a small MediaWiki-like workload to the local MariaDB and read it back from the binlog."""
    conns = StackConnections.read(state_dir or default_state_dir())
    m = conns.mariadb
    root = pymysql.connect(
        host=m.host, port=m.port, user=m.root_user, password=m.root_password, charset="utf8mb4"
    )
    with root, root.cursor() as cur:
        for statement in SCHEMA:
            cur.execute(statement)
        cur.execute("SELECT @@gtid_binlog_pos")
        row = cur.fetchone()
        start = str(row[0]) if row else ""
        click.echo(f"MariaDB {m.host}:{m.port}: binlog at GTID {start or '(empty)'}; writing a workload")
        _workload(cur, f"Headwater_demo_{int(time.time())}".encode())

    reader = MariaDbBinlogReader(
        ReaderConfig(
            ConnectionSettings(m.host, m.port, m.user, m.password),
            server_id=5400,
            tables=("wikidb.*",),
            blocking=False,
        )
    )
    click.echo(f"reading the binlog as replica user {m.user!r} from there:")
    count = 0
    for record in reader.records(StartAt.gtid(start) if start else StartAt.current()):
        click.echo(_describe(record))
        count += isinstance(record, ChangeEvent)
    reader.close()
    click.echo(f"{count} row changes captured, each with a unique, ordered position")
    if count == 0:
        raise SystemExit("no change came back from the binlog: check `cdc dev status`")
