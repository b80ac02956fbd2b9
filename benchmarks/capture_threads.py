"""Capture CPU per row, per thread: the writer (main) thread, the binlog reading thread, and the rest
(librdkafka's threads), for one capture of a binlog range in this process.

    python -m benchmarks.capture_threads RANGE_JSON SERVER_ID [--pipeline NAME]

``RANGE_JSON``: a range as capspeed_ab's ``--out`` file lists it (``{"name", "file", "start",
"stop", "rows"}``). Run it pinned (``taskset -c 1``) with ``PYTHONPATH`` set to the tree to measure,
alternating trees for an A/B. Prints one JSON line. CPU is ``thread_time`` of each Python thread
(the reading thread's taken when its loop ends) and ``process_time`` for the whole capture; the
rest is librdkafka's threads (compression, requests). On a shared machine the per-thread figures
move much less between rounds than rows/s, which is set by how much of the core the capture got.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

from benchmarks import tasks
from cdc.daemon import pump
from cdc.devstack.connections import StackConnections, default_state_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("range", help="the binlog range, as JSON")
    parser.add_argument("server_id", type=int, help="this capture's replica server_id")
    parser.add_argument("--pipeline", default=None)
    args = parser.parse_args(argv)
    reader_cpu: list[float] = []
    run = pump.ReaderPump._run

    def timed_run(self: pump.ReaderPump) -> None:
        try:
            run(self)
        finally:
            reader_cpu.append(time.thread_time())

    pump.ReaderPump._run = timed_run  # type: ignore[method-assign]
    pipeline = args.pipeline or f"capthreads{uuid.uuid4().hex[:8]}"
    task_args = {"range": json.loads(args.range), "pipeline": pipeline, "server_id": args.server_id}
    stack = StackConnections.read(default_state_dir())
    process0, main0 = time.process_time(), time.thread_time()
    result = tasks.capture(stack, task_args)
    writer = time.thread_time() - main0
    total = time.process_time() - process0
    rows = int(result["rows"])
    reader = sum(reader_cpu)
    out = {
        "rows": rows,
        "rows_per_s": rows / float(result["seconds"]),
        "total_us": total / rows * 1e6,
        "writer_us": writer / rows * 1e6,
        "reader_us": reader / rows * 1e6,
        "rest_us": (total - writer - reader) / rows * 1e6,
        "load1": os.getloadavg()[0],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
