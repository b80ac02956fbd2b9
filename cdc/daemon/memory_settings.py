"""The allocators `cdc sink` runs with: what the process holds between batches goes back to the system.

Measured applying 200k changes from Kafka into PostgreSQL (benchmarks/results/latest.md, "cdc sink
memory"), peak RSS:

- Arrow's default pool (mimalloc) kept the pages a batch's columns freed, even after
  ``release_unused``, and the runner's ``release_unused`` after each batch started it even for
  sinks that never use Arrow (SQLite, MariaDB): 245 MiB into PostgreSQL, 221 into SQLite; with the
  system allocator 203-208 and 199, at the same rows per CPU-second.
- glibc gives each thread that allocates its own arena (librdkafka's broker threads, the Iceberg
  committer), each keeping its freed memory: two arenas took 9 MiB more off (206 -> 197), same CPU.

An operator's ARROW_DEFAULT_MEMORY_POOL, MALLOC_ARENA_MAX or GLIBC_TUNABLES arena setting wins.
"""

from __future__ import annotations

import ctypes
import logging
import os

import pyarrow as pa

__all__ = ["use_lean_allocators"]

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # glibc's malloc.h
ARENA_MAX = 2


def use_lean_allocators() -> None:
    """Before the consumer's and the sinks' threads start: Arrow through malloc, at most two arenas.

    Arrow tracks the pool of each buffer, so switching pools with buffers alive is safe; an arena
    limit applies to the arenas created after it, hence before the threads start."""
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())
    if os.environ.get("MALLOC_ARENA_MAX") or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc (musl, macOS): their allocators are left as they are
    if not mallopt(_M_ARENA_MAX, ARENA_MAX):
        log.debug("mallopt(M_ARENA_MAX, %d) refused", ARENA_MAX)
