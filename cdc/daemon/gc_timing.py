"""The cycle collector's pauses in a daemon's timing log (HEADWATER_SINK_TIMING / _CAPTURE_TIMING),
so that `benchmarks.e2e` can line them up with the run's slow episodes (benchmarks/e2e_stalls.py).

A collection holds the GIL for its whole length: every thread of the process waits on it. One DEBUG
line per collection of at least ``min_ms``: ``gc gen=<0-2> start=<wall clock> ms=<length>
collected=<objects>``. Installed only when the timing log is on (two callbacks per collection).
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

__all__ = ["log_collections"]


_installed: set[str] = set()


def log_collections(log: logging.Logger, min_ms: float = 1.0) -> None:
    """Log every collection of at least ``min_ms`` to ``log`` (DEBUG), from now on (once per log)."""
    if log.name in _installed:
        return
    _installed.add(log.name)
    started = [0.0, 0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0], started[1] = time.time(), time.perf_counter()
            return
        took = (time.perf_counter() - started[1]) * 1000
        if took >= min_ms:
            log.debug(
                "gc gen=%d start=%.6f ms=%.2f collected=%d",
                info.get("generation", -1), started[0], took, info.get("collected", 0),
            )  # fmt: skip

    gc.callbacks.append(callback)
