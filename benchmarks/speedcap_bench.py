"""Only the capture benchmarks of ``benchmarks.run`` (the Capture and transaction-size memory tables),
each figure beside its references in the same run, plus CPU seconds and rows per CPU-second.

    .venv/bin/python -m benchmarks.speedcap_bench [--size medium] [--out benchmarks/results]

Writes ``<out>/speedcap.json`` and the bulk capture's profiles (``<out>/profiles/capture_bulk.*``),
and prints the markdown rows that go in ``latest.md``'s Capture section. The dev stack must be up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.run import SIZES, Runner, machine
from benchmarks.workload import Workload
from cdc.devstack.connections import StackConnections, default_state_dir


def _row(label: str, rows: int, entry: dict[str, Any]) -> str:
    ours = entry["headwater"]
    cells = [
        label,
        f"{rows:,}",
        f"{ours['rows_per_s']:,.0f}",
        f"{ours.get('rows_per_cpu_s', 0):,.0f}",
        f"{ours['peak_rss_mb']:,.0f}",
        f"{entry['mariadb_binlog']['rows_per_s']:,.0f}",
        f"{entry['library']['rows_per_s']:,.0f}",
        f"{entry['reader_only']['rows_per_s']:,.0f}",
        f"{entry['decode_only']['rows_per_s']:,.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", choices=sorted(SIZES), default="medium")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    runner = Runner(StackConnections.read(default_state_dir()), args.out, size)
    started = time.time()
    result: dict[str, Any] = {"size": args.size, "machine": machine()}
    runner.start(Workload.create(runner.server))
    result["capture"] = runner.capture_section()
    result["memory"] = runner.memory_section()
    result["seconds"] = time.time() - started
    result["load_average_at_end"] = __import__("os").getloadavg()
    (args.out / "speedcap.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    cap = result["capture"]
    print(
        "| workload | rows | Headwater rows/s | rows per CPU-second | peak RSS MiB "
        "| `mariadb-binlog -v` rows/s | python-mysql-replication rows/s | our reader alone rows/s "
        "| our decoder alone (in memory) rows/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(_row("multi-row statements (1000 rows)", size.bulk, cap["bulk"]))
    print(_row("single-row transactions", size.single, cap["single"]))
    for key in ("txn_small", "txn_large"):
        m = result["memory"][key]
        rss, rate = m["peak_rss_mb"], m["rows_per_s"]
        print(f"memory {key}: {m['rows']:,} rows, peak RSS {rss:.0f} MiB, {rate:,.0f} rows/s")
    load = (result["machine"]["load_average_at_start"], result["load_average_at_end"])
    print(f"took {result['seconds']:.0f} s; load average at start {load[0]}, at end {load[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
