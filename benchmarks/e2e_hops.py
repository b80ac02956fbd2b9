"""Where the end-to-end latency goes, change by change (benchmarks/e2e.py's ``parts``): the probe's
message timestamps joined with `cdc sink`'s per-batch timing lines."""

from __future__ import annotations

import bisect
import itertools
import re
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.e2e_episodes import episodes, print_episodes
from benchmarks.e2e_probes import POLL_S, Clock, quantile

TIMING = re.compile(
    rb"batch changes=(\d+) polled=([\d.]+) handed=([\d.]+) started=([\d.]+) committed=([\d.]+) done=([\d.]+)"
    rb"(?: polls=([\d.@,]+))?"
)

COMMIT = re.compile(rb"commit events=(\d+) why=(\w+) begun=([\d.]+) called=([\d.]+) done=([\d.]+)")


def capture_commits(run_log: Path) -> tuple[list[float], list[float], list[str]]:
    """`cdc run`'s Kafka commits (HEADWATER_CAPTURE_TIMING lines), in order: when each was called,
    when it returned, and why it was made (capture.py's rules)."""
    called: list[float] = []
    done: list[float] = []
    why: list[str] = []
    if run_log.exists():
        for line in run_log.read_bytes().splitlines():
            found = COMMIT.search(line)
            if found is not None:
                called.append(float(found.group(4)))
                done.append(float(found.group(5)))
                why.append(found.group(2).decode())
    return called, done, why


def _split_commit(
    source: float, produced: float, polled: float, called: list[float], done: list[float]
) -> tuple[float, ...]:
    """produced -> polled as (waiting for the commit to be called, the commit, visible -> polled): the
    change's Kafka transaction is the first whose commit returned after it was produced (message
    timestamps are whole milliseconds: a change produced in the millisecond a commit returned in may
    be put in that one). First, the part of binlog_to_produced spent behind the commit before: from
    the source commit to the return of a Kafka commit in flight then (0 when none was)."""
    j = bisect.bisect_right(done, produced)
    if j == len(done):
        return (float("nan"),) * 4
    before = bisect.bisect_right(called, source) - 1  # the last commit called before the source commit
    behind = max(0.0, min(done[before], produced) - source) if before >= 0 else 0.0
    return behind, called[j] - produced, done[j] - called[j], polled - done[j]


def latency_parts(
    clock: Clock, sink_log: Path, started: float, ended: float, run_log: Path | None = None
) -> dict[str, Any]:
    """Where the latency of the changes written in [started, ended] went, change by change.

    The probe and `cdc sink` both read the one partition from its first message, in order, so the
    k-th message the probe saw is the k-th change of the sink's batches (their timing lines, in
    order): each change gets the times of every hop. Returns p50/p99 of each part and, for the
    slowest 1% of changes (end to end), the mean of each part: what the p99 is made of."""
    batches: list[tuple[int, float, float, float, float, float]] = []
    # each change's own poll: a batch gathers the polls made while the batch before was applied
    polled_at: list[float] = []
    for line in sink_log.read_bytes().splitlines():
        found = TIMING.search(line)
        if found is not None:
            n, *times, polls = found.groups()
            batch = (int(n), *(float(t) for t in times))
            batches.append(batch)  # type: ignore[arg-type]
            if polls:
                for poll in polls.split(b","):
                    count, at = poll.split(b"@")
                    polled_at.extend([float(at)] * int(count))
            else:
                polled_at.extend([batch[1]] * int(n))
    # the hops: INSERT returned (MariaDB's commit), produced by `cdc run` (the message's timestamp),
    # polled by `cdc sink` (the Kafka transaction's commit and the fetch: `cdc sink` cannot poll a
    # change before it is visible, and the probe, even in its own process, saw changes ~10 ms after
    # `cdc sink` at 10k/s under load), handed to its sink thread, taken up by it, committed in
    # PostgreSQL, seen by the poller
    names: tuple[str, ...] = ("source_commit", "binlog_to_produced", "commit_to_polled", "sink_fill",
             "sink_wait_thread", "sink_apply_commit", "poller")  # fmt: skip
    # commit_to_polled split by `cdc run`'s commit timing lines, when it wrote them
    called, done, why = capture_commits(run_log) if run_log is not None else ([], [], [])
    if called:
        names += ("behind_previous_commit", "capture_commit_wait", "capture_commit", "visible_to_polled")
    lag: list[float] = []  # the probe's "visible" after `cdc sink`'s poll: its lag
    rows: list[tuple[float, ...]] = []
    timeline: list[tuple[float, tuple[float, ...]]] = []  # (write time, row): the slow episodes
    k = 0
    with clock.lock:
        seq = list(clock.seq)
        for n, _first, handed, begun, committed, _done in batches:
            for j, (i, visible, produced) in enumerate(seq[k : k + n], start=k):
                polled = polled_at[j]
                written, seen = clock.write_time.get(i), clock.seen_at.get(i)
                source = clock.source_commit.get(i)
                if written is None or seen is None or source is None or not started <= written <= ended:
                    continue
                hops = (written, source, produced, polled, handed, begun, committed, seen)
                split = _split_commit(source, produced, polled, called, done) if called else ()
                rows.append((seen - written, *(b - a for a, b in itertools.pairwise(hops)), *split))
                timeline.append((written, rows[-1]))
                lag.append(visible - polled)
            k += n
    # after the COMMIT, on the sink thread before it takes the next batch (metrics, Arrow's memory)
    after = [done - committed for _n, _p, _h, _b, committed, done in batches]
    if not rows:
        return {"changes": 0, "note": "no sink timing lines (a tree without them?)"}
    rows.sort()
    worst = rows[int(len(rows) * 0.99) :]
    out: dict[str, Any] = {"changes": len(rows), "batches": len(batches), "poll_period_s": POLL_S}
    if called:
        # the commits made while the measured changes were written, and why (capture.py's rules)
        window = [j for j, at in enumerate(called) if started <= at <= ended]
        took = sorted(done[j] - called[j] for j in window)
        out["capture_commits"] = {
            "per_s": len(window) / max(ended - started, 1e-9),
            "commit_p50_ms": quantile(took, 0.5) * 1000,
            "commit_p99_ms": quantile(took, 0.99) * 1000,
            "why": {reason: sum(1 for j in window if why[j] == reason) for reason in sorted(set(why))},
            # the commits over 30 ms: (when called, wall clock; how long, ms), to line up with logs
            "slow": [
                (called[j], round((done[j] - called[j]) * 1000, 1))
                for j in window
                if done[j] - called[j] > 0.03
            ],
        }
    out["probe_lag_behind_sink"] = {
        "mean_ms": sum(lag) / len(lag) * 1000,
        "p50_ms": quantile(lag, 0.5) * 1000,
        "p99_ms": quantile(lag, 0.99) * 1000,
        "slowest_1pct_mean_ms": float("nan"),
    }
    out["sink_after_commit_per_batch"] = {
        "mean_ms": sum(after) / max(len(after), 1) * 1000,
        "p50_ms": quantile(after, 0.5) * 1000,
        "p99_ms": quantile(after, 0.99) * 1000,
        "slowest_1pct_mean_ms": float("nan"),
    }
    for j, name in enumerate(names, start=1):
        values = [row[j] for row in rows if row[j] == row[j]]  # not NaN (no commit line for it)
        if not values:
            continue
        out[name] = {
            "mean_ms": sum(values) / len(values) * 1000,
            "p50_ms": quantile(values, 0.5) * 1000,
            "p99_ms": quantile(values, 0.99) * 1000,
            "slowest_1pct_mean_ms": _mean([row[j] for row in worst]) * 1000,
        }
    out["episodes"] = episodes(timeline, names)
    out["total"] = {
        "mean_ms": sum(row[0] for row in rows) / len(rows) * 1000,
        "p50_ms": rows[len(rows) // 2][0] * 1000,
        "p99_ms": rows[int(len(rows) * 0.99)][0] * 1000,
        "slowest_1pct_mean_ms": sum(row[0] for row in worst) / len(worst) * 1000,
    }
    return out


def _mean(values: list[float]) -> float:
    known = [v for v in values if v == v]  # not NaN
    return sum(known) / len(known) if known else float("nan")


def print_parts(parts: dict[str, Any], rate: int) -> None:
    """The breakdown as a table on stderr: mean / p50 / p99 / the slowest 1%'s mean of each hop, ms."""
    if not parts.get("changes"):
        print(f"no breakdown: {parts.get('note', 'no changes')}", file=sys.stderr)
        return
    title = f"where the latency went at {rate:,}/s, ms (mean / p50 / p99 / slowest 1%'s mean):"
    print(title, file=sys.stderr)
    for name, value in parts.items():
        if isinstance(value, dict) and "p50_ms" in value:
            cells = " / ".join(
                f"{value[k]:,.1f}" for k in ("mean_ms", "p50_ms", "p99_ms", "slowest_1pct_mean_ms")
            )
            print(f"  {name:<28} {cells}", file=sys.stderr)
    commits = parts.get("capture_commits")
    if commits:
        print(
            f"  capture: {commits['per_s']:.1f} Kafka commits/s, each {commits['commit_p50_ms']:.1f} ms p50,"
            f" {commits['commit_p99_ms']:.1f} p99; why: {commits['why']}",
            file=sys.stderr,
        )
        if commits.get("slow"):
            slow = ", ".join(
                time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d} {ms:g} ms"
                for at, ms in commits["slow"][:12]
            )
            print(f"  commits over 30 ms: {slow}", file=sys.stderr)
    print(f"  {parts['changes']:,} changes in {parts['batches']:,} batches", file=sys.stderr, flush=True)
    print_episodes(parts.get("episodes", []), parts["changes"])
