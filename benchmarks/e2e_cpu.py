"""What the end-to-end run's processes spent over the measured window (benchmarks/e2e.py): CPU time and
time spent runnable but waiting for a core (the kernel's schedstat, summed over each process's
threads), per change, with the load average. On the shared 2-core machine the tail follows the run
queue: at load ~4, `cdc run` and MariaDB each waited ~5 s for a core per second of CPU they got."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CpuSample",
    "by_thread",
    "cpu_per_change",
    "kafka_pid",
    "local_ports",
    "sample",
    "sample_all",
    "thread_shares",
]


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


def by_thread(pid: int) -> dict[str, float]:
    """The process's CPU seconds so far by thread name (``comm``): librdkafka names its threads
    (rdk:main, rdk:broker<id>), Python's all carry the process's name."""
    out: dict[str, float] = {}
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with (
                open(f"/proc/{pid}/task/{task}/comm") as comm,
                open(f"/proc/{pid}/task/{task}/schedstat") as stat,
            ):
                name = comm.read().strip()
                out[name] = out.get(name, 0.0) + int(stat.read().split()[0]) / 1e9
    except (OSError, ValueError):
        pass
    return out


def thread_shares(before: dict[str, float], after: dict[str, float], changes: int) -> dict[str, float]:
    """CPU-us per change by thread name between two :func:`by_thread` samples."""
    if changes <= 0:
        return {}
    return {name: (cpu - before.get(name, 0.0)) / changes * 1e6 for name, cpu in after.items()}


def sample_all(pids: list[int]) -> CpuSample | None:
    """:func:`sample` summed over several processes (None if any is gone)."""
    parts = [sample(pid) for pid in pids]
    if not parts or any(part is None for part in parts):
        return None
    return CpuSample(sum(p.cpu_s for p in parts if p), sum(p.wait_s for p in parts if p))


def local_ports(pid: int, remote_port: int) -> list[int]:
    """The local TCP ports of ``pid``'s sockets connected to ``remote_port`` (IPv4 and IPv6): which
    PostgreSQL backends serve it (pg_stat_activity.client_port), to count their CPU too."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor, for one)
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                ports.append(int(local.rsplit(":", 1)[1], 16))
    return ports


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
