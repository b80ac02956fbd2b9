"""Commit CPU of a history table under sustained small commits, before and after the bound (icemani).

Each round runs, in a fresh process and a fresh local SQL catalog (SQLite) and warehouse, ``--commits``
10-row appends with the sink's summary properties to one table partitioned by day as history tables
are, and records each commit's process CPU. Two variants, alternated round by round:

- ``base``: as before: fast append (one manifest more per commit), no expiry between commits (the
  daemon's hourly, age-based expiry never comes within a burst shorter than an hour).
- ``bound``: the history tables' manifest merge properties and the sink's snapshot cap
  (``SnapshotBound(--max-snapshots)``, run after each commit as the sink's committer does; its
  expiry's CPU, including the removal of expired files, is counted in the commit that triggers it).

Printed per variant: the median over rounds of the mean CPU per commit in each tenth of the run, the
last tenth's p50/p99/max, and the manifests and snapshots held at the end.

Run: ``taskset -c 1 python -m benchmarks.iceberg_sustained_commits --commits 1000 --rounds 5``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROWS = 10
TENTHS = 10


def _rows(seq: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(seq * ROWS, seq * ROWS + ROWS), pa.int64()),
            "v": pa.array([f"value {i}" for i in range(ROWS)], pa.string()),
            "_source_ts": pa.array([1_764_547_200_000_000 + seq] * ROWS, pa.timestamp("us", tz="UTC")),
        }
    )


def _properties(seq: int) -> dict[str, str]:  # what the sink writes into every snapshot summary
    return {
        "headwater.pipeline": "bench",
        "headwater.position": f"mdb1:0-1-{seq:012d}:bin.000001:{seq:012d}:0",
        "headwater.offsets": json.dumps({f"hist.t:{p}": seq * 1000 + p for p in range(3)}),
    }


def one_round(variant: str, commits: int, max_snapshots: int) -> dict[str, object]:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import DayTransform
    from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

    from sinks.iceberg import pyiceberg_speed
    from sinks.iceberg.history_schema import MANIFEST_MERGE_PROPERTIES
    from sinks.iceberg.snapshot_bound import SnapshotBound

    pyiceberg_speed.install()
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "v", StringType(), required=False),
        NestedField(3, "_source_ts", TimestamptzType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=3, field_id=1000, transform=DayTransform(), name="d"))
    with tempfile.TemporaryDirectory(prefix="icemani_") as tmp:
        root = Path(tmp)
        catalog = SqlCatalog("bench", uri=f"sqlite:///{root}/catalog.db", warehouse=(root / "wh").as_uri())
        catalog.create_namespace("bench")
        properties = dict(MANIFEST_MERGE_PROPERTIES) if variant == "bound" else {}
        table = catalog.create_table(
            ("bench", "t"), schema=schema, partition_spec=spec, properties=properties
        )
        bound = SnapshotBound(max_snapshots) if variant == "bound" else None
        cpu: list[float] = []
        most_manifests = 0
        for seq in range(1, commits + 1):
            data = _rows(seq)
            c0 = time.process_time()
            table.append(data, snapshot_properties=_properties(seq))
            if bound is not None:
                bound.after_commit([("bench.t", table)])
            cpu.append((time.process_time() - c0) * 1000)
            if seq % 50 == 0:
                current = table.current_snapshot()
                assert current is not None
                most_manifests = max(most_manifests, len(current.manifests(table.io)))
        current = table.current_snapshot()
        assert current is not None
        return {
            "variant": variant,
            "cpu_ms": cpu,
            "manifests": len(current.manifests(table.io)),
            "most_manifests": most_manifests,
            "snapshots": len(table.metadata.snapshots),
            "rows": table.scan().count(),
        }


def _summary(rounds: list[dict[str, object]]) -> dict[str, object]:
    tenths: list[list[float]] = []
    for r in rounds:
        cpu = r["cpu_ms"]
        assert isinstance(cpu, list)
        n = len(cpu) // TENTHS
        tenths.append([statistics.fmean(cpu[i * n : (i + 1) * n]) for i in range(TENTHS)])
    last = [sorted(r["cpu_ms"][-(len(r["cpu_ms"]) // TENTHS) :]) for r in rounds]  # type: ignore[index,arg-type]
    return {
        "rounds": len(rounds),
        "mean_ms_per_tenth_median": [
            round(statistics.median(t[i] for t in tenths), 1) for i in range(TENTHS)
        ],
        "last_tenth_mean_ms_each_round": [round(t[-1], 1) for t in tenths],
        "last_tenth_p50_ms": round(statistics.median(statistics.median(x) for x in last), 1),
        "last_tenth_max_ms": round(max(x[-1] for x in last), 1),
        "whole_run_cpu_s_each_round": [round(sum(r["cpu_ms"]) / 1000, 1) for r in rounds],  # type: ignore[arg-type]
        "manifests_end": [r["manifests"] for r in rounds],
        "most_manifests": [r["most_manifests"] for r in rounds],
        "snapshots_end": [r["snapshots"] for r in rounds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-snapshots", type=int, default=250)
    parser.add_argument("--variants", default="base,bound")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: run this variant once
    parser.add_argument("--json", type=Path, help="write every round's numbers here")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_round(args.one, args.commits, args.max_snapshots)))
        return
    results: dict[str, list[dict[str, object]]] = {v: [] for v in args.variants.split(",")}
    for i in range(args.rounds):
        for variant in results:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.iceberg_sustained_commits",
                    "--one",
                    variant,
                    "--commits",
                    str(args.commits),
                    "--max-snapshots",
                    str(args.max_snapshots),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            assert result["rows"] == args.commits * ROWS, result["rows"]
            results[variant].append(result)
            print(
                f"round {i + 1} {variant}: {sum(result['cpu_ms']) / 1000:.1f} s CPU, "
                f"{result['manifests']} manifests, {result['snapshots']} snapshots, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    summary = {v: _summary(r) for v, r in results.items()}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rounds": results}) + "\n")


if __name__ == "__main__":
    main()
