"""Per-thread CPU of one `cdc sink` into Iceberg (``benchmarks.child sink_kafka``), read from /proc.

    .venv/bin/python -m benchmarks.ice4_threads --pipeline NAME [--cpus 1] [--tree DIR] [--rounds 1]

Runs the child (pinned with ``taskset -c CPUS``, from ``--tree``) and samples every thread's
``utime+stime`` (/proc/<pid>/task/*/stat) every 20 ms; prints, per run, the child's result (rows/s,
CPU-us per change, peak RSS), the cores it used over the applying span (CPU-s / wall) and each
thread's CPU seconds by name (``comm``), so that who waits and who works can be read. With several
``--tree``/``--env`` variants the runs alternate (order flipped every round).
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
import threading
import time
import uuid
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def _threads(pid: int, states: list[str] | None = None) -> dict[int, tuple[str, float]]:
    """Each thread's name and CPU seconds; ``states`` gets each thread's state letter (R, S, D)."""
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / _TICK)
        if states is not None:
            states.append(fields[0] + ("" if fields[0] in "RS" else f"{name},"))
    return out


def run_one(tree: Path, cpus: str, pipeline: str, env: dict[str, str]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="hw-ice4-"))
    name = f"ice4_{uuid.uuid4().hex[:8]}"
    place = {"target": "iceberg", "name": name, "directory": str(tmp / name)}
    Path(place["directory"]).mkdir()
    cpus = env.get("CPUS", cpus)
    pipeline = env.get("PIPELINE", pipeline)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.child",
        "sink_kafka",
        json.dumps({"pipeline": pipeline, "place": place}),
    ]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    load = os.getloadavg()[0]
    env = dict(env)
    cpus = env.pop("CPUS", cpus)
    pipeline = env.pop("PIPELINE", pipeline)
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd[3:]] if cmd[0] == "taskset" else ["taskset", "-c", cpus, *cmd]
    else:
        cmd = cmd[3:] if cmd[0] == "taskset" else cmd
    site = Path(__file__).resolve().parent / "ice4_site"
    gc_log = tmp / "gc.json"
    child_env = {**os.environ, **env, "PYTHONPATH": f"{tree}:{site}", "ICE4_GC_LOG": str(gc_log)}
    proc = subprocess.Popen(
        cmd, cwd=tree, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: dict[int, tuple[str, float]] = {}
    series: list[tuple[float, dict[int, tuple[str, float]]]] = []
    state_samples: list[tuple[float, str]] = []  # (time, the threads' state letters)
    lines: list[tuple[float, str]] = []

    def read_out() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter(), line))

    errs: list[str] = []
    reader = threading.Thread(target=read_out)
    err_reader = threading.Thread(target=lambda: errs.append(proc.stderr.read() if proc.stderr else ""))
    reader.start()
    err_reader.start()
    while proc.poll() is None:
        states: list[str] = []
        now = _threads(proc.pid, states)
        state_samples.append((time.perf_counter(), "".join(states)))
        seen.update(now)
        series.append((time.perf_counter(), now))
        time.sleep(0.02)
    reader.join()
    err_reader.join()
    out, err = "".join(text for _, text in lines), "".join(errs)
    gc_events = json.loads(gc_log.read_text())["events"] if gc_log.exists() else []
    shutil.rmtree(tmp, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(err[-2000:])
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    by_name: dict[str, float] = {}
    for thread_name, cpu in seen.values():
        by_name[thread_name] = by_name.get(thread_name, 0.0) + cpu
    result["threads_cpu_s"] = dict(sorted(by_name.items(), key=lambda kv: -kv[1]))
    # the applying span: from first data to the result line (``seconds`` before it)
    ended = lines[-1][0]
    began = ended - result["seconds"]
    before = max((s for s in series if s[0] <= began), key=lambda s: s[0], default=series[0])
    after = max((s for s in series if s[0] <= ended), key=lambda s: s[0])
    span: dict[str, float] = {}
    for tid, (thread_name, cpu) in after[1].items():
        start = before[1].get(tid, (thread_name, 0.0))[1]
        span[thread_name] = span.get(thread_name, 0.0) + cpu - start
    result["span_threads_cpu_s"] = dict(sorted(span.items(), key=lambda kv: -kv[1]))
    # collections in the span: the child's perf_counter is the same clock (CLOCK_MONOTONIC)
    in_span = [e for e in gc_events if began <= e[1] <= ended]
    result["span_gc"] = {
        f"gen{g}": [sum(1 for e in in_span if e[0] == g), round(sum(e[2] for e in in_span if e[0] == g), 4)]
        for g in (0, 1, 2)
    }
    result["span_gc_s"] = sum(e[2] for e in in_span)
    # the span's samples with no thread running or runnable: the process waited on something outside
    # (disk, the broker); with one: it worked or waited for a core (run queue, other processes)
    letters = [text for at, text in state_samples if began <= at <= ended]
    result["idle_share"] = sum(1 for t in letters if "R" not in t) / len(letters) if letters else 0.0
    result["disk_wait_share"] = (
        sum(1 for t in letters if "R" not in t and "D" in t) / len(letters) if letters else 0.0
    )
    waiting: dict[str, int] = {}  # who was in disk wait while nothing ran
    for t in letters:
        if "R" not in t:
            for part in t.split(","):
                part = part.lstrip("S")
                if part.startswith("D"):
                    waiting[part[1:]] = waiting.get(part[1:], 0) + 1
    result["disk_wait_threads"] = {k: round(v / len(letters), 3) for k, v in waiting.items()}
    result["rows_per_s"] = result["rows"] / result["seconds"]
    result["cpu_us_per_row"] = result["cpu_s"] / result["rows"] * 1e6
    result["cores"] = result["cpu_s"] / result["seconds"]
    result["load_1m"] = load
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--cpus", default="1", help="taskset -c list ('' for none)")
    parser.add_argument(
        "--variant",
        action="append",
        help="label=TREE[:ENV=V;...] (CPUS=0-1: taskset list, PIPELINE=name) (default: this tree)",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    variants = []
    for text in args.variant or [f"new={Path(__file__).resolve().parent.parent}"]:
        label, _, rest = text.partition("=")
        tree, _, env_text = rest.partition(":")
        env = dict(item.split("=", 1) for item in env_text.split(";") if item)
        variants.append((label, Path(tree).resolve(), env))
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in variants}
    for n in range(args.rounds):
        for label, tree, env in variants if n % 2 == 0 else variants[::-1]:
            try:
                r = run_one(tree, args.cpus, args.pipeline, env)
            except RuntimeError as exc:
                print(f"[ice4] {n} {label}: failed {exc}", file=sys.stderr)
                continue
            runs[label].append(r)
            top = ", ".join(f"{k} {v:.3f}" for k, v in list(r["span_threads_cpu_s"].items())[:7])
            print(
                f"[ice4] {n} {label}: {r['rows_per_s']:,.0f} rows/s {r['cpu_us_per_row']:.2f} us/row"
                f" cores {r['cores']:.2f} {r['peak_rss_mb']:.0f} MiB load {r['load_1m']:.1f}"
                f" idle {r['idle_share']:.2f} (disk {r['disk_wait_share']:.2f}"
                f" {r['disk_wait_threads']}) | {top}",
                file=sys.stderr,
            )
    for label, rs in runs.items():
        if rs:
            med = {
                k: statistics.median(r[k] for r in rs)
                for k in ("rows_per_s", "cpu_us_per_row", "cores", "peak_rss_mb")
            }
            print(f"[ice4] {label} median of {len(rs)}: {json.dumps(med)}", file=sys.stderr)
    if args.out:
        args.out.write_text(
            json.dumps({"variants": [list(map(str, v)) for v in variants], "runs": runs}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
