"""Capture right after a broker start against capture on a warm broker: the same bulk range captured
several times in a row, each time by a new pipeline, with the broker's and MariaDB's CPU beside the
capture's own. A private dev stack only: with ``--restart-broker`` each round stops and starts the
stack's broker first.

    cdc dev up --dir /tmp/me/stack --mariadb-port 23307 --kafka-port 29092 \
        --kafka-controller-port 29093 --services mariadb,kafka
    HEADWATER_DEVSTACK_DIR=/tmp/me/stack .venv/bin/python -m benchmarks.capture_cold \
        --rows 1000000 --runs 4 --rounds 3 --restart-broker [--out cold.json]

Why: the full benchmark's first capture (the first part after ``cdc dev up``) fell under the
second's (198k against 270k rows/s). Each line gives the run's index after the broker's start, its
rows/s, the capture process's CPU per row, and the broker's and MariaDB's CPU per row over the
capture (``/proc/<pid>/stat`` of the stack's pids). The capture child is pinned as in
``benchmarks.run``; the servers are not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.run import SIZES, Runner
from benchmarks.workload import Workload
from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.devstack.settings import ServiceName, StackSettings
from cdc.devstack.stack import DevStack

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _threads_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of ``pid``'s threads, summed by thread name with its digits dropped (the JVM's
    "C2 CompilerThread0", "GC Thread#1", "data-plane-kafka-request-handler-3" ...)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        name = stat[stat.index("(") + 1 : stat.rindex(")")].rstrip("0123456789#-")
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK
    return out


def _pid(state: Path, name: str) -> int:
    return int((state / "pids" / f"{name}.pid").read_text().split()[0])


def _restart_broker(state: Path, stack: StackConnections) -> float:
    """Stops and starts the private stack's broker; returns the seconds the start took."""
    port = int(stack.kafka.bootstrap_servers.rsplit(":", 1)[1])
    if port == StackSettings().kafka_port:
        raise SystemExit("refusing to restart a broker on the shared stack's port")
    settings = StackSettings(
        state_dir=state,
        kafka_port=port,
        kafka_controller_port=port + 1,
        mariadb_port=stack.mariadb.port,
        services=(ServiceName.KAFKA,),
    )
    dev = DevStack(settings)
    dev.down()
    started = time.perf_counter()
    dev.up()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=4, help="captures after each broker start")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--restart-broker", action="store_true")
    parser.add_argument("--warmup", type=int, default=0, help="rows captured (not measured) before run 1")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    state = default_state_dir()
    if state == Path(".devstack").resolve():
        parser.error("point HEADWATER_DEVSTACK_DIR at a private stack: this restarts its broker")
    stack = StackConnections.read(state)
    runner = Runner(stack, Path("/tmp"), SIZES["medium"])
    workload = Workload.create(runner.server)
    bulk = workload.bulk(args.rows)
    warm = workload.bulk(args.warmup) if args.warmup else None
    lines: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        start_s = _restart_broker(state, stack) if args.restart_broker else 0.0
        if warm is not None:
            runner.capture(warm, f"cold{runner.run_id}w{rnd}")
        for run in range(1, args.runs + 1):
            broker, db = _pid(state, "kafka"), _pid(state, "mariadb")
            b0, d0, load = _cpu_s(broker), _cpu_s(db), os.getloadavg()[0]
            t0 = _threads_cpu_s(broker)
            result = runner.capture(bulk, f"cold{runner.run_id}r{rnd}n{run}")
            b1, d1 = _cpu_s(broker), _cpu_s(db)
            t1 = _threads_cpu_s(broker)
            rows = result["rows"]
            by_thread = {k: (v - t0.get(k, 0.0)) / rows * 1e6 for k, v in t1.items()}
            line = {
                "round": rnd,
                "run": run,
                "broker_start_s": start_s if run == 1 else None,
                "rows_per_s": result["rows_per_s"],
                "capture_cpu_us_per_row": result["cpu_s"] / rows * 1e6,
                "broker_cpu_us_per_row": (b1 - b0) / rows * 1e6,
                "mariadb_cpu_us_per_row": (d1 - d0) / rows * 1e6,
                "seconds": result["seconds"],
                "load": load,
                "broker_threads_cpu_us_per_row": {
                    k: round(v, 3) for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1]) if v >= 0.05
                },
            }
            lines.append(line)
            print(
                f"round {rnd} run {run}: {line['rows_per_s']:,.0f} rows/s, capture "
                f"{line['capture_cpu_us_per_row']:.2f} broker {line['broker_cpu_us_per_row']:.2f} "
                f"mariadb {line['mariadb_cpu_us_per_row']:.2f} CPU-us/row, load {load:.1f}",
                file=sys.stderr,
            )
            print(f"  broker threads: {line['broker_threads_cpu_us_per_row']}", file=sys.stderr)
    print("| run after broker start | rows/s median [range] | capture CPU-us/row | broker | MariaDB |")
    print("|---:|---:|---:|---:|---:|")
    for run in range(1, args.runs + 1):
        mine = [x for x in lines if x["run"] == run]
        rates = [x["rows_per_s"] for x in mine]

        def med(key: str, of: list[dict[str, Any]] = mine) -> float:
            return statistics.median(x[key] for x in of)

        print(
            f"| {run} | {statistics.median(rates):,.0f} [{min(rates):,.0f}-{max(rates):,.0f}] "
            f"| {med('capture_cpu_us_per_row'):.2f} | {med('broker_cpu_us_per_row'):.2f} "
            f"| {med('mariadb_cpu_us_per_row'):.2f} |"
        )
    if args.out is not None:
        given = vars(args) | {"out": str(args.out)}
        args.out.write_text(json.dumps({"args": given, "runs": lines}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
