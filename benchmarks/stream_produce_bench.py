"""Produce throughput of KafkaStreamWriter to a real broker, and its memory on a huge transaction.

Run against the dev stack (``cdc dev up``)::

    .venv/bin/python -m benchmarks.stream_produce_bench --events 1000000 --rows-per-txn 1000000
    .venv/bin/python -m benchmarks.stream_produce_bench --events 500000 --rows-per-txn 10

Writes ``--events`` row changes of a typical 8-column table in source transactions of
``--rows-per-txn`` rows, committing a Kafka transaction (with its checkpoint) every
``--commit-every`` source transactions. Prints one JSON line: events/s, seconds, and peak RSS before
and after (``ru_maxrss``) and the current RSS sampled every 20k records during the run, whose
growth over its value at the start is what the run itself needed. The integration test of a
1M-row transaction runs this module in a child process so that the peak is its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import resource
import sys
import time
import uuid
from collections.abc import Iterator

from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream import KafkaStreamWriter

SCHEMA = TableSchema.build(
    TableRef("bench", "orders"),
    (
        Column("id", "bigint unsigned", ArrowType(ArrowKind.UINT64), False),
        Column("account_id", "int", ArrowType(ArrowKind.INT32)),
        Column("title", "varchar", ArrowType(ArrowKind.STRING)),
        Column("amount", "decimal(12,2)", ArrowType(ArrowKind.DECIMAL, 12, 2)),
        Column("score", "double", ArrowType(ArrowKind.FLOAT64)),
        Column("active", "tinyint", ArrowType(ArrowKind.INT8)),
        Column("created_at", "datetime(6)", ArrowType(ArrowKind.TIMESTAMP)),
        Column("updated_at", "timestamp", ArrowType(ArrowKind.TIMESTAMP_UTC)),
    ),
    ("id",),
)


def source(events: int, rows_per_txn: int) -> Iterator[ChangeEvent | TransactionEnd]:
    """Row changes generated on the fly: nothing proportional to ``events`` is ever held."""
    created = dt.datetime(2024, 5, 1, 12, 30, 15, 123456)
    updated = dt.datetime(2024, 5, 2, 8, 0, 0, tzinfo=dt.UTC)
    amount = decimal.Decimal("1234.50")
    seq, done = 0, 0
    while done < events:
        seq += 1
        start = Position(Gtid(0, 1, seq), "mysql-bin.000001", 4 + seq)
        rows = min(rows_per_txn, events - done)
        gtid = f"0-1-{seq}"
        for i in range(rows):
            row_id = done + i
            after = (row_id, row_id % 1000, f"order number {row_id}", amount, 0.75, 1, created, updated)
            yield ChangeEvent(Op.CREATE, SCHEMA, (row_id,), None, after, start.at_row(i), 1714560000000, gtid)
        done += rows
        yield TransactionEnd(gtid, start.at_row(rows - 1), rows, 1714560000000)


def current_rss_mb() -> float:
    """Resident set size now (Linux /proc), unlike ru_maxrss which is the process's all-time peak."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run(
    bootstrap: str, events: int, rows_per_txn: int, commit_every: int, pipeline: str, compression: str = ""
) -> dict[str, object]:
    properties = {"compression.type": compression} if compression else {}
    config = KafkaStreamConfig(bootstrap_servers=bootstrap, partitions=1, properties=properties)
    writer = KafkaStreamWriter(config, pipeline, 1)
    writer.start()
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_start_mb = rss_peak_mb = current_rss_mb()
    started = time.perf_counter()
    writer.begin()
    pending = 0
    last_end: TransactionEnd | None = None
    for n, record in enumerate(source(events, rows_per_txn)):
        writer.write(record)
        if n % 20_000 == 0:
            rss_peak_mb = max(rss_peak_mb, current_rss_mb())
        if isinstance(record, TransactionEnd):
            pending += 1
            last_end = record
            if pending >= commit_every:
                writer.commit(record.restart)
                writer.begin()
                pending = 0
    if pending and last_end is not None:
        writer.commit(last_end.restart)
    else:
        writer.abort()
    seconds = time.perf_counter() - started
    rss_after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    writer.close()
    return {
        "pipeline": pipeline,
        "events": events,
        "rows_per_txn": rows_per_txn,
        "compression": compression or "lz4 (default)",
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds),
        "peak_rss_before_mb": round(rss_before_kb / 1024, 1),
        "peak_rss_after_mb": round(rss_after_kb / 1024, 1),
        "peak_rss_growth_mb": round((rss_after_kb - rss_before_kb) / 1024, 1),
        "rss_at_start_mb": round(rss_start_mb, 1),
        "rss_sampled_peak_mb": round(rss_peak_mb, 1),
        "rss_sampled_growth_mb": round(rss_peak_mb - rss_start_mb, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rows-per-txn", type=int, default=100)
    parser.add_argument("--commit-every", type=int, default=100, help="source transactions per Kafka one")
    parser.add_argument("--pipeline", default=f"bench{uuid.uuid4().hex[:8]}")
    parser.add_argument("--compression", default="", help="override compression.type (lz4, zstd, none)")
    args = parser.parse_args(argv)
    result = run(
        args.bootstrap, args.events, args.rows_per_txn, args.commit_every, args.pipeline, args.compression
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
