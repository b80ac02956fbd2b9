"""Cost of one commit to a history table as its snapshots pile up:
``python -m benchmarks.iceberg_commit_bench [COMMITS] [--all]``.

A history table keeps a snapshot per commit, and pyiceberg 0.12 deep-copies the table's metadata,
snapshot list included, each time a transaction reads it (about 20 times per append), so each
commit costs more than the one before. sinks/iceberg/pyiceberg_speed.py caches that read, and
sinks/iceberg/pyiceberg_metadata_copy.py drops the deep copy that ends each build of the metadata.
Variants, alternated three times in one run on identical local SQL-catalog tables (1000-row
appends): with the cache, and with the cache and no deep copy (``--all``: pyiceberg as released
too). Prints the mean CPU time per commit over each quarter of the COMMITS (default 200); nothing is
asserted (speed is measured, not tested).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

QUARTERS = 4


def _one(variant: str, commits: int, where: Path) -> list[float]:
    from pyiceberg.catalog.sql import SqlCatalog

    if variant in ("cached", "shallow"):
        from sinks.iceberg import pyiceberg_metadata_copy  # importing sinks.iceberg installs both

        if variant == "cached":  # pyiceberg's own update_table_metadata back
            pyiceberg_metadata_copy.uninstall()
    catalog = SqlCatalog("bench", uri=f"sqlite:///{where}/catalog.db", warehouse=(where / "wh").as_uri())
    catalog.create_namespace("n")
    table = catalog.create_table("n.t", schema=pa.schema([("id", pa.int64()), ("v", pa.string())]))
    data = pa.table({"id": pa.array(range(1000), pa.int64()), "v": pa.array(["x"] * 1000)})
    cpu: list[float] = []
    for i in range(commits):
        started = time.process_time()
        table.append(data, snapshot_properties={"headwater.position": f"p{i}"})
        cpu.append(time.process_time() - started)
    return cpu


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--variant":  # a child: one variant in a fresh process
        commits, where = int(sys.argv[3]), Path(sys.argv[4])
        print(" ".join(f"{c:.6f}" for c in _one(sys.argv[2], commits, where)))
        return
    counts = [a for a in sys.argv[1:] if a.isdigit()]
    commits = int(counts[0]) if counts else 200
    quarter = commits // QUARTERS
    load = os.getloadavg()[0]
    print(f"{commits} commits of 1000 rows to one table; mean CPU ms per commit (load {load:.1f})")
    heads = " | ".join(f"commits {q * quarter + 1}-{(q + 1) * quarter}" for q in range(QUARTERS))
    print(f"| variant | {heads} |")
    print(f"|---|{'---:|' * QUARTERS}")
    variants = ("pyiceberg", "cached", "shallow") if "--all" in sys.argv else ("cached", "shallow")
    for variant in variants * 3:
        with tempfile.TemporaryDirectory(prefix="hw-commit-bench-") as scratch:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.iceberg_commit_bench",
                    "--variant",
                    variant,
                    str(commits),
                    scratch,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        cpu = [float(x) for x in out.split()]
        means = [1000 * sum(cpu[q * quarter : (q + 1) * quarter]) / quarter for q in range(QUARTERS)]
        print(f"| {variant} | {' | '.join(f'{m:.0f}' for m in means)} |")


if __name__ == "__main__":
    main()
