"""The disk during the end-to-end run (benchmarks/e2e.py): how long an fsync took, and PostgreSQL's
checkpoints.

The slowest changes of a run often waited on a commit's fsync: MariaDB's of the writer's INSERT (the
redo log, innodb_flush_log_at_trx_commit=1), PostgreSQL's of the sink's batch (the WAL). On this
machine's shared virtual disk an fsync takes ~0.5 ms when the disk is idle and up to ~300 ms while
other writes are queued (other engineers' benchmarks, a PostgreSQL checkpoint's writes and sync):
a run's p99 then says more about the disk than about the pipeline. A probe process appends 4 KiB
and fsyncs a file next to the dev stack's data every ``PERIOD_S`` (20 fsyncs a second, against
MariaDB's ~100 and PostgreSQL's ~50 at 10k changes/s) and reports the distribution and the slow
ones' times, to line up with the run's slow episodes (benchmarks/e2e_episodes.py)."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.e2e_probes import quantile
from cdc.devstack.connections import StackConnections

PERIOD_S = 0.05
SLOW_S = 0.03


def fsync_probe(directory: str, out: Any, stop: Any) -> None:
    """In its own process: (wall clock, seconds) of each fsync until ``stop``, put on ``out`` at the end."""
    path = Path(directory) / f"e2e-fsync-probe-{os.getpid()}.tmp"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND)
    found: list[tuple[float, float]] = []
    block = b"\0" * 4096
    try:
        while not stop.is_set():
            os.write(fd, block)
            at, began = time.time(), time.perf_counter()
            os.fsync(fd)
            found.append((at, time.perf_counter() - began))
            time.sleep(PERIOD_S)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
        out.put(found)


class DiskWatch:
    """The fsync probe over a window, and PostgreSQL's checkpoints (pg_stat_bgwriter) over it."""

    def __init__(self, stack: StackConnections, directory: Path) -> None:
        self._stack = stack
        spawn = multiprocessing.get_context("spawn")
        self._out, self._stop = spawn.Queue(), spawn.Event()
        self._proc = spawn.Process(target=fsync_probe, args=(str(directory), self._out, self._stop))
        self._pg_before: dict[str, float] | None = None

    def start(self) -> None:
        self._proc.start()
        self._pg_before = self._checkpoints()

    def stop(self, started: float, ended: float) -> dict[str, Any]:
        """The fsyncs made in [started, ended] and the checkpoints over the whole watch."""
        self._stop.set()
        found: list[tuple[float, float]] = self._out.get(timeout=30)
        self._proc.join(10)
        took = sorted(d for at, d in found if started <= at <= ended)
        slow = [(at, d) for at, d in found if started <= at <= ended and d > SLOW_S]
        result: dict[str, Any] = {
            "fsyncs": len(took),
            "p50_ms": quantile(took, 0.5) * 1000,
            "p99_ms": quantile(took, 0.99) * 1000,
            "max_ms": (took[-1] if took else float("nan")) * 1000,
            "slow": [(round(at, 3), round(d * 1000, 1)) for at, d in slow],
        }
        after = self._checkpoints()
        if self._pg_before is not None and after is not None:
            result["pg_checkpoints"] = {k: after[k] - self._pg_before[k] for k in after}
        return result

    def _checkpoints(self) -> dict[str, float] | None:
        p = self._stack.postgres
        try:
            with psycopg.connect(
                host=p.host, port=p.port, user=p.user, password=p.password, dbname=p.database, autocommit=True
            ) as conn:
                row = conn.execute(
                    "SELECT checkpoints_timed + checkpoints_req, checkpoint_write_time, checkpoint_sync_time,"
                    " buffers_checkpoint FROM pg_stat_bgwriter"
                ).fetchone()
        except psycopg.Error:
            return None
        if row is None:
            return None
        keys = ("checkpoints", "write_ms", "sync_ms", "buffers")
        return {k: float(v) for k, v in zip(keys, row, strict=True)}


def describe(disk: dict[str, Any]) -> str:
    """One line for the run's report."""
    text = (
        f"disk: fsync of 4 KiB every {PERIOD_S * 1000:.0f} ms: p50 {disk['p50_ms']:.1f} ms, p99"
        f" {disk['p99_ms']:.1f}, max {disk['max_ms']:.1f}; {len(disk['slow'])} over {SLOW_S * 1000:.0f} ms"
    )
    if disk["slow"]:
        text += (
            " ("
            + ", ".join(
                time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d} {ms:g} ms"
                for at, ms in sorted(disk["slow"], key=lambda s: -s[1])[:6]
            )
            + ")"
        )
    pg = disk.get("pg_checkpoints")
    if pg:
        text += (
            f"; PostgreSQL checkpoints ended meanwhile: {pg['checkpoints']:.0f} (sync {pg['sync_ms']:.0f} ms,"
            f" {pg['buffers']:.0f} buffers)"
        )
    return text
