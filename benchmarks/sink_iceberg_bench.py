"""Iceberg history sink throughput: change events applied per second, next to a plain pyiceberg append.

A 200k-row mixed table (bigint key, varchar, decimal(12,2), datetime, double, int, nullable text),
70% inserts, 20% updates, 10% deletes, in 1000-event batches, ``commit_rows`` 100k, into a SQLite
catalog on local disk. Measured:

- ``sink apply + flush``: ``IcebergHistorySink.apply`` for every batch plus the final ``flush`` (Python
  rows to Arrow, partitioning by day, Parquet writes, two commits with their progress snapshots);
- ``blocked on commits``: time the applying thread waited for the background committer;
- ``committer thread busy``: time spent writing Parquet and committing (overlaps conversion);
- ``plain append``: ``table.append`` of the same 200k rows, already as one Arrow table, into a table
  of the same schema and partitioning (what pyiceberg costs on its own).

Run: ``.venv/bin/python -m benchmarks.sink_iceberg_bench [--rows N] [--commit-rows N]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import gc
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.table import Table

from cdc.config.models import IcebergSinkConfig
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from sinks.contract import AppliedState, SinkBatch
from sinks.iceberg import IcebergHistorySink, read_history
from sinks.iceberg.catalogs import open_catalog
from sinks.iceberg.history_schema import history_iceberg_schema, history_partition_spec

SCHEMA = TableSchema.build(
    TableRef("bench", "orders"),
    (
        Column("id", "bigint", ArrowType(ArrowKind.INT64), False),
        Column("customer", "varchar(64)", ArrowType(ArrowKind.STRING)),
        Column("amount", "decimal(12,2)", ArrowType(ArrowKind.DECIMAL, 12, 2)),
        Column("created", "datetime(6)", ArrowType(ArrowKind.TIMESTAMP)),
        Column("score", "double", ArrowType(ArrowKind.FLOAT64)),
        Column("qty", "int", ArrowType(ArrowKind.INT32)),
        Column("note", "text", ArrowType(ArrowKind.STRING)),
    ),
    ("id",),
)
T0_MS = 1_700_000_000_000


def make_batches(rows: int, per_batch: int = 1000) -> list[SinkBatch]:
    rnd = random.Random(7)
    base = Position(Gtid(0, 1, 1), "bin.000001", 4, 0)
    created = dt.datetime(2024, 1, 1)
    live: list[int] = []
    batches: list[SinkBatch] = []
    events: list[ChangeEvent] = []
    next_id = 1
    for i in range(rows):
        r = rnd.random()
        position = Position(
            Gtid(0, 1, 1 + i // per_batch), "bin.000001", 4 + 1000 * (i // per_batch), i % per_batch
        )
        if r < 0.7 or len(live) < 10:
            key = next_id
            next_id += 1
            live.append(key)
            op = Op.CREATE
        else:
            key = live[rnd.randrange(len(live))]
            op = Op.UPDATE if r < 0.9 else Op.DELETE
        image = (
            key,
            f"customer-{key % 5000}",
            decimal.Decimal(rnd.randrange(10**7)) / 100,
            created + dt.timedelta(seconds=i),
            rnd.random(),
            rnd.randrange(1000),
            None if i % 3 else "some note text",
        )
        after = None if op is Op.DELETE else image
        before = image if op is not Op.CREATE else None
        events.append(
            ChangeEvent(
                op, SCHEMA, (key,), before, after, position, T0_MS + i * 10, f"0-1-{1 + i // per_batch}"
            )
        )
        if len(events) == per_batch:
            batches.append(SinkBatch(events, AppliedState(events[-1].position)))
            events = []
    if events:
        batches.append(SinkBatch(events, AppliedState(events[-1].position)))
    del base
    return batches


def run(rows: int, commit_rows: int) -> None:
    batches = make_batches(rows)
    total = sum(len(b.records) for b in batches)
    # a daemon holds one batch at a time; here every event is built up front, and the cyclic GC
    # would walk all of them on every collection: keep them out of its way
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory() as tmp:
        catalog_props = {
            "type": "sql",
            "uri": f"sqlite:///{tmp}/catalog.db",
            "warehouse": str(Path(tmp) / "wh"),
        }
        config = IcebergSinkConfig(
            catalog=catalog_props, namespace="bench", commit_rows=commit_rows, commit_seconds=3600
        )
        sink = IcebergHistorySink(config, "bench")
        sink.open()
        waited = 0.0  # the applying thread blocked on a commit
        writing = 0.0  # the committer thread busy (overlaps the next rows' conversion)
        original_wait, original_write = sink._wait_for_commit, sink._write

        def timed_wait() -> None:
            nonlocal waited
            started = time.perf_counter()
            original_wait()
            waited += time.perf_counter() - started

        def timed_write(*args: Any) -> AppliedState:
            nonlocal writing
            started = time.perf_counter()
            state = original_write(*args)
            writing += time.perf_counter() - started
            return state

        sink._wait_for_commit = timed_wait  # type: ignore[method-assign]
        sink._write = timed_write  # type: ignore[method-assign,assignment]
        started = time.perf_counter()
        for batch in batches:
            sink.apply(batch)
        sink.flush()
        sink_seconds = time.perf_counter() - started
        sink.close()

        history = read_history(catalog_props, "bench", "bench.orders").rows
        assert history.num_rows == total, (history.num_rows, total)

        catalog = open_catalog(catalog_props)
        schema = history_iceberg_schema(SCHEMA)
        plain = catalog.create_table("bench.plain", schema, partition_spec=history_partition_spec(schema))
        from sinks.iceberg.history_schema import arrow_schema_of
        from sinks.iceberg.table_writer import align_to

        data = align_to(history, arrow_schema_of(schema))
        plain_seconds = plain_append(plain, data)

    print(f"{total} change events, commit_rows {commit_rows}, {len(batches)} batches of 1000")
    print(f"{'path':<28}{'seconds':>10}{'rows/s':>12}")
    print(f"{'sink apply + flush':<28}{sink_seconds:>10.2f}{total / sink_seconds:>12,.0f}")
    print(f"{'  blocked on commits':<28}{waited:>10.2f}{'':>12}")
    print(f"{'  committer thread busy':<28}{writing:>10.2f}{'':>12}")
    print(f"{'plain pyiceberg append':<28}{plain_seconds:>10.2f}{total / plain_seconds:>12,.0f}")


def plain_append(table: Table, data: pa.Table) -> float:
    """Seconds for one pyiceberg ``append`` of an Arrow table: what pyiceberg costs on its own."""
    started = time.perf_counter()
    table.append(data)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--commit-rows", type=int, default=100_000)
    args = parser.parse_args()
    run(args.rows, args.commit_rows)


if __name__ == "__main__":
    main()
