"""The `cdc sink --until-caught-up` command itself, per target: its peak RSS, CPU and wall time.

    .venv/bin/python -m benchmarks.cdc_sink_rss --pipeline NAME [--targets iceberg,mariadb]
        [--rounds 5] [--base TREE] [--env KEY=VALUE ...] [--out FILE]

``benchmarks.child sink_kafka`` (speedsink_bench, iceberg_memory_ab) runs the sink objects from the
benchmark's own module, which imports the capture and embedded daemons too; this runs the command a
user runs (``python -m cdc.cli sink``, the command line's imports included) from a config written
for an already captured pipeline (``speedsink_bench``'s topics), pinned to one core like the child.
Peak RSS is the exited process's ``ru_maxrss`` (the kernel's high-water mark, as VmHWM); CPU is the
whole process's (imports, group join and the apply). With ``--base TREE`` (``git worktree add``)
the same command also runs from that checkout, alternating which goes first in each round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from benchmarks.run import SIZES, Runner
from benchmarks.tasks import Place
from cdc.devstack.connections import StackConnections, default_state_dir

HERE = Path(__file__).parent.parent


def _config(stack: StackConnections, place: Place, pipeline: str, group: str, state: Path) -> dict[str, Any]:
    m = stack.mariadb
    sink = place.sink_config(stack).model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return {
        "name": pipeline,
        # not read by `cdc sink`, but every config names its source
        "source": {
            "type": "mariadb",
            "host": m.host,
            "port": m.port,
            "user": m.user,
            "password": m.password,
            "server_id": 9_999,
            "tables": ["*.*"],
        },
        "stream": {
            "type": "kafka",
            "bootstrap_servers": stack.kafka.bootstrap_servers,
            "consumer_group": group,
        },
        "sinks": [{"type": "sql" if place.target != "iceberg" else "iceberg", **sink}],
        "state_dir": str(state),
    }


def _run(tree: Path, config: Path, env: dict[str, str], core: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "cdc.cli", "sink", "-c", str(config), "--until-caught-up"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core), *cmd]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    child = subprocess.Popen(
        cmd, cwd=tree, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert child.stderr is not None
    stderr = child.stderr.read()
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"cdc sink in {tree} failed:\n{stderr[-3000:]}")
    applied = [line for line in stderr.splitlines() if "caught up with the stream" in line]
    changes = int(applied[-1].split(":")[-1].split()[0]) if applied else 0
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "seconds": seconds,
        "changes": changes,
        "process_cpu_s": cpu,
        "process_cpu_us_per_change": 1e6 * cpu / changes if changes else None,
        "load_1m": load,
    }


def median_range(
    runs: list[dict[str, Any]],
    fields: tuple[str, ...] = ("peak_rss_mb", "process_cpu_us_per_change", "seconds"),
) -> dict[str, str]:
    """Each field's median and range over the runs that have it."""
    out = {}
    for field in fields:
        values = [r[field] for r in runs if r.get(field) is not None]
        if values:
            out[field] = f"{statistics.median(values):,.2f} ({min(values):,.2f}-{max(values):,.2f})"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pipeline", required=True, help="a pipeline speedsink_bench captured")
    parser.add_argument("--targets", default="iceberg,postgresql,mariadb,sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", type=Path, help="another checkout, run interleaved with this one")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for this tree's runs only")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    stack = StackConnections.read(default_state_dir())
    runner = Runner(stack, Path(tempfile.gettempdir()), replace(SIZES["medium"], profile=False))
    new_env = dict(item.split("=", 1) for item in args.env)
    trees = [("new", HERE, new_env)] + ([("base", args.base.resolve(), {})] if args.base else [])
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="hw-cdcsink-"))
    try:
        for target in args.targets.split(","):
            results[target] = {label: [] for label, _, _ in trees}
            for n in range(args.rounds):
                for label, tree, env in trees if n % 2 == 0 else list(reversed(trees)):
                    place = Place(**runner._place(target, f"{target[:2]}_c{label}{n}", tmp))
                    config = Path(place.directory) / "config.yaml"
                    group = f"cdcsink-{runner.run_id}-{place.name}"
                    document = _config(stack, place, args.pipeline, group, Path(place.directory) / "state")
                    config.write_text(yaml.safe_dump(document))
                    result = _run(tree, config, env, runner.core)
                    results[target][label].append(result)
                    shutil.rmtree(place.directory, ignore_errors=True)
                    print(
                        f"[cdcsink] {target} {n} {label}: {result['peak_rss_mb']:.0f} MiB"
                        f" {result['changes']} changes {result['seconds']:.2f} s"
                        f" {result['process_cpu_us_per_change'] or 0:.2f} CPU-us/change"
                        f" load {result['load_1m']:.1f}",
                        file=sys.stderr,
                    )
    finally:
        runner.drop_places()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {t: {label: median_range(runs) for label, runs in by.items()} for t, by in results.items()}
    for target, by in summary.items():
        for label, s in by.items():
            print(f"[cdcsink] {target} {label}: {s}", file=sys.stderr)
    document = {"pipeline": args.pipeline, "trees": [str(t) for _, t, _ in trees], "runs": results}
    document["summary"] = summary
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
