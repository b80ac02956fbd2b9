"""The capture daemon's peak RSS against transaction size: variants (trees, environments) interleaved.

    .venv/bin/python -m benchmarks.capture_txn_memory --rounds 5 [--keys txn_large,txn_small] \
        --variant base=/tmp/base_tree --variant new=. [--variant b256=.:ENV=VALUE] [--out FILE]

What ``benchmarks.run``'s "Memory against transaction size" part measures (one ``benchmarks.child
capture`` of a one-transaction range, peak RSS = VmHWM), as an A/B: the ranges are written once,
then every round captures each of them with each variant, in turn, pinned to one core, the order
flipped every round, each into a pipeline of its own (its topics are deleted at the end). Each
variant is ``label=TREE[:ENV=VALUE[,ENV=VALUE...]]``, as in ``iceberg_memory_ab``. Prints one line
per child (peak RSS, rows/s, CPU-us per row, load) and the medians (min-max) per variant and range.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import pymysql

import benchmarks.decode_bench
import benchmarks.speedsink_bench
import benchmarks.workload
from benchmarks.cdc_sink_rss import median_range
from benchmarks.iceberg_memory_ab import _variant
from benchmarks.run import SIZES
from benchmarks.speedsink_bench import _TreeRunner
from benchmarks.workload import Workload
from cdc.devstack.connections import StackConnections, default_state_dir

_FIELDS = ("peak_rss_mb", "rows_per_s", "cpu_us_per_row", "process_cpu_us_per_row")


def _capture(runner: _TreeRunner, key: str, tree: Path, env: dict[str, str], pipeline: str) -> dict[str, Any]:
    runner.tree = tree
    with mock.patch.dict(os.environ, env):  # the child inherits it; restored after
        return dict(runner.with_range(key, lambda r: runner.capture(r, pipeline)))


def _write_range(runner: _TreeRunner, key: str, attempts: int = 6) -> None:
    """Write the range now. A one-transaction range fails when the shared server's binlog rotated
    while it was written (other runs' FLUSH BINARY LOGS): written again, up to ``attempts`` times."""
    for attempt in range(attempts):
        try:
            runner.range(key)
            return
        except RuntimeError as exc:
            if "binlog rotation" not in str(exc) or attempt == attempts - 1:
                raise
            print(f"[txnmem] {key}: {exc}; writing it again", file=sys.stderr)


def _drop_database(runner: _TreeRunner, name: str) -> None:
    m = runner.stack.mariadb
    conn = pymysql.connect(host=m.host, port=m.port, user=m.root_user, password=m.root_password)
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--keys", default="txn_large", help="ranges: txn_large, txn_small (comma-separated)")
    parser.add_argument("--size", default="medium", choices=sorted(SIZES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", default="hw_bench_txnmem", help="the workload's MariaDB database")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    variants = [_variant(v) for v in args.variant]
    keys = args.keys.split(",")
    stack = StackConnections.read(default_state_dir())
    runner = _TreeRunner(
        stack, Path(tempfile.mkdtemp(prefix="hw-txnmem-")), replace(SIZES[args.size], profile=False)
    )
    results: dict[str, dict[str, list[dict[str, Any]]]] = {k: {v[0]: [] for v in variants} for k in keys}
    # A database of its own: speedsink_bench's (hw_bench_sinks) and decode_bench's (hw_bench) are
    # dropped and refilled by other runs on the shared server meanwhile. The workload writes to it,
    # and the children are told to read it (the names are read when used).
    ours = args.database
    made = benchmarks.speedsink_bench.BENCH_DB  # the name the tables' DDL was formatted with, at import
    a, b, c, d = (ddl.replace(f"{made}.", f"{ours}.") for ddl in benchmarks.workload.SCHEMA)
    benchmarks.workload.SCHEMA = (a, b, c, d)
    benchmarks.decode_bench.DB = benchmarks.speedsink_bench.BENCH_DB = ours
    setattr(benchmarks.workload, "DB", ours)  # noqa: B010 - its own copy of the name
    try:
        runner.start(Workload.create(runner.server))
        for key in keys:
            _write_range(runner, key)
        for n in range(args.rounds):
            for key in keys:
                for label, tree, env in variants if n % 2 == 0 else variants[::-1]:
                    pipeline = f"bench{runner.run_id}{key.replace('_', '')}{label}{n}"
                    result = _capture(runner, key, tree, env, pipeline)
                    results[key][label].append(result)
                    if result.get("rows") != runner.range(key).rows:
                        print(f"[txnmem] {key} {label}: {result} for {runner.range(key)}", file=sys.stderr)
                    print(
                        f"[txnmem] {n} {key} {label}: {result.get('peak_rss_mb', 0):.1f} MiB"
                        f" {result.get('rows_per_s', 0):,.0f} rows/s"
                        f" {result.get('cpu_us_per_row', 0):.2f} us/row"
                        f" (process {result.get('process_cpu_us_per_row', 0):.2f})"
                        f" load {result.get('load_1m', 0):.1f}",
                        file=sys.stderr,
                    )
    finally:
        runner.drop_places()  # the pipelines' topics
        _drop_database(runner, ours)
    summary = {
        key: {label: median_range(runs, _FIELDS) for label, runs in by.items()} for key, by in results.items()
    }
    for key, by in summary.items():
        for label, s in by.items():
            print(f"[txnmem] {key} {label}: {s}", file=sys.stderr)
    document = {"variants": [list(map(str, v)) for v in variants], "runs": results, "summary": summary}
    if args.out:
        args.out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
