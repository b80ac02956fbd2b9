"""SQL sink apply throughput: PostgreSQL (executemany vs COPY path), MariaDB, SQLite, and a plain COPY.

Inserts N rows of a mixed table (bigint key, unsigned bigint, text, decimal, datetime(6), time,
varbinary, int) in batches, as the daemon would, and prints rows/s per target. The plain COPY line is
the floor: the same rows COPYed into an unkeyed PostgreSQL table with no upsert and no bookkeeping.

    .venv/bin/cdc dev up
    .venv/bin/python benchmarks/sink_sql_bench.py [--rows 200000] [--batch 5000] [--targets sqlite,mariadb]

Each line also gives microseconds of this process's CPU per row (the sink's own work; the server's
is not counted), which a loaded shared machine disturbs less than the wall-clock rate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.devstack.connections import StackConnections, default_state_dir
from sinks.contract import AppliedState, SinkBatch
from sinks.sql import SqlSink, SqlSinkSettings

SCHEMA = TableSchema.build(
    TableRef("bench", "mixed"),
    (
        Column("id", "bigint", ArrowType(ArrowKind.INT64), False),
        Column("u64", "bigint unsigned", ArrowType(ArrowKind.UINT64)),
        Column("name", "varchar(64)", ArrowType(ArrowKind.STRING)),
        Column("price", "decimal(12,2)", ArrowType(ArrowKind.DECIMAL, 12, 2)),
        Column("created", "datetime(6)", ArrowType(ArrowKind.TIMESTAMP)),
        Column("dur", "time(6)", ArrowType(ArrowKind.DURATION)),
        Column("blob", "varbinary(32)", ArrowType(ArrowKind.BINARY)),
        Column("qty", "int", ArrowType(ArrowKind.INT32)),
    ),
    ("id",),
)


def make_rows(n: int) -> list[tuple[object, ...]]:
    base = dt.datetime(2024, 1, 1)
    return [
        (i, 2**63 + i, f"item number {i} \u00e9", Decimal(i % 100000) / 100,
         base + dt.timedelta(microseconds=i), dt.timedelta(seconds=i % 86400), i.to_bytes(8, "big"), i % 1000)
        for i in range(n)
    ]  # fmt: skip


def make_batches(rows: list[tuple[object, ...]], size: int) -> list[SinkBatch]:
    batches = []
    for b, start in enumerate(range(0, len(rows), size)):
        txn = Position(Gtid(0, 1, b + 1), "bin.000001", 1000 * (b + 1), 0)
        events = [
            ChangeEvent(Op.CREATE, SCHEMA, (row[0],), None, row, txn.at_row(j), 0, str(txn.gtid))  # type: ignore[arg-type]
            for j, row in enumerate(rows[start : start + size])
        ]
        batches.append(SinkBatch(events, AppliedState(events[-1].position)))
    return batches


CPU_US: dict[str, float] = {}  # label -> this process's CPU microseconds per row


def run_sink(settings: SqlSinkSettings, batches: list[SinkBatch], rows: int, label: str = "") -> float:
    sink = SqlSink(settings)
    sink.open()
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            sink.apply(batch)
        elapsed = time.perf_counter() - started
        CPU_US[label] = 1e6 * (time.process_time() - cpu) / rows
    finally:
        sink.close()
    return rows / elapsed


def plain_copy(url: str, schema: str, data: list[tuple[object, ...]]) -> float:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            f'CREATE TABLE "{schema}".plain (id bigint, u64 numeric(20,0), name varchar(64),'
            " price numeric(12,2), created timestamp(6), dur interval, blob bytea, qty int)"
        ))  # fmt: skip
    engine.dispose()
    return len(data) / copy_rows(url, f'"{schema}".plain', data)


def copy_rows(url: str, table: str, data: list[tuple[object, ...]]) -> float:
    """Seconds to COPY ``data`` into ``table`` (an existing, already-quoted name) in one transaction."""
    engine = sa.create_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:  # type: ignore[attr-defined]
            for row in data:
                copy.write_row(row)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--targets", default="postgresql,mariadb,sqlite")
    args = parser.parse_args()
    targets = set(args.targets.split(","))
    stack = StackConnections.read(default_state_dir())
    data = make_rows(args.rows)
    batches = make_batches(data, args.batch)
    results: list[tuple[str, float]] = []

    if "postgresql" in targets:
        run_postgresql(stack, args.rows, batches, data, results)
    if "mariadb" in targets:
        run_mariadb(stack, args.rows, batches, results)
    if "sqlite" in targets:
        with tempfile.TemporaryDirectory() as tmp:
            settings = SqlSinkSettings(f"sqlite:///{Path(tmp) / 'bench.db'}", "bench")
            results.append(
                ("sqlite executemany", run_sink(settings, batches, args.rows, "sqlite executemany"))
            )

    print(f"\n{args.rows} rows, batches of {args.batch}, 8 mixed columns, inserts (upsert path)")
    print(f"{'target':34} {'rows/s':>10} {'CPU us/row':>10}")
    for label, rate in results:
        print(f"{label:34} {rate:>10,.0f} {CPU_US.get(label, 0.0):>10.1f}")


def run_postgresql(
    stack: StackConnections,
    rows: int,
    batches: list[SinkBatch],
    data: list[tuple[object, ...]],
    results: list[tuple[str, float]],
) -> None:
    pg_url = stack.postgres.sqlalchemy_url()
    admin = sa.create_engine(pg_url)
    for label, threshold in (("postgresql executemany", None), ("postgresql COPY path", 1000)):
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            settings = SqlSinkSettings(pg_url, "bench", schema=schema, copy_threshold_rows=threshold)
            results.append((label, run_sink(settings, batches, rows, label)))
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        results.append(("postgresql plain COPY (floor)", plain_copy(pg_url, schema, data)))
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def run_mariadb(
    stack: StackConnections, rows: int, batches: list[SinkBatch], results: list[tuple[str, float]]
) -> None:
    m = stack.mariadb
    root = f"mysql+pymysql://{m.root_user}:{m.root_password}@{m.host}:{m.port}/"
    database = f"bench_{uuid.uuid4().hex[:8]}"
    madmin = sa.create_engine(root)
    with madmin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{database}`"))
    try:
        settings = SqlSinkSettings(f"{root}{database}?charset=utf8mb4", "bench")
        results.append(("mariadb executemany", run_sink(settings, batches, rows, "mariadb executemany")))
    finally:
        with madmin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE `{database}`"))
    madmin.dispose()


if __name__ == "__main__":
    main()
