"""Per-thread capture CPU, A/B: ``benchmarks.capture_threads`` run alternately with two trees.

    .venv/bin/python -m benchmarks.capture_threads_ab RANGE_JSON --base /tmp/base [--rounds 8]
        [--core 1] [--out results.json]

``RANGE_JSON``: one range as capspeed_ab's ``--out`` file lists it (``{"name", "file", "start",
"stop", "rows"}``). ``--base`` is a checkout of the other commit with its own compiled module
copied to its top (``pip install --target DIR ./native/headwater_native``, then
``DIR/headwater_native`` into the tree): with ``PYTHONPATH`` set to a tree, its ``cdc`` and its
``headwater_native`` are the ones imported. The other side is this checkout with the installed
module. Each round runs base then this (the order flips every round), each in its own process
pinned to ``--core``; prints each run and the medians (min-max) per side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from cdc.devstack.connections import default_state_dir

HERE = Path(__file__).resolve().parent.parent
FIELDS = ("total_us", "reader_us", "writer_us", "rest_us", "rows_per_s")


def _run(tree: Path, range_json: str, server_id: int, core: int) -> dict[str, Any]:
    cmd = ["taskset", "-c", str(core), sys.executable, "-m", "benchmarks.capture_threads"]
    env = {**os.environ, "PYTHONPATH": str(tree), "HEADWATER_DEVSTACK_DIR": str(default_state_dir())}
    done = subprocess.run(
        [*cmd, range_json, str(server_id)], capture_output=True, text=True, cwd=tree, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"capture_threads in {tree} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("range", type=Path, help="a JSON file holding one range")
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--core", type=int, default=1)
    parser.add_argument("--server-id", type=int, default=7300, help="the first replica server_id")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    range_json = json.dumps(json.loads(args.range.read_text()))
    trees = [("base", args.base.resolve()), ("this", HERE)]
    results: list[dict[str, Any]] = []
    server_id = args.server_id
    for n in range(args.rounds):
        for side, tree in trees if n % 2 == 0 else trees[::-1]:
            server_id += 1
            res = {"round": n, "side": side, **_run(tree, range_json, server_id, args.core)}
            results.append(res)
            print(
                f"round {n} {side:>4}: {res['rows_per_s']:>9,.0f} rows/s  total {res['total_us']:.2f}"
                f"  reader {res['reader_us']:.2f}  writer {res['writer_us']:.2f}"
                f"  rest {res['rest_us']:.2f} CPU-us/row  load {res['load1']:.1f}",
                flush=True,
            )
    for side, _ in trees:
        runs = [r for r in results if r["side"] == side]
        parts = []
        for field in FIELDS:
            values = [float(r[field]) for r in runs]
            parts.append(f"{field} {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        print(f"{side}: " + ", ".join(parts))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
