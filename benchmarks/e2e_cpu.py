"""What the end-to-end run's processes spent over the measured window (benchmarks/e2e.py): CPU time and
time spent runnable but waiting for a core (the kernel's schedstat, summed over each process's
threads), per change, with the load average. On the shared 2-core machine the tail follows the run
queue: at load ~4, `cdc run` and MariaDB each waited ~5 s for a core per second of CPU they got."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuSample", "cpu_per_change", "kafka_pid", "sample"]


@dataclass(frozen=True)
class CpuSample:
    cpu_s: float  # user + system, all threads
    wait_s: float  # runnable, waiting for a core (schedstat's run_delay), all threads


def sample(pid: int | None) -> CpuSample | None:
    """The process's CPU and run-queue wait so far (None if it is gone or unknown)."""
    if pid is None:
        return None
    cpu = wait = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                ran, waited, _ = stat.read().split()
            cpu += int(ran)
            wait += int(waited)
    except (OSError, ValueError):
        return None
    return CpuSample(cpu / 1e9, wait / 1e9)


def kafka_pid(state_dir: Path) -> int | None:
    """The dev stack's broker (its pid file), if this machine runs it."""
    try:
        return int((state_dir / "pids" / "kafka.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_per_change(
    before: dict[str, CpuSample | None], after: dict[str, CpuSample | None], changes: int, seconds: float
) -> dict[str, dict[str, float]]:
    """Per process: CPU-us per change, cores used, and seconds waited for a core per CPU-second."""
    out: dict[str, dict[str, float]] = {}
    for name, start in before.items():
        end = after.get(name)
        if start is None or end is None or changes <= 0 or seconds <= 0:
            continue
        cpu, wait = end.cpu_s - start.cpu_s, end.wait_s - start.wait_s
        out[name] = {
            "cpu_us_per_change": cpu / changes * 1e6,
            "cores": cpu / seconds,
            "runq_wait_per_cpu_s": wait / cpu if cpu > 0 else float("nan"),
        }
    return out


def loadavg() -> float:
    return os.getloadavg()[0]
