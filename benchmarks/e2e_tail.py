"""Which stall made each end-to-end run's tail: reads `benchmarks.e2e` result files (JSON on stdout)
and sorts every change over 100 ms by what its episode's window held (benchmarks/e2e_stalls.py):

- ``disk``: the fsync probe saw an fsync of DISK_MS or more overlapping the episode;
- ``cpu``: the pipeline's processes (both daemons, the broker, MariaDB, PostgreSQL) waited for a core
  at least STARVED times as long as they ran (schedstat's run-queue wait);
- ``gc``: a collection of GC_MS or more in either daemon;
- ``ours``: none of those: the pipeline's own work or waits (the episode's largest hop names it).

    python -m benchmarks.e2e_tail /tmp/run1.json /tmp/run2.json
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

DISK_MS = 100.0
STARVED = 2.0
GC_MS = 10.0
PIPELINE = ("cdc_run", "cdc_sink", "kafka", "mariadb", "postgres")


def causes(episode: dict[str, Any]) -> list[str]:
    during = episode.get("during") or {}
    found = []
    if float(during.get("slowest_fsync_ms", 0.0)) >= DISK_MS:
        found.append("disk")
    cpu = sum(float(during[p]["cpu_ms"]) for p in PIPELINE if p in during)
    wait = sum(float(during[p]["runq_wait_ms"]) for p in PIPELINE if p in during)
    if cpu > 0 and wait >= STARVED * cpu:
        found.append("cpu")
    if any(float(v["ms"]) >= GC_MS for k, v in during.items() if k.startswith("gc_")):
        found.append("gc")
    if not found:
        hops = episode.get("mean_hops_ms") or {}
        found.append("ours:" + (max(hops, key=hops.get) if hops else "?"))
    return found


def summary(result: dict[str, Any]) -> dict[str, Any]:
    episodes = result.get("parts", {}).get("episodes", [])
    slow = sum(int(e["changes"]) for e in episodes)
    by: Counter[str] = Counter()
    for episode in episodes:
        by["+".join(causes(episode))] += int(episode["changes"])
    largest = episodes[0] if episodes else None
    return {
        "p50_ms": round(float(result.get("p50_s", 0.0)) * 1000, 1),
        "p99_ms": round(float(result.get("p99_s", 0.0)) * 1000, 1),
        "load": result.get("loadavg"),
        "changes_over_100ms": slow,
        "share_by_cause": {k: round(v / max(slow, 1), 3) for k, v in by.most_common()},
        "largest": None if largest is None else {"changes": largest["changes"], "causes": causes(largest)},
    }


def main(argv: list[str] | None = None) -> int:
    for name in argv if argv is not None else sys.argv[1:]:
        print(name, json.dumps(summary(json.loads(Path(name).read_text()))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
