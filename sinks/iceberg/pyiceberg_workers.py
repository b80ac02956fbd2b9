"""pyiceberg's thread pool in a sink process: one worker, unless the operator configured it.

pyiceberg writes a commit's data files and manifests on its process-wide ``ExecutorFactory`` pool,
by default ``cpu_count + 4`` threads. The history writes one Parquet file per table and day per
commit, so the pool mostly had one task at a time (a commit spanning several days now writes their
files one after another), but each task could land on another thread, and each thread allocates
from a glibc arena of its own, which keeps what a commit freed for that thread's next turn: several
commits' worth of freed Parquet buffers stayed resident. With one
worker, `cdc sink` applying 200k changes into Iceberg (benchmarks/iceberg_memory_ab.py, 5 interleaved
rounds, load 5-13): peak RSS median 241 (239-244) MiB against 263 (260-278), lower in every round;
CPU per change 4.80 (4.47-5.77) against 4.44 (3.94-5.31) us, within this machine's noise (an earlier
3-round run: 4.19 against 4.39). Two workers: 247 (242-264) MiB.

``PYICEBERG_MAX_WORKERS`` or ``max-workers`` in ``.pyiceberg.yaml`` (pyiceberg's own settings) still
win; so does a pool pyiceberg already made in this process.
"""

from __future__ import annotations

import os

from pyiceberg.utils.concurrent import ExecutorFactory

__all__ = ["SINK_WORKERS", "bound_workers"]

SINK_WORKERS = 1
_VARIABLE = "PYICEBERG_MAX_WORKERS"  # read by pyiceberg's Config when it makes its pool


def bound_workers() -> None:
    """Have pyiceberg make its pool with ``SINK_WORKERS`` threads, unless configured otherwise."""
    if ExecutorFactory.max_workers() is None:
        os.environ[_VARIABLE] = str(SINK_WORKERS)
