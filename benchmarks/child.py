"""One measurement in a process of its own: its peak memory is its own, its profile only its work.

    python -m benchmarks.child TASK ARGS_JSON [--profile PREFIX]

Prints one JSON line: the task's result plus ``peak_rss_mb`` (``VmHWM`` from /proc/self/status: the
kernel's high-water mark of this process's resident memory; a fresh exec starts its own). With
``--profile``, every Python thread runs under its own cProfile and ``PREFIX.<thread>.txt`` gets the
top 30 functions by cumulative and by own time (the binlog reader and the Iceberg committer run on
threads of their own, which a plain ``cProfile.run`` would miss).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cdc.devstack.connections import StackConnections, default_state_dir

Task = Callable[[StackConnections, Mapping[str, Any]], dict[str, Any]]


def _tasks() -> dict[str, Task]:
    from benchmarks import tasks

    def reference(stack: StackConnections, args: Mapping[str, Any]) -> dict[str, Any]:
        # imported only here: it loads every target's drivers (pyiceberg, pyarrow: ~100 MiB), which
        # counted in the peak RSS of every sink child, whatever its target
        from benchmarks import references

        return references.reference(stack, args)

    return {
        "capture": tasks.capture,
        "sink_embedded": tasks.sink_embedded,
        "sink_kafka": tasks.sink_kafka,
        "reference": reference,
    }


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """``VmHWM`` of a process in MiB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class ThreadProfiles:
    """A cProfile per Python thread, merged by thread name."""

    def __init__(self) -> None:
        self.done: list[tuple[str, cProfile.Profile]] = []
        self._lock = threading.Lock()
        self._original_run = threading.Thread.run

    def install(self) -> cProfile.Profile:
        profiles = self
        original = self._original_run

        def run(thread: threading.Thread) -> None:
            profile = cProfile.Profile()
            profile.enable()
            try:
                original(thread)
            finally:
                profile.disable()
                with profiles._lock:
                    profiles.done.append((thread.name.split("-")[0].split(" ")[0], profile))

        threading.Thread.run = run  # type: ignore[method-assign]
        main = cProfile.Profile()
        main.enable()
        return main

    def write(self, main: cProfile.Profile, prefix: Path, title: str) -> list[str]:
        main.disable()
        threading.Thread.run = self._original_run  # type: ignore[method-assign]
        merged: dict[str, pstats.Stats] = {"main": pstats.Stats(main)}
        with self._lock:
            for name, profile in self.done:
                if name in merged:
                    merged[name].add(profile)
                else:
                    merged[name] = pstats.Stats(profile)
        written = []
        for name, stats in merged.items():
            if stats.total_calls < 100:  # type: ignore[attr-defined]
                continue  # idle helper threads
            path = prefix.with_name(f"{prefix.name}.{name}.txt")
            path.write_text(format_stats(stats, f"{title} - thread {name}"))
            written.append(str(path))
        return written


def format_stats(stats: pstats.Stats, title: str) -> str:
    out = io.StringIO()
    out.write(f"# {title}\n\n## top 30 by cumulative time\n")
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(30)
    out.write("\n## top 30 by own time (tottime)\n")
    stats.sort_stats("tottime").print_stats(30)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("task")
    parser.add_argument("args")
    parser.add_argument("--profile", type=Path)
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if opts.task in ("sink_kafka", "sink_embedded"):  # as `cdc sink` and `cdc run` do, first
        from cdc.daemon.memory_settings import system_pool_from_start

        system_pool_from_start()
    task = _tasks()[opts.task]
    args = json.loads(opts.args)
    stack = StackConnections.read(default_state_dir())
    profiles = ThreadProfiles() if opts.profile else None
    main_profile = profiles.install() if profiles else None
    result = task(stack, args)
    if profiles and main_profile and opts.profile:
        result["profiles"] = profiles.write(main_profile, opts.profile, f"{opts.task} {json.dumps(args)}")
    result["peak_rss_mb"] = peak_rss_mb()
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
