"""What one small history-table commit costs as the table's snapshot count grows (icesnap).

A local SQL catalog (SQLite) and warehouse in a temp dir, pyiceberg as the sink uses it
(``pyiceberg_speed`` installed). For each snapshot count N the table is brought to N snapshots, then
``--reps`` 10-row appends with the sink's summary properties are timed (process CPU and wall, the
median reported) and the current metadata JSON's size is read.

Two ways to reach N snapshots:
- ``real``: N tiny appends, as the sink makes them (each adds a snapshot AND a manifest to the
  current snapshot's manifest list); slow for large N, since each append costs more than the last.
- ``cloned``: one real append, then its snapshot cloned N - 1 times into a parent chain written as a
  new metadata JSON and registered in the catalog: the snapshot list (and snapshot log) grows, the
  current manifest list does not. Isolates the snapshot-count part of the cost; fast for any N.
``--expire`` also measures, after the largest ``real`` N, the commit once maintenance's expiry
(``maintain``'s ``_expirable`` + ``expire_removing_files``, retain 5) has run: what expiry gives back.

Run: ``taskset -c 1 python -m benchmarks.iceberg_snapshot_cost --mode cloned --counts 10,100,1000,3000``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.serializers import ToOutputFile
from pyiceberg.table import Table
from pyiceberg.table.refs import SnapshotRef
from pyiceberg.table.snapshots import Snapshot, SnapshotLogEntry

from sinks.iceberg import pyiceberg_speed
from sinks.iceberg.retention import expire_removing_files

ROWS = 10


@dataclass(frozen=True, slots=True)
class Point:
    mode: str
    snapshots: int
    manifests: int  # in the current snapshot's manifest list
    metadata_kib: float
    cpu_ms: float  # median over reps
    wall_ms: float
    cpu_ms_all: tuple[float, ...]


def _rows(seq: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(seq * ROWS, seq * ROWS + ROWS), pa.int64()),
            "v": pa.array([f"value {i}" for i in range(ROWS)], pa.string()),
        }
    )


def _properties(seq: int) -> dict[str, str]:  # what the sink writes into every snapshot summary
    return {
        "headwater.pipeline": "bench",
        "headwater.position": f"mdb1:0-1-{seq:012d}:bin.000001:{seq:012d}:0",
        "headwater.offsets": json.dumps({f"hist.t:{p}": seq * 1000 + p for p in range(3)}),
    }


def _catalog(root: Path) -> SqlCatalog:
    catalog = SqlCatalog("bench", uri=f"sqlite:///{root}/catalog.db", warehouse=(root / "wh").as_uri())
    catalog.create_namespace("bench")
    return catalog


def _clone(catalog: SqlCatalog, table: Table, count: int, name: str) -> Table:
    """A new table whose metadata holds ``count`` snapshots: the current one cloned into a chain."""
    metadata = table.metadata
    one = table.current_snapshot()
    assert one is not None
    snapshots: list[Snapshot] = []
    log: list[SnapshotLogEntry] = []
    parent = None
    t0 = one.timestamp_ms - count * 30_000  # one commit every 30 s, as commit_seconds
    for i in range(count):
        sid = one.snapshot_id + i + 1 if i < count - 1 else one.snapshot_id
        snap = one.model_copy(
            update={
                "snapshot_id": sid,
                "parent_snapshot_id": parent,
                "sequence_number": i + 1,
                "timestamp_ms": t0 + i * 30_000 if i < count - 1 else one.timestamp_ms,
            }
        )
        snapshots.append(snap)
        log.append(SnapshotLogEntry.model_validate({"snapshot-id": sid, "timestamp-ms": snap.timestamp_ms}))
        parent = sid
    cloned = metadata.model_copy(
        update={
            "snapshots": snapshots,
            "snapshot_log": log,
            "current_snapshot_id": one.snapshot_id,
            "last_sequence_number": count,
            "refs": {"main": SnapshotRef.model_validate({"snapshot-id": one.snapshot_id, "type": "branch"})},
        }
    )
    location = f"{metadata.location}/metadata/cloned-{count}.metadata.json"
    ToOutputFile.table_metadata(cloned, table.io.new_output(location), overwrite=True)
    return catalog.register_table(("bench", name), location)


def _measure(table: Table, mode: str, reps: int, seq: int) -> tuple[Point, int]:
    cpu: list[float] = []
    wall: list[float] = []
    snapshots = len(table.metadata.snapshots)
    for _ in range(reps):
        seq += 1
        data = _rows(seq)
        c0, w0 = time.process_time(), time.perf_counter()
        table.append(data, snapshot_properties=_properties(seq))
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    current = table.current_snapshot()
    assert current is not None
    manifests = len(current.manifests(table.io))
    size = os.path.getsize(table.metadata_location.removeprefix("file://"))
    point = Point(
        mode,
        snapshots,
        manifests,
        round(size / 1024, 1),
        round(statistics.median(cpu), 2),
        round(statistics.median(wall), 2),
        tuple(round(c, 2) for c in cpu),
    )
    return point, seq


def run(mode: str, counts: list[int], reps: int, expire: bool) -> list[Point]:
    pyiceberg_speed.install()
    points: list[Point] = []
    with tempfile.TemporaryDirectory(prefix="icesnap_") as tmp:
        catalog = _catalog(Path(tmp))
        schema = _rows(0).schema
        table = catalog.create_table(("bench", "real"), schema=schema)
        seq = 0
        if mode == "cloned":
            seq += 1
            table.append(_rows(seq), snapshot_properties=_properties(seq))
            for count in counts:
                cloned = _clone(catalog, table, count, f"cloned_{count}")
                point, seq = _measure(cloned, mode, reps, seq)
                points.append(point)
                print(json.dumps(asdict(point)), flush=True)
            return points
        for count in sorted(counts):
            while len(table.metadata.snapshots) < count:
                seq += 1
                table.append(_rows(seq), snapshot_properties=_properties(seq))
            point, seq = _measure(table, mode, reps, seq)
            points.append(point)
            print(json.dumps(asdict(point)), flush=True)
        if expire:
            future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
            from sinks.iceberg.maintenance import _expirable

            c0, w0 = time.process_time(), time.perf_counter()
            removed = expire_removing_files(table, _expirable(table, future, 5))
            print(
                "expiry (down to 5 snapshots): "
                f"{time.process_time() - c0:.2f} s CPU, {time.perf_counter() - w0:.2f} s wall, "
                f"{removed.files} files removed",
                flush=True,
            )
            point, seq = _measure(table, "real+expired", reps, seq)
            points.append(point)
            print(json.dumps(asdict(point)), flush=True)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("real", "cloned"), default="cloned")
    parser.add_argument("--counts", default="10,100,1000,3000")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--expire", action="store_true")
    parser.add_argument("--json", type=Path, help="write the points here too")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    points = run(args.mode, counts, args.reps, args.expire)
    if args.json:
        args.json.write_text(json.dumps([asdict(p) for p in points], indent=1) + "\n")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
