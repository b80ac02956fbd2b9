"""Where embedded `cdc run` into PostgreSQL spends each thread: wall and CPU per change of each part.

    HEADWATER_DEVSTACK_DIR=/work/main/.devstack PYTHONPATH=<tree> taskset -c 1 \\
        .venv/bin/python -m benchmarks.embpg_parts [--rows 200000] [--runs N]

Writes one bulk range of the wiki mix (as benchmarks.embcol_ab) and runs
``benchmarks.tasks.sink_embedded`` over it in this process, into a fresh schema dropped afterwards,
with the timers of benchmarks.pgsink_parts around the apply thread's parts, plus: the apply thread's
wait for its next batch (``SinkThread._serve``'s idle time), the daemon thread's wait for the batch
before (``SinkThread.wait``) and its column build (``build_columns``), the apply thread's CPU, and
each of its waits for a batch (ms), the cycle collector's runs and time per generation. One JSON
line per run.

Experiments (environment, each alone): ``EMBPG_PARTS_ARROW_COPY=1`` the binary COPY by the Arrow
kernels (pg_binary_copy without the compiled encoder: the A/B of embpg2's change in one tree);
``EMBPG_PARTS_NO_BUILD=1`` the columns built on the apply thread instead of the daemon's;
``EMBPG_PARTS_DEPTH2=1`` a batch handed while the one before is still applying (two in flight).
``--switch-interval S``: ``sys.setswitchinterval`` for the run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa

from benchmarks import pgsink_parts, tasks
from benchmarks.decode_bench import Server
from benchmarks.embcol_ab import _workload
from cdc.daemon import embedded, sink_thread
from cdc.devstack.connections import StackConnections, default_state_dir
from sinks.sql import columnar_apply
from sinks.sql.sql_sink import SqlSink


class _TimedQueue(queue.SimpleQueue):  # type: ignore[type-arg]
    """The apply thread's job queue: the time its thread waits in ``get`` (for the next batch)."""

    idle: list[float] = [0.0]
    waits: list[float] = []  # each wait, in ms

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        start = time.perf_counter()
        try:
            return super().get(block, timeout)
        finally:
            waited = time.perf_counter() - start
            self.idle[0] += waited
            self.waits.append(round(1e3 * waited, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval for the run (s)")
    args = parser.parse_args(argv)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # calls, wall s, CPU s
    timed = [*pgsink_parts._PARTS, (columnar_apply, "apply_columns"), (columnar_apply, "_columns_fit")]
    timed += [(embedded, "_apply_all"), (SqlSink, "apply"), (SqlSink, "_sync_schemas")]
    timed += [(SqlSink, "prepare_columns")]  # embpg3: on the daemon thread, before the hand-off
    for module, name in timed:
        if module is not None and hasattr(module, name):
            label = f"{getattr(module, '__name__', '')}.{name}"
            setattr(module, name, pgsink_parts._timed(getattr(module, name), label, totals))
    embedded.build_columns = pgsink_parts._timed(embedded.build_columns, "daemon.build_columns", totals)
    if os.environ.get("EMBPG_PARTS_NO_BUILD"):  # experiment: the columns built on the apply thread
        embedded.build_columns = lambda records: None
    sink_thread.SinkThread.wait = pgsink_parts._timed(  # type: ignore[method-assign]
        sink_thread.SinkThread.wait, "daemon.wait_for_apply", totals
    )
    if os.environ.get("EMBPG_PARTS_ARROW_COPY"):  # the binary COPY by the Arrow kernels alone
        from sinks.sql import pg_binary_copy

        pg_binary_copy._copy_binary_rows = None
    if os.environ.get("EMBPG_PARTS_DEPTH2"):  # experiment: a batch handed while the one before applies
        from concurrent.futures import Future

        def start(self: Any, work: Any) -> None:
            prev = getattr(self, "_prev", None)
            if prev is not None:
                prev.result()
            future: Future[object] = Future()
            self._prev, self._current = self._current, future
            self._jobs.put((work, future))

        sink_thread.SinkThread.start = start  # type: ignore[method-assign]
    gc_times: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # generation -> count, seconds
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            into = gc_times[f"gen{info['generation']}"]
            into[0] += 1
            into[1] += time.perf_counter() - gc_start[0]

    gc.callbacks.append(on_gc)
    sink_thread.queue.SimpleQueue = _TimedQueue  # type: ignore[attr-defined]
    threads: dict[str, float] = {}
    original_cpu = sink_thread.SinkThread._serve

    def serve(self: sink_thread.SinkThread) -> None:
        try:
            original_cpu(self)
        finally:
            threads.update({"apply_thread_cpu_s": time.thread_time()})

    sink_thread.SinkThread._serve = serve  # type: ignore[method-assign]
    stack = StackConnections.read(default_state_dir())
    m = stack.mariadb
    server = Server(m.host, m.port, m.user, m.password, m.root_user, m.root_password, m.server_id)
    engine = sa.create_engine(stack.postgres.sqlalchemy_url())
    for _ in range(args.runs):
        r = _workload(server).bulk(args.rows)
        totals.clear()
        gc_times.clear()
        _TimedQueue.idle[0] = 0.0
        _TimedQueue.waits.clear()
        run_id = uuid.uuid4().hex[:8]
        name = f"embpg_parts_{run_id}"
        place = {"target": "postgresql", "name": name, "directory": f"/tmp/{name}"}
        os.makedirs(place["directory"], exist_ok=True)
        server_id = 320_000_000 + int(run_id, 16) % 1_000_000_000
        try:
            result = tasks.sink_embedded(
                stack,
                {"range": asdict(r), "pipeline": f"embparts{run_id}", "place": place, "server_id": server_id},
            )
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        rows = result["rows"]
        parts: dict[str, dict[str, float]] = pgsink_parts.per_change(totals, rows)
        parts["apply.idle"] = {"wall_us": 1e6 * _TimedQueue.idle[0] / rows}
        out_waits = {
            "apply_waits_ms": _TimedQueue.waits,
            "gc_ms": {g: [int(n), round(1e3 * t, 1)] for g, (n, t) in sorted(gc_times.items())},
        }
        out = {
            "rows_per_s": rows / result["seconds"],
            "wall_us_per_row": 1e6 * result["seconds"] / rows,
            "cpu_us_per_row": 1e6 * result["cpu_s"] / rows,
            "apply_thread_cpu_us": 1e6 * threads.get("apply_thread_cpu_s", 0.0) / rows,
        }
        print(json.dumps({**out, **out_waits, "load_1m": os.getloadavg()[0], "parts": parts}))
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
