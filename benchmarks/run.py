"""Headwater benchmarks: capture, sinks and end to end, each figure beside the machine's own reference.

    scripts/bench.sh [--size smoke|small|medium|large] [--out benchmarks/results]
    .venv/bin/python -m benchmarks.run --size medium --out benchmarks/results   # the stack must be up

Writes ``<out>/latest.json``, ``<out>/latest.md`` and ``<out>/profiles/*.txt`` (not for ``smoke``).
Every measured process (capture, sink apply, references) is a child of its own pinned to one core
(``taskset -c <last core>``) so that its peak RSS and profile are its own; the dev stack's servers run
wherever the OS puts them. Numbers on a shared 2-core machine are noisy: compare within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pymysql
import sqlalchemy as sa

from benchmarks import bootstrap_bench, decode_bench, e2e
from benchmarks.decode_bench import Range, Server
from benchmarks.report import markdown, targets
from benchmarks.tasks import TARGETS
from benchmarks.workload import Workload
from cdc.devstack.connections import StackConnections, default_state_dir


@dataclass(frozen=True)
class Size:
    bulk: int  # row changes in multi-row statements (capture)
    single: int  # single-row transactions (capture)
    txn_small: int  # rows of the smaller / larger one-transaction ranges (memory)
    txn_large: int
    sink: int  # row changes applied to each sink
    e2e_seconds: float
    step_seconds: float
    steps: tuple[int, ...]
    profile: bool


SIZES = {
    "smoke": Size(5_000, 500, 2_000, 10_000, 3_000, 3, 2, (10_000,), False),
    "small": Size(100_000, 10_000, 10_000, 100_000, 50_000, 20, 8, (10_000, 20_000, 40_000), True),
    # e2e steps up to 100k/s (issue 11's target), one step not held then the midpoint (e2e._steps);
    # no 10k step: the 45 s run before the steps is at 10k/s
    "medium": Size(
        1_000_000, 50_000, 100_000, 1_000_000, 200_000, 45, 10, (20_000, 40_000, 70_000, 100_000), True
    ),
    # 10M row changes would cross a binlog rotation (1 GiB); ranges are single-file
    "large": Size(
        5_000_000, 200_000, 100_000, 2_000_000, 1_000_000, 60, 15, (10_000, 20_000, 40_000, 80_000), True
    ),
}
E2E_RATE = 10_000  # issue 11: p99 at most 100 ms at 10k changes/s


class Runner:
    def __init__(self, stack: StackConnections, out: Path, size: Size) -> None:
        self.stack = stack
        self.out = out
        self.size = size
        self.profiles = out / "profiles"
        self.run_id = uuid.uuid4().hex[:8]
        # replica ids must be unique on the server: other test runs connect too
        self.server_id = 100_000_000 + random.randrange(2_000_000_000)
        self.core = max(os.sched_getaffinity(0))
        m = stack.mariadb
        self.server = Server(m.host, m.port, m.user, m.password, m.root_user, m.root_password, m.server_id)
        self.cleanup: list[tuple[str, str]] = []
        self.ranges: dict[str, Range] = {}
        self.generation_s: dict[str, float] = {}
        self.retries: list[str] = []
        self.generators: dict[str, Callable[[], Range]] = {}

    def start(self, workload: Workload) -> None:
        size = self.size
        self.generators = {
            "bulk": partial(workload.bulk, size.bulk),
            "single": partial(workload.single, size.single),
            "txn_small": partial(workload.transaction, size.txn_small),
            "txn_large": partial(workload.transaction, size.txn_large),
            "sinks": partial(workload.bulk, size.sink),
        }

    def _next_server_id(self) -> int:
        self.server_id += 1
        return self.server_id

    def child(self, task: str, args: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "benchmarks.child", task, json.dumps(args)]
        if profile:
            self.profiles.mkdir(parents=True, exist_ok=True)
            cmd += ["--profile", str(self.profiles / profile)]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.core), *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
        if done.returncode != 0:
            raise RuntimeError(f"{task} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        if "rows" in result and "seconds" in result:
            result["rows_per_s"] = result["rows"] / result["seconds"] if result["seconds"] > 0 else 0.0
        return result

    def capture(self, r: Range, pipeline: str, profile: str | None = None) -> dict[str, Any]:
        args = {"range": asdict(r), "pipeline": pipeline, "server_id": self._next_server_id()}
        return self.child("capture", args, profile)

    def capture_section(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with pymysql.connect(
            host=self.server.host, port=self.server.port, user=self.server.root_user,
            password=self.server.root_password,
        ) as conn, conn.cursor() as cur:  # fmt: skip
            cur.execute(
                "SELECT id, character_set_name FROM information_schema.collations WHERE id IS NOT NULL"
            )
            charsets = {int(i): str(n) for i, n in cur.fetchall()}
        # Warm-up, not measured: one capture of the bulk range, so that the broker's JVM has compiled
        # its produce path before the measured one (a user's broker is long warm). Right after a
        # broker start it spent 5.4-8.0 CPU-us per row (3 of them in its C1/C2 compiler threads) against
        # 2.5-4.6 from the second capture on, on a 2-core machine where that CPU is the capture's
        # (benchmarks/capture_cold.py; a 200k-row warm-up was not enough).
        out["warm_up"] = self.with_range("bulk", self._warm_up)
        for key in ("bulk", "single"):
            out[key] = self.with_range(key, partial(self._capture_entry, key, charsets))
            print(
                f"[bench] capture {key}: {out[key]['headwater']['rows_per_s']:,.0f} rows/s", file=sys.stderr
            )
        return out

    def _warm_up(self, r: Range) -> dict[str, Any]:
        # a pipeline of its own: the measured capture must not resume from the warm-up's checkpoint
        return self.capture(r, f"bench{self.run_id}warm{r.start}")

    def _capture_entry(self, key: str, charsets: dict[int, str], r: Range) -> dict[str, Any]:
        entry: dict[str, Any] = {"range": asdict(r)}
        entry["headwater"] = self.capture(r, f"bench{self.run_id}{key}{r.start}")
        entry["mariadb_binlog"] = _timed(partial(decode_bench.bench_mariadb_binlog, self.server, r), r.rows)
        entry["library"] = self._pinned(partial(decode_bench.bench_library, self.server, r), r.rows)
        entry["reader_only"] = self._pinned(partial(decode_bench.bench_ours_server, self.server, r), r.rows)
        events = decode_bench.raw_events(self.server, r)
        entry["decode_only"] = self._pinned(partial(decode_bench.bench_ours_memory, events, charsets), r.rows)
        del events
        if self.size.profile and key == "bulk":
            profiled = self.capture(r, f"bench{self.run_id}{key}p{r.start}", profile="capture_bulk")
            entry["profiles"] = profiled.get("profiles", [])
        return entry

    def range(self, key: str) -> Range:
        """The workload range ``key``, written now if it is not yet (or no longer) in the binlog."""
        if key not in self.ranges:
            started = time.perf_counter()
            self.ranges[key] = self.generators[key]()
            self.generation_s[key] = self.generation_s.get(key, 0.0) + time.perf_counter() - started
        return self.ranges[key]

    def with_range(self, key: str, measure: Any) -> Any:
        """``measure(range)``; if the range's binlog file was purged meanwhile (other test runs on the
        shared server purge binlogs), the range is written again and measured again."""
        for attempt in range(3):
            r = self.range(key)
            try:
                return measure(r)
            except Exception as exc:
                if attempt == 2 or self._binlog_exists(r.file):
                    raise
                print(
                    f"[bench] {r.file} was purged during {key} ({exc!s:.80}); writing it again",
                    file=sys.stderr,
                )
                self.retries.append(f"{key}: {r.file} purged")
                del self.ranges[key]
        raise AssertionError("unreachable")

    def _binlog_exists(self, file: str) -> bool:
        m = self.stack.mariadb
        with pymysql.connect(
            host=m.host, port=m.port, user=m.root_user, password=m.root_password
        ) as conn, conn.cursor() as cur:  # fmt: skip
            cur.execute("SHOW BINARY LOGS")
            return any(row[0] == file for row in cur.fetchall())

    def _pinned(self, fn: Any, rows: int) -> dict[str, Any]:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self.core})
        try:
            return _timed(fn, rows)
        finally:
            os.sched_setaffinity(0, before)

    def _capture_once(self, key: str, r: Range) -> dict[str, Any]:
        result = self.capture(r, f"bench{self.run_id}{key}{r.start}")
        # a capture that read another database's range (or none) peaks low and would read as "flat"
        if result["rows"] != r.rows:
            raise RuntimeError(f"{key}: captured {result['rows']:,} rows of a {r.rows:,}-row transaction")
        return result

    def memory_section(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("txn_small", "txn_large"):
            result = self.with_range(key, partial(self._capture_once, key))
            out[key] = {
                "rows": result["rows"],
                "peak_rss_mb": result["peak_rss_mb"],
                "rows_per_s": result["rows_per_s"],
            }
        small, large = out["txn_small"]["peak_rss_mb"], out["txn_large"]["peak_rss_mb"]
        out["growth_mb"] = large - small
        out["flat"] = large <= small * 1.25 + 25
        return out

    def _place(self, target: str, label: str, tmp: Path) -> dict[str, str]:
        name = f"bench_{self.run_id}_{label}"
        directory = tmp / name
        directory.mkdir(parents=True, exist_ok=True)
        if target in ("postgresql", "mariadb"):
            self.cleanup.append((target, name))
        return {"target": target, "name": name, "directory": str(directory)}

    def sinks_section(self, tmp: Path) -> dict[str, Any]:
        pipeline = f"bench{self.run_id}sinks"
        out: dict[str, Any] = {"capture": self.with_range("sinks", partial(self.capture, pipeline=pipeline))}
        out["range"] = asdict(self.range("sinks"))
        for target in TARGETS:
            entry = self.with_range("sinks", partial(self._sink_entry, target, pipeline, tmp))
            out[target] = entry
            print(
                f"[bench] sink {target}: embedded {entry['embedded']['rows_per_s']:,.0f}, kafka"
                f" {entry['kafka']['rows_per_s']:,.0f},"
                f" reference {entry['reference']['rows_per_s']:,.0f} rows/s",
                file=sys.stderr,
            )
        return out

    def _sink_entry(self, target: str, pipeline: str, tmp: Path, r: Range) -> dict[str, Any]:
        """Embedded apply of the range, apply of the captured topics, and the target's plain bulk load."""
        entry: dict[str, Any] = {}
        emb = self._place(target, f"{target[:2]}_emb", tmp)
        args = {"range": asdict(r), "pipeline": f"emb{self.run_id}", "place": emb}
        entry["embedded"] = self.child("sink_embedded", {**args, "server_id": self._next_server_id()})
        kafka = self._place(target, f"{target[:2]}_kafka", tmp)
        entry["kafka"] = self.child("sink_kafka", {"pipeline": pipeline, "place": kafka})
        ref = self._place(target, f"{target[:2]}_ref", tmp)
        sink_name = emb["directory"] if target in ("sqlite", "iceberg") else emb["name"]
        if target == "iceberg":
            ref = {**ref, "name": emb["name"]}
        entry["reference"] = self.child(
            "reference",
            {"range": asdict(r), "place": ref, "sink_name": sink_name, "server_id": self._next_server_id()},
        )
        if self.size.profile and target in ("postgresql", "iceberg"):
            prof = self._place(target, f"{target[:2]}_prof", tmp)
            profiled = self.child(
                "sink_embedded",
                {"range": asdict(r), "pipeline": f"prof{self.run_id}", "place": prof,
                 "server_id": self._next_server_id()},
                profile=f"apply_{target}_embedded",
            )  # fmt: skip
            entry["profiles"] = profiled.get("profiles", [])
            prof = self._place(target, f"{target[:2]}_kprof", tmp)
            profiled = self.child(
                "sink_kafka", {"pipeline": pipeline, "place": prof}, profile=f"apply_{target}_kafka"
            )
            entry["profiles"] += profiled.get("profiles", [])
        return entry

    def drop_places(self, topics: bool = True) -> None:
        """The run's schemas and databases, and its Kafka topics unless ``topics`` is False."""
        pg = sa.create_engine(self.stack.postgres.sqlalchemy_url())
        m = self.stack.mariadb
        with pg.begin() as conn, pymysql.connect(
            host=m.host, port=m.port, user=m.root_user, password=m.root_password
        ) as my, my.cursor() as cur:  # fmt: skip
            for target, name in self.cleanup:
                if target == "postgresql":
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
                else:
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        pg.dispose()
        if topics:
            self._drop_topics()

    def _drop_topics(self) -> None:
        """Delete this run's Kafka topics: left behind, thousands of partitions slow the broker's
        start and every pattern subscriber's metadata refresh on the dev stack."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.stack.kafka.bootstrap_servers})
        prefixes = tuple(f"{kind}{self.run_id}" for kind in ("bench", "emb", "prof"))
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=30).values():
                future.result()


def _timed(fn: Any, rows: int) -> dict[str, Any]:
    started = time.perf_counter()
    counted = fn()
    seconds = time.perf_counter() - started
    return {"rows": rows, "counted": counted, "seconds": seconds, "rows_per_s": rows / seconds}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for tool in ("mariadb", "mariadb-binlog"):
        if shutil.which(tool):
            versions[tool] = subprocess.run(
                [tool, "--version"], capture_output=True, text=True
            ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "tools": versions,
        "pinned_core": max(os.sched_getaffinity(0)),
        "load_average_at_start": os.getloadavg(),
    }


def _settle_disk(stack: StackConnections) -> None:
    """Before the end-to-end part: the sinks part just wrote ~0.5 GB of PostgreSQL WAL, and the
    WAL-triggered checkpoints it sets off (and the dirty pages behind them) would land inside the
    latency runs; a CHECKPOINT and a sync now put that write-back behind us, so the runs measure the
    pipeline's own commits, not the previous part's flush."""
    engine = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CHECKPOINT"))
    finally:
        engine.dispose()
    os.sync()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", choices=sorted(SIZES), default="medium")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    args.out.mkdir(parents=True, exist_ok=True)
    stack = StackConnections.read(default_state_dir())
    runner = Runner(stack, args.out, size)
    started = time.time()
    result: dict[str, Any] = {"size": args.size, "sizes": asdict(size), "machine": machine()}
    print(f"[bench] size {args.size}: writing the workload as each part needs it", file=sys.stderr)
    runner.start(Workload.create(runner.server))
    tmp = Path(tempfile.mkdtemp(prefix="hw-bench-"))
    try:
        result["capture"] = runner.capture_section()
        result["memory"] = runner.memory_section()
        result["sinks"] = runner.sinks_section(tmp)
        result["memory"]["by_stream_size"] = [  # same 1000-row transactions, more of them
            {"rows": part["rows"], "peak_rss_mb": part["peak_rss_mb"]}
            for part in (result["sinks"]["capture"], result["capture"]["bulk"]["headwater"])
        ]
        print("[bench] end to end", file=sys.stderr)
        _settle_disk(stack)
        result["e2e"] = e2e.run(stack, E2E_RATE, size.e2e_seconds, list(size.steps), size.step_seconds)
        result["bootstrap"] = bootstrap_bench.run(
            stack, bootstrap_bench.BOOT_SIZES[args.size], runner.core,
            profiles=runner.profiles if size.profile else None,
        )  # fmt: skip
    finally:
        runner.drop_places()
        shutil.rmtree(tmp, ignore_errors=True)
    result["workload"] = {
        "generation_seconds": runner.generation_s,
        "ranges": {k: asdict(r) for k, r in runner.ranges.items()},
        "regenerated_after_purge": runner.retries,
    }
    result["seconds"] = time.time() - started
    result["targets"] = targets(result)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.out / "latest.md").write_text(markdown(result))
    print(
        f"[bench] wrote {args.out / 'latest.json'} and latest.md in {result['seconds']:.0f}s", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
