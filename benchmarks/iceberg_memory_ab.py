"""`cdc sink` into Iceberg from an already captured pipeline: variants (trees, environments) interleaved.

    .venv/bin/python -m benchmarks.iceberg_memory_ab --pipeline NAME --rounds 5 \
        --variant base=/tmp/base_tree --variant new=. --variant mmap=.:MALLOC_MMAP_THRESHOLD_=131072

Each variant is ``label=TREE[:ENV=VALUE[,ENV=VALUE...]]``; every round runs each variant's
``benchmarks.child sink_kafka`` once, in turn, pinned to one core (as speedsink_bench does), into a
fresh warehouse (with ``--target``, another sink: a fresh schema, database or file). Prints one
line per child (rows/s, rows per CPU-second, CPU-us per row over the applying span and for the
whole process, peak RSS, load) and the medians (min-max) per variant;
``--out`` writes the JSON. The pipeline's topics come from an earlier ``speedsink_bench`` run;
``--pipeline-of LABEL=NAME`` gives one variant another captured pipeline (e.g. one captured with
other producer settings), the others read ``--pipeline``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.cdc_sink_rss import median_range
from benchmarks.run import SIZES
from benchmarks.speedsink_bench import _TreeRunner
from cdc.devstack.connections import StackConnections, default_state_dir

_FIELDS = ("rows_per_s", "rows_per_cpu_s", "cpu_us_per_row", "process_cpu_us_per_row", "peak_rss_mb")


def _variant(text: str) -> tuple[str, Path, dict[str, str]]:
    label, _, rest = text.partition("=")
    tree, _, env_text = rest.partition(":")
    env = dict(item.split("=", 1) for item in env_text.split(",") if item)
    return label, Path(tree).resolve(), env


def _run(
    runner: _TreeRunner, tree: Path, env: dict[str, str], pipeline: str, place: dict[str, str]
) -> dict[str, Any]:
    runner.tree = tree
    with mock.patch.dict(os.environ, env):  # the child inherits it; restored after
        return runner.child("sink_kafka", {"pipeline": pipeline, "place": place})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--pipeline-of", action="append", default=[], help="LABEL=PIPELINE for one variant")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--target", default="iceberg", help="or postgresql, mariadb, sqlite")
    args = parser.parse_args(argv)
    variants = [_variant(v) for v in args.variant]
    pipelines = dict(item.split("=", 1) for item in args.pipeline_of)
    stack = StackConnections.read(default_state_dir())
    runner = _TreeRunner(
        stack, Path(tempfile.mkdtemp(prefix="hw-icemem-")), replace(SIZES["medium"], profile=False)
    )
    tmp = Path(tempfile.mkdtemp(prefix="hw-icemem-"))
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in variants}
    try:
        for n in range(args.rounds):
            order = variants if n % 2 == 0 else list(reversed(variants))
            for label, tree, env in order:
                place = runner._place(args.target, f"{args.target[:2]}_{label}{n}", tmp)
                try:
                    result = _run(runner, tree, env, pipelines.get(label, args.pipeline), place)
                except RuntimeError as exc:  # a shared module rebuilt under a child: say so, go on
                    print(f"[icemem] {n} {label}: failed: {str(exc)[-600:]}", file=sys.stderr)
                    continue
                results[label].append(result)
                shutil.rmtree(place["directory"], ignore_errors=True)
                print(
                    f"[icemem] {n} {label}: {result.get('rows_per_s', 0):,.0f} rows/s"
                    f" {result.get('rows_per_cpu_s', 0):,.0f} rows/cpu-s"
                    f" {result.get('cpu_us_per_row', 0):.2f} us/row"
                    f" (process {result.get('process_cpu_us_per_row', 0):.2f})"
                    f" {result.get('peak_rss_mb', 0):,.0f} MiB load {result.get('load_1m', 0):.1f}",
                    file=sys.stderr,
                )
    finally:
        runner.drop_places()  # the SQL targets' schemas / databases
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {label: median_range(runs, _FIELDS) for label, runs in results.items()}
    for label, s in summary.items():
        print(f"[icemem] {label}: {s}", file=sys.stderr)
    document = {
        "variants": [list(map(str, v)) for v in variants],
        "pipelines": {label: pipelines.get(label, args.pipeline) for label, _, _ in variants},
        "runs": results,
        "summary": summary,
    }
    if args.out:
        args.out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
