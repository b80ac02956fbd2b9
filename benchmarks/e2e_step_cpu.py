"""Where the cores went during one step of the end-to-end rate search (benchmarks/e2e.py ``_step``).

A step not held names the part that fell behind (writer, capture, sink), but on the 2-core machine a
part falls behind because the cores were taken, often by another process. Over each step this takes
the CPU (schedstat, all threads) of `cdc run`, `cdc sink`, the broker, MariaDB, PostgreSQL (every
process under the postmaster), the benchmark itself (its writer, poller and probe) and the machine's
busy CPU, and gives each as cores used and CPU-us per change written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from benchmarks.e2e_cpu import CpuSample, sample
from benchmarks.e2e_stalls import _machine_busy_s

__all__ = ["StepCpu", "describe"]


@dataclass(frozen=True)
class _Snapshot:
    processes: dict[str, dict[int, CpuSample]]  # name -> pid -> its CPU so far
    machine_s: float


class StepCpu:
    """``processes``: name -> pids (0 or missing pids are left out)."""

    def __init__(self, processes: Mapping[str, list[int]]) -> None:
        self._processes = {name: [p for p in pids if p] for name, pids in processes.items()}
        self._start: _Snapshot | None = None

    def _take(self) -> _Snapshot:
        taken: dict[str, dict[int, CpuSample]] = {}
        for name, pids in self._processes.items():
            samples = {pid: sample(pid) for pid in pids}
            taken[name] = {pid: s for pid, s in samples.items() if s is not None}
        return _Snapshot(taken, _machine_busy_s())

    def start(self) -> None:
        self._start = self._take()

    def stop(self, changes: int, seconds: float) -> dict[str, dict[str, float]]:
        """Per process (and ``machine``, ``rest`` = the machine minus the named processes): cores
        used over ``seconds`` and CPU-us per change. A pid gone by the end (a PostgreSQL backend
        that closed) is left out of its group."""
        assert self._start is not None, "stop before start"
        end, start = self._take(), self._start
        out: dict[str, dict[str, float]] = {}
        named = 0.0
        for name, before in start.processes.items():
            after = end.processes.get(name, {})
            both = [pid for pid in before if pid in after]
            if not both:
                continue
            cpu = sum(after[p].cpu_s - before[p].cpu_s for p in both)
            wait = sum(after[p].wait_s - before[p].wait_s for p in both)
            named += cpu
            out[name] = _figures(cpu, wait, changes, seconds)
        machine = end.machine_s - start.machine_s
        out["machine"] = _figures(machine, 0.0, changes, seconds)
        out["rest"] = _figures(max(machine - named, 0.0), 0.0, changes, seconds)
        return out


def _figures(cpu: float, wait: float, changes: int, seconds: float) -> dict[str, float]:
    return {
        "cores": cpu / seconds if seconds > 0 else 0.0,
        "cpu_us_per_change": cpu / changes * 1e6 if changes > 0 else 0.0,
        "runq_wait_per_cpu_s": wait / cpu if cpu > 0 else 0.0,
    }


def describe(cpu: Mapping[str, Mapping[str, float]]) -> str:
    """One line: each process's cores and us per change."""
    return ", ".join(
        f"{name} {c['cores']:.2f} cores {c['cpu_us_per_change']:.1f} us" for name, c in cpu.items()
    )
