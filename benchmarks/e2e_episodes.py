"""The end-to-end benchmark's slow episodes: the p99 of a 45 s run at 10k changes/s is made by the
slowest 4,500 changes, i.e. by one or two stalls of a few hundred milliseconds. Grouping the changes
over the threshold by write time shows each stall: when it began (to line up with the broker's,
MariaDB's and PostgreSQL's logs), how many changes it held, and which hop held them."""

from __future__ import annotations

import sys
import time
from typing import Any

# changes slower than this end to end belong to an episode; one ends at a gap of GAP_S between them
THRESHOLD_S = 0.1
GAP_S = 0.05


def episodes(
    timeline: list[tuple[float, tuple[float, ...]]], names: tuple[str, ...], threshold_s: float = THRESHOLD_S
) -> list[dict[str, Any]]:
    """``timeline``: (write time, row) per change, row = (total, *hops as ``names``). The runs of
    changes over ``threshold_s``, biggest first: start, span, count, worst total, mean of each hop."""
    slow = sorted((written, row) for written, row in timeline if row[0] > threshold_s)
    groups: list[list[tuple[float, tuple[float, ...]]]] = []
    for item in slow:
        if groups and item[0] - groups[-1][-1][0] <= GAP_S:
            groups[-1].append(item)
        else:
            groups.append([item])
    out: list[dict[str, Any]] = []
    for group in groups:
        first = group[0][0]
        hops: dict[str, float] = {}
        for j, name in enumerate(names, start=1):
            values = [row[j] for _, row in group if len(row) > j and row[j] == row[j]]
            if values:
                hops[name] = round(sum(values) / len(values) * 1000, 1)
        out.append(
            {
                "start": time.strftime("%H:%M:%S", time.gmtime(first)) + f".{int(first % 1 * 1000):03d}",
                "start_epoch": first,
                "span_ms": round((group[-1][0] - first) * 1000, 1),
                "changes": len(group),
                "worst_ms": round(max(row[0] for _, row in group) * 1000, 1),
                "mean_hops_ms": hops,
            }
        )
    out.sort(key=lambda e: -e["changes"])
    return out


def print_episodes(found: list[dict[str, Any]], total: int, shown: int = 6) -> None:
    if not found:
        print(f"  no change over {THRESHOLD_S * 1000:.0f} ms", file=sys.stderr)
        return
    over = sum(e["changes"] for e in found)
    print(
        f"  {over:,} changes ({over / max(total, 1):.2%}) over {THRESHOLD_S * 1000:.0f} ms in"
        f" {len(found)} episodes; the largest:",
        file=sys.stderr,
    )
    for e in found[:shown]:
        hops = ", ".join(f"{k} {v:g}" for k, v in e["mean_hops_ms"].items() if v >= 5)
        print(
            f"    {e['start']} {e['changes']:,} changes over {e['span_ms']:.0f} ms, worst"
            f" {e['worst_ms']:.0f} ms; mean ms: {hops}",
            file=sys.stderr,
        )
        during = e.get("during")
        if during:
            # benchmarks/e2e_stalls.py: CPU got / run-queue wait per process over the episode's window
            procs = ", ".join(
                f"{k} {v['cpu_ms']:g}/{v['runq_wait_ms']:g}"
                for k, v in during.items()
                if isinstance(v, dict) and "cpu_ms" in v
            )
            gcs = ", ".join(
                f"{k} {v['count']}x {v['ms']:g} ms" for k, v in during.items() if k.startswith("gc_")
            )
            print(
                f"      over {during.get('window_ms', 0):g} ms, cpu/run-queue wait ms: {procs}; others"
                f" {during.get('others_cores', 0):g} cores of {during.get('machine_busy_cores', 0):g}"
                + (f"; {gcs}" if gcs else "")
                + (f"; fsync {during['slowest_fsync_ms']:g} ms" if "slowest_fsync_ms" in during else "")
                + f"; disk {during.get('disk_mb_written', 0):g} MB written ("
                + ", ".join(
                    f"{k} {v['written_mb']:g}"
                    for k, v in during.items()
                    if isinstance(v, dict) and v.get("written_mb")
                )
                + f"), {during.get('disk_mb_discarded', 0):g} MB discarded",
                file=sys.stderr,
            )
