"""Alternated A/B of `benchmarks.e2e` runs: CPU-us per change of each process, Kafka commits per
second, p50/p99 and the load average, one arm after the other for ``--rounds`` rounds.

An arm is ``name=ARGS``: extra arguments for ``python -m benchmarks.e2e`` (``--stream-setting
linger.ms=100``, ``--tree /tmp/base``); ``name=`` runs it as it is. Each run is its own process;
its JSON goes to ``--out`` as it ends, so a run cut short keeps the rounds done.

    python -m benchmarks.e2e_ab --rate 10000 --rounds 5 base= l100='--stream-setting linger.ms=100'
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

PROCESSES = ("cdc_run", "cdc_sink", "kafka", "pg_sink_backends")


def _one(rate: int, seconds: float, extra: list[str]) -> dict[str, Any]:
    args = [sys.executable, "-m", "benchmarks.e2e", "--rate", str(rate), "--seconds", str(seconds)]
    done = subprocess.run(
        [*args, "--steps", "", *extra], capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    result: dict[str, Any] = json.loads(done.stdout)
    commits = next((line for line in done.stderr.splitlines() if "Kafka commits/s" in line), "")
    result["commits_line"] = commits.strip()
    return result


def _row(result: dict[str, Any]) -> dict[str, float]:
    cpu = result.get("cpu", {})
    row = {name: cpu[name]["cpu_us_per_change"] for name in PROCESSES if name in cpu}
    row["pipeline"] = sum(row.values())
    # librdkafka's threads of `cdc run` apart (rdk:broker1: the producer's sends)
    for thread, cpu_us in result.get("cpu_threads", {}).get("cdc_run", {}).items():
        if thread.startswith("rdk:broker") and not thread.startswith("rdk:broker-"):
            row[f"run_{thread}"] = cpu_us
    row["p50_ms"] = result["p50_s"] * 1000
    row["p99_ms"] = result["p99_s"] * 1000
    row["load"] = sum(result["loadavg"]) / len(result["loadavg"])
    with contextlib.suppress(IndexError, ValueError):
        row["commits_s"] = float(result["commits_line"].split("capture: ", 1)[1].split()[0])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/e2e_ab.json"))
    parser.add_argument("arms", nargs="+", metavar="NAME=ARGS")
    args = parser.parse_args(argv)
    arms = [(a.split("=", 1)[0], shlex.split(a.split("=", 1)[1])) for a in args.arms]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, _ in arms}
    for round_ in range(args.rounds):
        # the arms' order turns each round, so neither always runs first after a pause
        order = arms[round_ % len(arms) :] + arms[: round_ % len(arms)]
        for name, extra in order:
            result = _one(args.rate, args.seconds, extra)
            if "error" in result:
                print(f"round {round_} {name}: failed: {result['error'][-300:]}", file=sys.stderr)
                continue
            row = _row(result)
            rows[name].append(row)
            print(f"round {round_} {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
            args.out.write_text(json.dumps(rows, indent=1))
    for name, runs in rows.items():
        if not runs:
            continue
        keys = runs[0].keys()
        print(
            f"{name} ({len(runs)} runs) median [min-max]: "
            + ", ".join(
                f"{k} {statistics.median(r[k] for r in runs):.1f} "
                f"[{min(r[k] for r in runs):.1f}-{max(r[k] for r in runs):.1f}]"
                for k in keys
                if all(k in r for r in runs)
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
