"""The allocator `cdc sink` runs Arrow with: what a batch's columns freed goes back to the system.

Measured applying 200k changes from Kafka (benchmarks/results/latest.md, "cdc sink memory"): Arrow's
default pool (mimalloc) kept the pages a batch's columns freed, even after ``release_unused``, and
the runner's ``release_unused`` after each batch started that pool even for sinks that never use
Arrow (SQLite, MariaDB). Peak RSS with mimalloc / with the system allocator, same runs: PostgreSQL
245-262 / 198-208 MiB, SQLite 221-229 / 196-199, at the same rows per CPU-second.

``use_lean_allocators`` only changes pyarrow's default: Arrow's C++ code that asks for its own default
pool still gets mimalloc, which is chosen once, when pyarrow is loaded. Parquet's writer is such code
(pyarrow never gives its ``WriterProperties`` a pool): every history commit of the Iceberg sink
encoded its files in mimalloc, whose 1 GiB arena (transparent huge pages, flag ``hg``) held 58 MiB
resident at `cdc sink`'s peak while the pool's own count never passed 5.2 MiB. With
``system_pool_from_start`` called before pyarrow loads, that arena is never made: the Iceberg
benchmark's peak RSS (benchmarks/iceberg_memory_ab.py, 200k changes) fell by ~20 MiB, see
``system_pool_from_start``.

Not taken: at most two glibc arenas (``mallopt(M_ARENA_MAX, 2)``) took another 4-9 MiB off, but the
Python thread then shares an arena with librdkafka's, and SQLite's rows per CPU-second fell ~15%
in most runs; four arenas saved nothing. An operator may still set MALLOC_ARENA_MAX. Switching
transparent huge pages off for the process at ``use_lean_allocators`` (``PR_SET_THP_DISABLE``, the
arena already made) took 5 MiB off the Iceberg peak against ~20 for the pool from the start.
"""

from __future__ import annotations

import os

__all__ = ["POOL_VARIABLE", "system_pool_from_start", "use_lean_allocators"]

POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"  # Arrow reads it once, when pyarrow is loaded


def system_pool_from_start() -> None:
    """Make the system allocator Arrow's C++ default pool, unless the operator chose one.

    Works only before pyarrow is first imported (Arrow reads the variable when it loads): call it
    at the top of a process that will run a sink, before anything imports pyarrow. The variable is
    set for the process (and what it starts), as an operator would set it."""
    os.environ.setdefault(POOL_VARIABLE, "system")


def use_lean_allocators() -> None:
    """Arrow through malloc from now on, unless ARROW_DEFAULT_MEMORY_POOL chose a pool.

    Arrow tracks the pool of each buffer, so switching with buffers alive is safe."""
    import pyarrow as pa

    if not os.environ.get(POOL_VARIABLE):
        pa.set_memory_pool(pa.system_memory_pool())
