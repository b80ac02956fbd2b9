"""Each sink's reference: the plain bulk-load rate of the same target, for the same inserted rows.

The rows are the insert images of the binlog range (read, untimed, by the same reader the sinks use),
loaded into tables of the sink's own shape with the target's fastest plain path:

- PostgreSQL: text ``COPY`` into an unkeyed copy of each table (``CREATE TABLE ... (LIKE ...)``);
- MariaDB: pymysql ``executemany``, which sends multi-row ``INSERT``s, into ``CREATE TABLE ... LIKE``;
- SQLite: ``executemany`` of a plain ``INSERT`` into a copy of each table as the sink made it (its
  primary key too: the unkeyed copy this used to be skips the key's index, a quarter of an insert's
  cost, so the reference was not the same table), in a WAL-mode file as the sink's, one transaction;
- Iceberg: one pyiceberg Arrow ``append`` per history table, of the rows the sink wrote.

Updates are left out (a plain load has no upsert), so the reference counts inserts only.
"""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pymysql
import sqlalchemy as sa

from benchmarks.sink_iceberg_bench import plain_append
from benchmarks.sink_sql_bench import copy_rows
from benchmarks.tasks import Place, _source
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import RestartPoint
from cdc.devstack.connections import StackConnections
from sinks.iceberg.catalogs import HISTORY_SUFFIX, open_catalog

Rows = dict[str, list[tuple[Any, ...]]]


def insert_images(stack: StackConnections, args: Mapping[str, Any]) -> Rows:
    source = _source(stack, args)
    start: RestartPoint = source.current_restart_point()
    rows: Rows = defaultdict(list)
    try:
        for record in source.records(start):
            if record.__class__ is ChangeEvent and record.op is Op.CREATE:  # type: ignore[union-attr]
                rows[record.table.table].append(record.after)  # type: ignore[union-attr,arg-type]
    finally:
        source.close()
    return dict(rows)


def reference(stack: StackConnections, args: Mapping[str, Any]) -> dict[str, Any]:
    place = Place(**args["place"])
    sink_name = str(args["sink_name"])  # the schema / database / directory the sink wrote
    if place.target == "iceberg":
        return _iceberg(Place(**{**args["place"], "directory": sink_name}), place.name)
    rows = insert_images(stack, args)
    count = sum(len(r) for r in rows.values())
    loaders = {"postgresql": _postgresql, "mariadb": _mariadb, "sqlite": _sqlite}
    seconds = loaders[place.target](stack, place, sink_name, rows)
    return {"rows": count, "seconds": seconds}


def _postgresql(stack: StackConnections, place: Place, sink_schema: str, rows: Rows) -> float:
    url = stack.postgres.sqlalchemy_url()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{place.name}"'))
        for table in rows:
            conn.execute(sa.text(f'CREATE TABLE "{place.name}"."{table}" (LIKE "{sink_schema}"."{table}")'))
    engine.dispose()
    return sum(copy_rows(url, f'"{place.name}"."{table}"', data) for table, data in rows.items())


def _mariadb(stack: StackConnections, place: Place, sink_db: str, rows: Rows) -> float:
    m = stack.mariadb
    conn = pymysql.connect(
        host=m.host, port=m.port, user=m.root_user, password=m.root_password, charset="utf8mb4"
    )
    seconds = 0.0
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{place.name}`")
            for table, data in rows.items():
                cur.execute(f"CREATE TABLE `{place.name}`.`{table}` LIKE `{sink_db}`.`{table}`")
                marks = ",".join(["%s"] * len(data[0]))
                started = time.perf_counter()
                cur.executemany(f"INSERT INTO `{place.name}`.`{table}` VALUES ({marks})", data)
                conn.commit()
                seconds += time.perf_counter() - started
    finally:
        conn.close()
    return seconds


def _sqlite_value(value: object) -> object:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(" ")
    return value


def _sqlite(stack: StackConnections, place: Place, sink_dir: str, rows: Rows) -> float:
    conn = sqlite3.connect(Path(place.directory) / "plain.db")
    conn.execute("PRAGMA journal_mode=WAL")  # as the sink's file (sinks/sql/sqlite_file.py)
    conn.execute("ATTACH DATABASE ? AS sink", (str(Path(sink_dir) / "serving.db"),))
    seconds = 0.0
    try:
        for table, data in rows.items():
            conn.execute(_same_table(conn, table))
            values = [tuple(_sqlite_value(v) for v in row) for row in data]  # untimed: type adaptation
            marks = ",".join(["?"] * len(values[0]))
            started = time.perf_counter()
            with conn:
                conn.executemany(f'INSERT INTO main."{table}" VALUES ({marks})', values)
            seconds += time.perf_counter() - started
    finally:
        conn.close()
    return seconds


def _same_table(conn: sqlite3.Connection, table: str) -> str:
    """The sink's own ``CREATE TABLE`` of ``table`` (types, NOT NULL, primary key), made in main."""
    ddl: str
    (ddl,) = conn.execute(
        "SELECT sql FROM sink.sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    head = f'CREATE TABLE "{table}"'
    if not ddl.startswith(head):
        raise RuntimeError(f"unexpected DDL for the sink's {table}: {ddl[:80]}")
    return f'CREATE TABLE main."{table}"' + ddl[len(head) :]


def _iceberg(sink_place: Place, namespace: str) -> dict[str, Any]:
    catalog = open_catalog(sink_place.catalog)
    count, seconds = 0, 0.0
    for identifier in catalog.list_tables(namespace):
        name = identifier[-1]
        if not name.endswith(HISTORY_SUFFIX):
            continue
        history = catalog.load_table(identifier)
        data = history.scan().to_arrow()
        plain = catalog.create_table(
            f"{namespace}.plain_{name}", history.schema(), partition_spec=history.spec()
        )
        seconds += plain_append(plain, data)
        count += data.num_rows
    return {"rows": count, "seconds": seconds}
