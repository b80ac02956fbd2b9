"""speedsink_bench with each child's per-batch timing lines kept, and the hand-off between batches.

    .venv/bin/python -m benchmarks.sink_handoff_bench [speedsink_bench's arguments] --out FILE.json

Runs :mod:`benchmarks.speedsink_bench` (its children, trees and rounds unchanged) with
``HEADWATER_SINK_TIMING=1`` and a handler that writes each child's ``cdc.sink.timing`` lines to a
file of its own, then adds to every child's entry of the JSON, from those lines: ``gap_ms`` (median
over the batches handed before the previous one was done of started(N+1) - done(N): how long the
sink thread took to take a ready batch up), ``gap_sum_s`` (their sum over the run), ``pickup_ms``
(median started - handed) and ``batches``. The timing lines are those `cdc sink` writes
(cdc/daemon/sink_runner.py). Only the apply from Kafka: not with --embedded or --reference.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import benchmarks.speedsink_bench as speedsink
from benchmarks.tasks import TARGETS

# the child speedsink_bench runs, with the timing lines sent to $HW_TIMING_DIR/<pid>.log
_CHILD = (
    "import sys, os, logging\n"
    "h = logging.FileHandler(os.path.join(os.environ['HW_TIMING_DIR'], f'{os.getpid()}.log'))\n"
    "h.setFormatter(logging.Formatter('%(message)s'))\n"
    "lg = logging.getLogger('cdc.sink.timing'); lg.addHandler(h); lg.setLevel(logging.DEBUG)\n"
    "lg.propagate = False\n" + speedsink._CHILD
)
_FIELD = re.compile(r"(\w+)=([\d.]+)")


def handoff(lines: list[str]) -> dict[str, Any]:
    """The hand-off figures of one run's timing lines (see the module docstring)."""
    rows = []
    for line in lines:
        fields = {k: float(v) for k, v in _FIELD.findall(line)}
        if "started" in fields:
            rows.append(fields)
    gaps = [b["started"] - a["done"] for a, b in itertools.pairwise(rows) if b["handed"] <= a["done"]]
    pickups = [r["started"] - r["handed"] for r in rows]
    return {
        "batches": len(rows),
        "gap_ms": 1e3 * statistics.median(gaps) if gaps else None,
        "gap_sum_s": sum(gaps),
        "pickup_ms": 1e3 * statistics.median(pickups) if pickups else None,
    }


def main(argv: list[str]) -> int:
    logs = Path(tempfile.mkdtemp(prefix="hw-handoff-"))
    os.environ["HW_TIMING_DIR"] = str(logs)
    os.environ["HEADWATER_SINK_TIMING"] = "1"
    speedsink._CHILD = _CHILD
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
    code = speedsink.main(argv)
    if code or out is None:
        return code
    result = json.loads(out.read_text())
    # one log per child, in the order they ran: the order of the entries in the JSON
    runs = sorted(logs.glob("*.log"), key=lambda p: p.stat().st_mtime)
    entries = [
        entry
        for target, value in result.items()
        if isinstance(value, dict) and target in TARGETS
        for name, entry in value.items()
        if name.startswith("kafka")
    ]
    for entry, log in zip(entries, runs, strict=False):
        entry.update(handoff(log.read_text().splitlines()))
        print(
            f"[handoff] {entry.get('rows_per_s', 0):,.0f} rows/s gap {entry['gap_ms'] or 0:.1f} ms"
            f" (sum {entry['gap_sum_s']:.2f} s) pickup {entry['pickup_ms'] or 0:.1f} ms",
            file=sys.stderr,
        )
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
