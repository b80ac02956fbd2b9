"""After a sink batch: hand what the batch freed back to the system, when the process is near its peak.

The runner used to call Arrow's ``release_unused`` after every batch. On the system pool (which
`cdc sink` runs Arrow on, memory_settings.py) that is glibc's ``malloc_trim(0)``. The trim itself
is cheap (~1 ms of CPU per call into Iceberg, measured), but it hands back every free page, and the
next batch faults most of them in again: trimming after every batch cost 1.1-2.2 CPU-us per change
into Iceberg against never trimming (4.1 vs 5.3-6.3), while never trimming raised the peak RSS from
~217 to 230-260 MiB (ice, sessions 11-12, benchmarks/iceberg_memory_ab.py).

Only the peak is a limit: a trim while the process is well below the highest it has been saves
nothing that matters and costs the faults. So ``HeapTrim`` trims when the resident set at the end of
a batch is within ``margin`` bytes of the highest seen at a batch's end (and at least every
``every_s`` seconds, so an idle or quieter sink still gives back what a burst left), and skips the
trim otherwise.

Measured (benchmarks/iceberg_memory_ab.py, 200k changes into Iceberg, the child pinned, variants
alternated; results_ice3 in benchmarks/results): in batches of 500 changes (a sink below saturation
gets small batches), every batch 7.44 CPU-us per change, 96k rows/s, peak 208 MiB; this policy 5.71
us, 131k rows/s, 209 MiB (lower CPU in 5 of 5 pairs, load 3.8-4.8). In the benchmark's own batches
(5k changes) it is within noise of every batch (the process stays near its peak there): peak RSS
218 vs 218 MiB, CPU per pair 0.80-1.10x. Trimming every 8th batch instead saved ~20% of the CPU there
but raised the peak 14-20 MiB; trimming only before each Iceberg commit raised it ~25 MiB.

glibc's count of free bytes (``mallinfo2``'s ``fordblks``) cannot stand in for the resident set: a
trimmed free chunk stays free, no longer resident (measured: 30-80 MiB "free" after every batch with
a trim after each). Other pools (an operator's ARROW_DEFAULT_MEMORY_POOL: their own caches) and
systems without /proc keep the old behaviour, ``release_unused`` after every batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

__all__ = ["TRIM_EVERY_S", "TRIM_MARGIN_BYTES", "HeapTrim", "resident_bytes", "trim_after_batch"]

TRIM_MARGIN_BYTES = 16 << 20  # see HeapTrim; measured in the module's commit
TRIM_EVERY_S = 10.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident set (None: no /proc)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


class HeapTrim:
    """``after_batch`` once per batch (from one thread at a time); it returns whether it trimmed."""

    __slots__ = ("_high", "_last", "_resident", "every_s", "margin", "trims")

    def __init__(
        self,
        margin: int = TRIM_MARGIN_BYTES,
        every_s: float = TRIM_EVERY_S,
        resident: Callable[[], int | None] = resident_bytes,
    ) -> None:
        self.margin = margin
        self.every_s = every_s
        self.trims = 0
        self._resident = resident
        self._high = 0  # the highest resident set seen at a batch's end
        self._last = time.monotonic()

    def after_batch(self) -> bool:
        import pyarrow as pa

        pool = pa.default_memory_pool()
        if pool.backend_name == "system":
            resident = self._resident()
            if resident is not None:
                self._high = max(self._high, resident)
                if resident < self._high - self.margin and time.monotonic() - self._last < self.every_s:
                    return False
        pool.release_unused()  # the system pool: malloc_trim(0)
        self.trims += 1
        self._last = time.monotonic()
        return True


_PROCESS = HeapTrim()  # the resident set is the process's: one high-water mark for all its runners


def trim_after_batch() -> bool:
    """The process's ``HeapTrim.after_batch`` (the sink runner calls it after each batch)."""
    return _PROCESS.after_batch()
