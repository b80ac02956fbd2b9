"""The allocator `cdc sink` runs Arrow with: what a batch's columns freed goes back to the system.

Measured applying 200k changes from Kafka (benchmarks/results/latest.md, "cdc sink memory"): Arrow's
default pool (mimalloc) kept the pages a batch's columns freed, even after ``release_unused``, and
the runner's ``release_unused`` after each batch started that pool even for sinks that never use
Arrow (SQLite, MariaDB). Peak RSS with mimalloc / with the system allocator, same runs: PostgreSQL
245-262 / 198-208 MiB, SQLite 221-229 / 196-199, at the same rows per CPU-second.

Not taken: at most two glibc arenas (``mallopt(M_ARENA_MAX, 2)``) took another 4-9 MiB off, but the
Python thread then shares an arena with librdkafka's, and SQLite's rows per CPU-second fell ~15%
in most runs; four arenas saved nothing. An operator may still set MALLOC_ARENA_MAX.
"""

from __future__ import annotations

import os

import pyarrow as pa

__all__ = ["use_lean_allocators"]


def use_lean_allocators() -> None:
    """Arrow through malloc from now on, unless ARROW_DEFAULT_MEMORY_POOL chose a pool.

    Arrow tracks the pool of each buffer, so switching with buffers alive is safe."""
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())
