"""Fewer cyclic garbage collections while the capture daemon runs (``cdc run`` with a stream).

Capture allocates a few container objects per row (a ChangeEvent, its Position and key tuples, the
writer's message dicts), nearly all freed by reference counting as soon as the row is written. With
Python's default thresholds (700, 10, 10) the collector still ran every ~140 rows, and its full
collections walked everything imported at start too: gc_collect_main, visit_decref and
visit_reachable were ~15% of the capture process's samples (perf, 1000-row statements), with the
two threads sharing one GIL. Freezing what exists at start keeps it out of every later collection,
and a young generation of 20k objects makes collections ~30 times rarer; garbage that only the
collector frees (reference cycles: exceptions with tracebacks, say) is still freed, a little later.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["YOUNG_THRESHOLD", "fewer_collections"]

YOUNG_THRESHOLD = 20_000


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Freeze the objects that exist now and raise the young generation's threshold, for the body;
    both are put back as they were after it."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(before[0], YOUNG_THRESHOLD), before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
