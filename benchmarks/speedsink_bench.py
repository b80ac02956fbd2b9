"""Only the sink side of the benchmarks: apply from Kafka (and embedded, and each reference) per target.

    .venv/bin/python -m benchmarks.speedsink_bench [--rows 200000] [--targets postgresql,iceberg]
        [--pipeline NAME] [--embedded] [--no-kafka] [--reference] [--profile DIR]
        [--base TREE] [--rounds N] [--keep-topics]

Writes the sinks range and captures it once into a pipeline (or reuses ``--pipeline``, a pipeline an
earlier run captured: its topics are still on the broker), then runs ``benchmarks.child sink_kafka``
for each target, as ``benchmarks.run`` does. Prints one JSON document; for quick A/B runs of the
consume-and-apply path without the whole suite. The run's Kafka topics are deleted at its end unless
``--keep-topics`` (then its pipeline name, printed, can be given to later runs as ``--pipeline``).

``--base TREE``: the same children are also run from another checkout (``git worktree add TREE
COMMIT``), interleaved with this one's for ``--rounds`` rounds, so that an A/B comparison sees the
same load on the shared machine. Each line shows rows/s, rows per CPU-second, microseconds of CPU
per row, PostgreSQL's backend CPU per row for the child's connections (``server``, from /proc:
benchmarks/pg_backend_cpu.py), peak RSS and the load average when the child started.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import benchmarks.decode_bench

# The workload's database: not decode_bench's ``hw_bench``, which other benchmark runs on the shared
# server drop and refill meanwhile. Set before the modules that copy the name at import.
BENCH_DB = "hw_bench_sinks"
benchmarks.decode_bench.DB = BENCH_DB

from benchmarks.pg_backend_cpu import BackendCpu  # noqa: E402
from benchmarks.run import SIZES, Runner  # noqa: E402
from benchmarks.tasks import TARGETS  # noqa: E402
from benchmarks.workload import Workload  # noqa: E402
from cdc.devstack.connections import StackConnections, default_state_dir  # noqa: E402

HERE = Path(__file__).parent.parent
# the child, with the same database name (benchmarks.child alone would use hw_bench)
_CHILD = (
    "import sys, benchmarks.decode_bench as d; d.DB = sys.argv.pop(1); "
    "from benchmarks.child import main; main(sys.argv[1:])"
)


class _TreeRunner(Runner):
    """Children run from ``tree`` (another checkout of the repository): its code, this run's data."""

    tree: Path = HERE

    def child(self, task: str, args: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        # ``python -c`` puts the working directory first on sys.path: the other tree's packages win
        # over the editable install's finder (checked: sinks.sql comes from the other tree)
        result = _child_in(self, self.tree, task, args, profile)
        result["load_1m"] = load
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # the whole child process's CPU (imports and set-up included), from outside: comparable
        # between trees whose benchmarks/tasks.py may not measure CPU themselves
        process_cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        result["process_cpu_s"] = process_cpu
        if result.get("rows"):
            result["process_cpu_us_per_row"] = 1e6 * process_cpu / result["rows"]
        if result.get("cpu_s") and result.get("rows"):
            result["cpu_us_per_row"] = 1e6 * result["cpu_s"] / result["rows"]
        return result


def _child_in(
    runner: Runner, tree: Path, task: str, args: dict[str, Any], profile: str | None
) -> dict[str, Any]:
    import subprocess

    cmd = [sys.executable, "-c", _CHILD, BENCH_DB, task, json.dumps(args)]
    if profile:
        runner.profiles.mkdir(parents=True, exist_ok=True)
        cmd += ["--profile", str(runner.profiles / profile)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(runner.core), *cmd]
    env = {**os.environ, "HEADWATER_DEVSTACK_DIR": str(default_state_dir())}
    child = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tree, env=env
    )
    with BackendCpu(child.pid) as server:  # PostgreSQL's CPU for this child's connections
        stdout, stderr = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"{task} in {tree} failed ({child.returncode}):\n{stderr[-4000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    if "rows" in result and "seconds" in result:
        result["rows_per_s"] = result["rows"] / result["seconds"] if result["seconds"] > 0 else 0.0
    if server.seconds:
        result["pg_backend_cpu_s"] = server.total_s
        if result.get("rows"):
            result["pg_backend_us_per_row"] = 1e6 * server.total_s / result["rows"]
    return result


def _shown(entry: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}: {v.get('rows_per_s', 0):,.0f} rows/s {v.get('rows_per_cpu_s', 0):,.0f} rows/cpu-s"
        f" {v.get('cpu_us_per_row', 0):.1f} us/row (process {v.get('process_cpu_us_per_row', 0):.1f})"
        f" server {v.get('pg_backend_us_per_row', 0):.1f} us/row"
        f" {v.get('peak_rss_mb', 0):,.0f} MiB"
        f" load {v.get('load_1m', 0):.1f}"
        for k, v in entry.items()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--pipeline", help="an already captured pipeline (its range is not rewritten)")
    parser.add_argument("--embedded", action="store_true", help="also the embedded apply (needs the range)")
    parser.add_argument("--no-kafka", action="store_true", help="leave out the apply from Kafka")
    parser.add_argument("--reference", action="store_true", help="also each target's bulk-load reference")
    parser.add_argument("--profile", type=Path, help="write sink_kafka and sink_embedded profiles here")
    parser.add_argument(
        "--tree", type=Path, help="run the 'new' children from this checkout (default: this working tree)"
    )
    parser.add_argument("--base", type=Path, help="another checkout: its children run too, interleaved")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of (this tree, --base) children")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument(
        "--keep-topics", action="store_true", help="leave the captured pipeline's topics, for --pipeline"
    )
    args = parser.parse_args(argv)
    stack = StackConnections.read(default_state_dir())
    profiles = args.profile or Path(tempfile.mkdtemp(prefix="hw-speedsink-prof-"))
    runner = _TreeRunner(stack, profiles.parent, replace(SIZES["medium"], sink=args.rows, profile=False))
    runner.profiles = profiles
    tmp = Path(tempfile.mkdtemp(prefix="hw-speedsink-"))
    # the working tree holds other engineers' uncommitted edits too: an A/B of commits wants
    # ``git archive COMMIT`` trees on both sides
    trees = [("new", args.tree.resolve() if args.tree else HERE)] + (
        [("base", args.base.resolve())] if args.base else []
    )
    result: dict[str, Any] = {"load_average_at_start": os.getloadavg()}
    try:
        needs_range = args.embedded or args.reference or not args.pipeline
        if needs_range:
            runner.start(Workload.create(runner.server))
        if args.pipeline or args.no_kafka:
            pipeline = args.pipeline or "-"
        else:
            pipeline = f"bench{runner.run_id}sinks"
            # captured by the 'new' tree: the working tree may hold others' half-done edits
            runner.tree = trees[0][1]
            result["capture"] = runner.with_range("sinks", partial(runner.capture, pipeline=pipeline))
            runner.tree = HERE
        if needs_range:
            result["range"] = asdict(runner.range("sinks"))
        result["pipeline"] = pipeline
        print(f"[speedsink] pipeline {pipeline}", file=sys.stderr)
        for target in args.targets.split(","):
            entry: dict[str, Any] = {}
            for n in range(args.rounds):
                # which tree goes first alternates by round: the same load on both sides
                for label, tree in trees if n % 2 == 0 else trees[::-1]:
                    runner.tree = tree
                    tag = f"{label}{n}" if args.rounds > 1 or args.base else ""
                    suffix = f"_{tag}" if tag else ""
                    prof = args.profile is not None and n == 0
                    if not args.no_kafka:
                        kafka = runner._place(target, f"{target[:2]}_k{tag}", tmp)
                        entry[f"kafka{suffix}"] = runner.child(
                            "sink_kafka",
                            {"pipeline": pipeline, "place": kafka},
                            profile=f"apply_{target}_kafka{suffix}" if prof else None,
                        )
                    if args.embedded:
                        r = runner.range("sinks")
                        emb = runner._place(target, f"{target[:2]}_e{tag}", tmp)
                        entry[f"embedded{suffix}"] = runner.child(
                            "sink_embedded",
                            {"range": asdict(r), "pipeline": f"emb{runner.run_id}", "place": emb,
                             "server_id": runner._next_server_id()},
                            profile=f"apply_{target}_embedded{suffix}" if prof else None,
                        )  # fmt: skip
                        if args.reference and n == 0 and label == "new":
                            # it loads the rows the embedded sink wrote
                            ref = runner._place(target, f"{target[:2]}_ref", tmp)
                            sink_name = emb["directory"] if target in ("sqlite", "iceberg") else emb["name"]
                            if target == "iceberg":
                                ref = {**ref, "name": emb["name"]}
                            entry["reference"] = runner.child(
                                "reference", {"range": asdict(r), "place": ref, "sink_name": sink_name,
                                              "server_id": runner._next_server_id()},
                            )  # fmt: skip
                    print(f"[speedsink] {target}: {_shown(entry)}", file=sys.stderr)
            runner.tree = HERE
            result[target] = entry
    finally:
        runner.drop_places(topics=not args.keep_topics)
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
