"""What each process did during the end-to-end run's slow episodes (benchmarks/e2e.py): a sampler
takes, every SAMPLE_S, the CPU time and run-queue wait (schedstat, summed over threads) of `cdc run`,
`cdc sink`, the broker, MariaDB, PostgreSQL (every backend: the sink's and the benchmark's poller)
and the benchmark itself (this process and its probe), and the machine's busy CPU (/proc/stat);
the daemons' garbage collections come from their timing logs (``gc gen=`` lines, cdc/daemon/
gc_timing.py). Each episode then gets, over its window (from STALL_LEAD_S before its first slow
change to its end plus its worst latency): per process, the CPU it got and how long its threads
waited for a core; the CPU the rest of the machine used (other engineers' work); the collections.

The question it answers: which stall makes the tail. A stall where every process of the pipeline
waited long for a core while the rest of the machine was busy is CPU starvation; one where one
process waited on something else (its run-queue wait low, its hop long) is that process's own.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.e2e_cpu import CpuSample, sample

__all__ = ["STALL_LEAD_S", "StallSampler", "gc_pauses", "postgres_pids"]

# one sample reads ~250 schedstat files (the broker alone has ~150 threads): ~2.2 ms of CPU, so
# every 100 ms it costs the machine ~2% of a core
SAMPLE_S = 0.1
STALL_LEAD_S = 0.2
_TICK = os.sysconf("SC_CLK_TCK")
_GC = re.compile(rb"gc gen=(\d) start=([\d.]+) ms=([\d.]+)")


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (every core: /proc/stat's first line)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


def _written(pid: int) -> int:
    """Bytes the process caused to be written to storage so far (/proc/<pid>/io write_bytes)."""
    try:
        with open(f"/proc/{pid}/io") as io:
            for line in io:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _disk() -> tuple[float, float, float]:
    """The busiest block device so far: MB written, MB discarded, cache flushes (/proc/diskstats)."""
    best = (0.0, 0.0, 0.0)
    with open("/proc/diskstats") as stats:
        for line in stats:
            f = line.split()
            if len(f) >= 20 and f[2][-1].isalpha() and int(f[9]) / 2048 > best[0]:
                best = (int(f[9]) / 2048, int(f[16]) / 2048, float(f[18]))
    return best


def postgres_pids(postmaster: int | None) -> list[int]:
    """Every child of the PostgreSQL postmaster (backends, WAL writer, checkpointer)."""
    if postmaster is None:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == postmaster:
                out.append(int(entry))
    return out


class StallSampler:
    """Samples the named processes (name -> pids) every SAMPLE_S on a thread of its own."""

    def __init__(self, processes: Mapping[str, list[int]]) -> None:
        self._processes = {name: [p for p in pids if p] for name, pids in processes.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.samples: list[tuple[float, float, dict[str, CpuSample]]] = []
        # (MB written by each process so far, the device's MB written / discarded and flushes)
        self.io: list[tuple[dict[str, float], tuple[float, float, float]]] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            taken: dict[str, CpuSample] = {}
            for name, pids in self._processes.items():
                cpu = wait = 0.0
                for pid in pids:
                    found = sample(pid)
                    if found is not None:
                        cpu += found.cpu_s
                        wait += found.wait_s
                taken[name] = CpuSample(cpu, wait)
            written = {name: sum(map(_written, pids)) / 1e6 for name, pids in self._processes.items()}
            self.io.append((written, _disk()))
            self.samples.append((time.time(), _machine_busy_s(), taken))

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Per process over [start, end]: CPU ms and run-queue wait ms; the rest of the machine's CPU."""
        at = [i for i, s in enumerate(self.samples) if start <= s[0] <= end]
        if len(at) < 2:
            return {}
        (t0, busy0, first), (t1, busy1, last) = self.samples[at[0]], self.samples[at[-1]]
        (w0, d0), (w1, d1) = self.io[at[0]], self.io[at[-1]]
        out: dict[str, Any] = {"window_ms": round((t1 - t0) * 1000, 1)}
        ours = 0.0
        for name in first:
            cpu = last[name].cpu_s - first[name].cpu_s
            ours += cpu
            out[name] = {
                "cpu_ms": round(cpu * 1000, 1),
                "runq_wait_ms": round((last[name].wait_s - first[name].wait_s) * 1000, 1),
                "written_mb": round(w1[name] - w0[name], 2),
            }
        out["disk_mb_written"] = round(d1[0] - d0[0], 2)
        out["disk_mb_discarded"] = round(d1[1] - d0[1], 2)
        out["disk_flushes"] = d1[2] - d0[2]
        out["machine_busy_cores"] = round((busy1 - busy0) / (t1 - t0), 2)
        out["others_cores"] = round(max(busy1 - busy0 - ours, 0.0) / (t1 - t0), 2)
        return out


def gc_pauses(logs: Mapping[str, Path]) -> dict[str, list[tuple[float, int, float]]]:
    """The daemons' collections from their logs: name -> [(start, generation, ms)]."""
    out: dict[str, list[tuple[float, int, float]]] = {}
    for name, log in logs.items():
        found: list[tuple[float, int, float]] = []
        if log.exists():
            for line in log.read_bytes().splitlines():
                hit = _GC.search(line)
                if hit is not None:
                    found.append((float(hit.group(2)), int(hit.group(1)), float(hit.group(3))))
        out[name] = found
    return out


def annotate(
    found: list[dict[str, Any]],
    sampler: StallSampler,
    gcs: Mapping[str, list[tuple[float, int, float]]],
    fsyncs: list[tuple[float, float]] = (),  # type: ignore[assignment]
) -> None:
    """Each episode gets ``during``: the sampler's window, the collections in it and the disk
    probe's slowest fsync that overlapped it (e2e_disk.py's slow list: start, ms)."""
    for episode in found:
        start = float(episode["start_epoch"]) - STALL_LEAD_S
        end = float(episode["start_epoch"]) + (float(episode["span_ms"]) + float(episode["worst_ms"])) / 1000
        during = sampler.window(start, end)
        for name, pauses in gcs.items():
            inside = [(gen, ms) for at, gen, ms in pauses if start <= at <= end]
            if inside:
                during[f"gc_{name}"] = {"count": len(inside), "ms": round(sum(ms for _, ms in inside), 1)}
        overlapping = [ms for at, ms in fsyncs if at <= end and at + ms / 1000 >= start]
        if overlapping:
            during["slowest_fsync_ms"] = max(overlapping)
        episode["during"] = during
