"""The CPU that PostgreSQL's backends spent serving one child process: server time per row.

The dev stack's PostgreSQL serves everyone on the machine, so its database-wide counters mix our
statements with other runs'. A backend serves one connection, and its process title names the
client's port (``postgres: user db 127.0.0.1(PORT) ...``): while the child runs, the backends
whose client port is one of the child's sockets are found, and their CPU (``/proc/PID/stat``) is
sampled every 50 ms; the last sample before each backend exits counts (so a few ms may be missed).
Linux only, and the benchmark must run as a user that can read the backends' /proc entries; where
it cannot, nothing is reported.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["BackendCpu"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BackendCpu:
    """Samples, on a thread, the CPU of the PostgreSQL backends that serve process ``pid``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seconds: dict[int, float] = {}  # backend pid -> its CPU seconds at the last look
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-backend-cpu", daemon=True)

    def __enter__(self) -> BackendCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())

    def _run(self) -> None:
        backends: dict[int, int] = {}  # every postgres backend seen: pid -> client port
        looks = 0
        while not self._stop.wait(0.05):
            if looks % 10 == 0:  # new connections are rare: look for them every half second
                backends = _backends()
            looks += 1
            ports = _ports(self.pid)
            for pid, port in backends.items():
                if port in ports or pid in self.seconds:
                    cpu = _cpu_s(pid)
                    if cpu is not None:
                        self.seconds[pid] = cpu


def _backends() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if not title.startswith(b"postgres: "):
            continue
        _head, sep, rest = title.partition(b"127.0.0.1(")
        port = rest.split(b")", 1)[0]
        if sep and port.isdigit():
            out[int(entry.name)] = int(port)
    return out


def _ports(pid: int) -> set[int]:
    """The local TCP ports of ``pid``'s sockets."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return set()
    ports = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[9] in inodes:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _cpu_s(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
