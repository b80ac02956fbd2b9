"""Where `cdc sink`'s PostgreSQL apply spends its sink thread: wall and thread CPU per change of each part.

    HEADWATER_DEVSTACK_DIR=/work/main/.devstack PYTHONPATH=<tree> taskset -c 1 \\
        .venv/bin/python -m benchmarks.pgsink_parts PIPELINE [--runs N]

Runs ``benchmarks.tasks.sink_kafka`` in this process (the polling thread and the sink thread, as
`cdc sink --until-caught-up` does) on a pipeline ``speedsink_bench`` captured (its topics are still
on the broker), into a fresh schema dropped afterwards, with timers around the column-wise apply's
parts: the batch's transaction, the COPYs (build, send, wait), the locked read of the positions row
and the commit with it (with ``defer_commit``: its send, and the wait for it at the next call), the
stage statements, the collapse. Wall includes the waits for PostgreSQL
and for the GIL; CPU is the sink thread's own (``time.thread_time``). One JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

import benchmarks.decode_bench

benchmarks.decode_bench.DB = "hw_bench_sinks"  # speedsink_bench's database, set before tasks copies it

from benchmarks import tasks  # noqa: E402
from cdc.devstack.connections import StackConnections, default_state_dir  # noqa: E402
from sinks.sql import columnar_apply, pg_columnar, pg_session  # noqa: E402

try:  # trees from before the deferred commit have no such module
    from sinks.sql.pg_deferred_commit import PendingCommit
except ImportError:
    PendingCommit = None  # type: ignore[assignment, misc]

_PARTS = (
    (columnar_apply, "_transaction"),
    (columnar_apply, "_last_per_key"),
    (columnar_apply, "_by_target"),
    (pg_columnar, "run_steps"),
    (pg_columnar, "_copy"),
    (pg_columnar, "execute"),
    (pg_session, "read_locked"),
    (pg_session, "commit_with_state"),
    (pg_session, "send_commit_with_state"),  # defer_commit: sends the write and COMMIT
    (PendingCommit, "confirm"),  # defer_commit: the wait for that COMMIT, at the next call
)


def _timed(fn: Callable[..., Any], label: str, totals: dict[str, list[float]]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            into = totals[label]
            into[0] += 1
            into[1] += time.perf_counter() - wall
            into[2] += time.thread_time() - cpu

    return timed


def per_change(totals: dict[str, list[float]], rows: int) -> dict[str, dict[str, float]]:
    """Each timed part's calls and its wall and CPU microseconds per change."""
    return {
        k: {"calls": int(n), "wall_us": 1e6 * w / rows, "cpu_us": 1e6 * c / rows}
        for k, (n, w, c) in sorted(totals.items())
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("pipeline", help="a pipeline speedsink_bench captured")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # calls, wall s, CPU s
    for module, name in _PARTS:
        if module is not None and hasattr(module, name):  # an older tree may not have every part
            setattr(module, name, _timed(getattr(module, name), f"{module.__name__}.{name}", totals))
    stack = StackConnections.read(default_state_dir())
    engine = sa.create_engine(stack.postgres.sqlalchemy_url())
    for _ in range(args.runs):
        totals.clear()
        name = f"pgsink_parts_{uuid.uuid4().hex[:8]}"
        place = {"target": "postgresql", "name": name, "directory": f"/tmp/{name}"}
        os.makedirs(place["directory"], exist_ok=True)
        try:
            result = tasks.sink_kafka(stack, {"pipeline": args.pipeline, "place": place})
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        rows = result["rows"]
        parts = per_change(totals, rows)
        out = {"rows_per_s": rows / result["seconds"], "cpu_us_per_row": 1e6 * result["cpu_s"] / rows}
        print(json.dumps({**out, "load_1m": os.getloadavg()[0], "parts": parts}))
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
