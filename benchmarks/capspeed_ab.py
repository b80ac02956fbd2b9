"""Capture A/B: two source trees capture the same binlog ranges, alternately, beside `mariadb-binlog -v`.

    .venv/bin/python -m benchmarks.capspeed_ab --base /tmp/capspeed_base [--bulk 200000]
        [--single 20000] [--rounds 3]

``--base`` is a copy of another commit's tree (``git archive <commit> | tar -x -C DIR``); the other
side is this checkout. Each round runs, on each range: capture with the base tree, capture with this
tree, and the reference, each in a process of its own pinned to the same core as speedcap_bench's
children. The machine is shared, so each line also gives CPU-seconds per row (the capture process's
CPU, both threads and librdkafka's) and the load average when it ran: compare within a round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import decode_bench
from benchmarks.decode_bench import Range
from benchmarks.run import Runner, Size
from benchmarks.workload import Workload
from cdc.devstack.connections import StackConnections, default_state_dir

HERE = Path(__file__).resolve().parent.parent


def _capture(runner: Runner, tree: Path, r: Range, pipeline: str, pin: bool) -> dict[str, Any]:
    args = {"range": asdict(r), "pipeline": pipeline, "server_id": runner._next_server_id()}
    cmd = [sys.executable, "-m", "benchmarks.child", "capture"]
    if pin:
        cmd = ["taskset", "-c", str(runner.core), *cmd]
    env = {**os.environ, "PYTHONPATH": str(tree), "HEADWATER_DEVSTACK_DIR": str(default_state_dir())}
    done = subprocess.run([*cmd, json.dumps(args)], capture_output=True, text=True, cwd=tree, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"capture in {tree} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rows_per_s"] = result["rows"] / result["seconds"]
    result["cpu_us_per_row"] = result["cpu_s"] / result["rows"] * 1e6
    return result


def keys_of(args: argparse.Namespace) -> tuple[str, ...]:
    return (args.only,) if args.only else ("bulk", "single")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--bulk", type=int, default=200_000)
    parser.add_argument("--single", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("bulk", "single"), default=None)
    parser.add_argument(
        "--no-pin", action="store_true", help="captures free to use both cores (the reference stays pinned)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write every measurement as JSON here")
    args = parser.parse_args(argv)
    size = Size(args.bulk, args.single, 0, 0, 0, 0, 0, (), False)
    runner = Runner(StackConnections.read(default_state_dir()), Path("benchmarks/results"), size)
    runner.start(Workload.create(runner.server))
    trees = {"base": args.base.resolve(), "this": HERE}
    results: list[dict[str, Any]] = [{"ranges": {k: asdict(runner.range(k)) for k in keys_of(args)}}]
    for key in keys_of(args):
        r = runner.range(key)
        for n in range(args.rounds):
            for name, tree in trees.items():
                load = os.getloadavg()[0]
                res = _capture(runner, tree, r, f"capspeed{runner.run_id}{key}{name}{n}", not args.no_pin)
                results.append({"range": key, "round": n, "side": name, "load1": load, **res})
                cores = res["rows_per_s"] * res["cpu_us_per_row"] / 1e6
                print(
                    f"{key} round {n} {name:>4}: {res['rows_per_s']:>9,.0f} rows/s "
                    f"{res['cpu_us_per_row']:6.1f} CPU-us/row  {cores:4.2f} cores  load {load:.1f}",
                    flush=True,
                )
            load = os.getloadavg()[0]
            ref = runner._pinned(partial(decode_bench.bench_mariadb_binlog, runner.server, r), r.rows)
            results.append({"range": key, "round": n, "side": "mariadb-binlog -v", "load1": load, **ref})
            print(f"{key} round {n}  ref: {ref['rows_per_s']:>9,.0f} rows/s  load {load:.1f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
