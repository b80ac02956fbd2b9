"""Cost of a retention run on the Iceberg history: ``python benchmarks/retention_bench.py [ROWS]``.

A history table of ROWS changes (default 1M) spread evenly over 200 days, written in 10 commits
(so 10 files per day, as a sink committing through the day leaves before compaction), then a
90-day retention. Two variants on identical tables:

- pyiceberg alone: ``delete`` with the filter, then ``expire_snapshots`` of every older snapshot;
  what is left on disk is what an operator would have without Headwater's file removal;
- ``apply_retention`` (sinks/iceberg/retention.py): delete, seal, expire, remove the files.

Prints the time and the warehouse's size and file count before and after; nothing is asserted
(DESIGN.md: speed is measured, not tested).
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from cdc.config.models import IcebergSinkConfig
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from sinks.contract import AppliedState, SinkBatch
from sinks.iceberg import create_iceberg_sink
from sinks.iceberg.catalogs import open_catalog
from sinks.iceberg.history_schema import SOURCE_TS, arrow_schema_of
from sinks.iceberg.retention import apply_retention
from sinks.iceberg.snapshot_state import state_properties, stored_state

DAYS = 200
COMMITS = 10
KEEP = dt.timedelta(days=90)
SCHEMA = TableSchema.build(
    TableRef("app", "users"),
    (
        Column("id", "int", ArrowType(ArrowKind.INT64), nullable=False),
        Column("email", "varchar(100)", ArrowType(ArrowKind.STRING)),
        Column("note", "text", ArrowType(ArrowKind.STRING)),
    ),
    ("id",),
)


def _position(seq: int) -> Position:
    return Position(Gtid(0, 1, seq), "bin.000001", 4 + seq, 0)


def _build(home: Path, rows: int, now: dt.datetime) -> tuple[IcebergSinkConfig, str]:
    config = IcebergSinkConfig(
        catalog={"type": "sql", "uri": f"sqlite:///{home}/catalog.db", "warehouse": str(home / "wh")},
        namespace="hist",
        commit_rows=1_000_000,
    )
    sink = create_iceberg_sink(config, "bench")
    sink.open()
    first = ChangeEvent(Op.CREATE, SCHEMA, (0,), None, (0, "a", "b"), _position(1), 0, "0-1-1")
    sink.apply(SinkBatch([first], AppliedState(_position(1))))
    sink.close()  # the table exists with the sink's properties; the bulk goes in by plain appends
    table = open_catalog(config.catalog).load_table("hist.users__history")
    target = arrow_schema_of(table.schema())
    per_commit = rows // COMMITS
    start = now - dt.timedelta(days=DAYS)
    seq = 1
    for commit in range(COMMITS):
        ids = range(commit * per_commit, (commit + 1) * per_commit)
        step = 86_400 * DAYS / per_commit  # every commit spans all the days, as a day's commits do
        ts = [start + dt.timedelta(seconds=n * step) for n in range(per_commit)]
        positions = [_position(seq + n).to_string() for n in range(per_commit)]
        seq += per_commit
        data = pa.table(
            {
                "id": pa.array(list(ids), pa.int64()),
                "email": [f"user{i}@example.org" for i in ids],
                "note": ["a note " * 8] * per_commit,
                "_op": ["c"] * per_commit,
                "_position": positions,
                SOURCE_TS: pa.array(ts, pa.timestamp("us", tz="UTC")),
                "_txn": [f"0-1-{i}" for i in ids],
            }
        ).sort_by(SOURCE_TS)
        state = AppliedState(_position(seq - 1))
        table.append(
            data.select(target.names).cast(target), snapshot_properties=state_properties("bench", state)
        )
    return config, "hist.users__history"


def _disk(home: Path) -> tuple[int, int]:
    files = [p for p in (home / "wh").rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    now = dt.datetime.now(dt.UTC)
    where = f"{SOURCE_TS} < '{(now - KEEP).isoformat()}'"
    for variant in ("pyiceberg delete + expire_snapshots", "apply_retention"):
        with tempfile.TemporaryDirectory(prefix="retention-bench-") as tmp:
            home = Path(tmp)
            t0 = time.perf_counter()
            config, identifier = _build(home, rows, now)
            built = time.perf_counter() - t0
            files0, bytes0 = _disk(home)
            table = open_catalog(config.catalog).load_table(identifier)
            t0 = time.perf_counter()
            if variant == "apply_retention":
                result = apply_retention(table, identifier, "bench", KEEP, now)
                deleted = result.rows_deleted
            else:
                deleted = table.scan(row_filter=where).count()
                state = stored_state(table)
                assert state is not None
                table.delete(where, snapshot_properties=state_properties("bench", state))
                table.refresh()
                current = table.current_snapshot()
                assert current is not None
                old = [
                    s.snapshot_id for s in table.metadata.snapshots if s.snapshot_id != current.snapshot_id
                ]
                table.maintenance.expire_snapshots().by_ids(old).commit()
            took = time.perf_counter() - t0
            files1, bytes1 = _disk(home)
            print(
                f"{variant}: {rows} rows over {DAYS} days in {COMMITS} commits (built in {built:.1f}s); "
                f"{deleted} rows older than {KEEP.days} days deleted in {took:.2f}s "
                f"({deleted / took:,.0f} rows/s); warehouse {files0} files {bytes0 / 2**20:.1f} MiB -> "
                f"{files1} files {bytes1 / 2**20:.1f} MiB"
            )


if __name__ == "__main__":
    main()
