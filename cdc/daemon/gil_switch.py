"""A shorter GIL switch interval while embedded mode applies: the apply thread waits less for the GIL.

Embedded `cdc run` applies a batch on its own thread while the binlog reader and the daemon's thread
decode and build the next one, all in one process (a benchmark pins it to one core). Each time the
apply thread comes back from its database (the locked read, each COPY, the commit) it needs the GIL
again, which one of the busy threads holds: CPython makes it wait a whole switch interval (5 ms by
default) before it asks the holder to let go. A 10,000-change batch into PostgreSQL comes back ~8
times, and its chain is ~60-70 ms: up to a third of it was spent there (benchmarks/embpg_parts.py:
the locked read took 1.8 us/change of wall for 0.07 of CPU). `cdc sink` decodes without the GIL, so
it did not wait so.

Measured with embpg_parts (200k changes of the wiki mix into PostgreSQL, pinned to one core, 6
alternated rounds at load 4-7.8): 5 ms 72k rows/s, 1 ms 118k (paired 1.69x, faster in 5 of 6),
0.5 ms 79k (1.21x, 5 of 6); the locked read's wall 1.76 -> 0.79 / 0.92 us/change; CPU per change
4.24 / 4.06 / 4.39. See the embpg section of benchmarks/results/latest.md.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["APPLY_SWITCH_INTERVAL_S", "shorter_switch_interval"]

APPLY_SWITCH_INTERVAL_S = 0.001


@contextmanager
def shorter_switch_interval(seconds: float | None = None) -> Iterator[None]:
    """``sys.setswitchinterval(seconds)`` (default APPLY_SWITCH_INTERVAL_S) for the block if it is
    shorter than the interval set; put back as it was after it (the interval is the process's: the
    last block to end sets it back)."""
    seconds = APPLY_SWITCH_INTERVAL_S if seconds is None else seconds
    before = sys.getswitchinterval()
    if seconds >= before:
        yield
        return
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
