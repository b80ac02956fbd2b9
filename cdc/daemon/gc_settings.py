"""The cycle collector's settings while a daemon moves changes (`cdc run`, `cdc sink`).

Each change allocates several objects (the envelope's dicts, row tuples, the event, its position),
nearly all freed by reference counting and none in a cycle. With CPython's default thresholds the
cycle collector still ran every 700 allocations and, every hundred runs, walked every object alive,
the drivers' modules included. Frozen (the objects alive at the start are left out of every
collection) and with a larger young generation, `cdc sink` into PostgreSQL took ~35% less CPU per
change, and capture's gc_collect_main/visit_* (~15% of its perf samples on 1000-row statements)
became ~30 times rarer (benchmarks/results/latest.md, A/B in one run). Cycles are still collected,
less often.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CAPTURE_YOUNG_THRESHOLD", "YOUNG_THRESHOLD", "fewer_collections"]

# allocations between two young-generation collections (CPython's default: 700)
YOUNG_THRESHOLD = 50_000
# capture's, measured on its own (two threads share the GIL there): 20k
CAPTURE_YOUNG_THRESHOLD = 20_000


@contextmanager
def fewer_collections(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """The settings above for the block; put back as they were after it."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(young, threshold[0]), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
