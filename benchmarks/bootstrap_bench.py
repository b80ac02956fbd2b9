"""`cdc bootstrap` (direct, no daemon running) of a wiki ``page`` table, each figure beside its reference.

Issue 9's targets, measured in one run on one generated table (``create_page_table``: 8 columns,
unsigned ints, VARBINARY title, DATETIME(6); 5M rows at ``large``, 1M at ``medium``):

- read rate: ``snapshot_read_bench.measure`` (the SnapshotReader beside `mariadb --quick -B`);
- ``python -m cdc.cli bootstrap`` in embedded mode into an Iceberg history, beside one pyiceberg Arrow
  ``append`` of the rows it wrote (``references`` child task);
- the same into PostgreSQL (SQL sink), beside text ``COPY`` of the same rows into an unkeyed copy;
- the same in Kafka mode (rows published to the topic), beside Debezium 3.5's initial snapshot rate
  quoted from issue 9 (57k rows/s on a 1M-row, 6-column table here), NOT re-measured;
- peak RSS of the Iceberg bootstrap of the big table against one of a 500k-row table;
- rows per CPU-second (user + system of the child) for each.

Each bootstrap is a child process (``os.wait4`` gives its own CPU time; its ``VmHWM``, polled, its peak
RSS), pinned to one core
as the other benchmarks' children are. Its seconds are the child's whole wall time: interpreter start,
config, connections and the final commit included (``startup_s``: the same for an empty table).

    .venv/bin/python -m benchmarks.bootstrap_bench [--size small] [--rows N] [--max-chunk-rows N] \
        [--profiles DIR]
"""

from __future__ import annotations

import argparse
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks import snapshot_read_bench
from benchmarks.child import format_stats, peak_rss_mb
from benchmarks.sink_sql_bench import copy_rows
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections, default_state_dir

__all__ = ["BOOT_SIZES", "BootSize", "markdown", "run", "targets"]

ROOT = Path(__file__).resolve().parent.parent
DEBEZIUM_SNAPSHOT_ROWS_PER_S = 57_000  # issue 9: Debezium 3.5 initial snapshot to Kafka, quoted
SERVER_IDS = range(4600, 4700)  # this benchmark's replica ids (area "bootbench")


@dataclass(frozen=True)
class BootSize:
    rows: int  # the wiki table every figure is measured on
    memory_rows: int | None  # the smaller bootstrap of the memory pair (the big one is `rows`)
    startup: bool  # measure the fixed cost (an empty table's bootstrap)
    chunk_seconds: float
    max_chunk_rows: int


BOOT_SIZES = {
    # smoke (CI) only checks that every path works: no memory pair, no fixed-cost run
    "smoke": BootSize(10_000, None, False, 0.5, 100_000),
    "small": BootSize(200_000, 50_000, True, 0.5, 100_000),
    "medium": BootSize(1_000_000, 500_000, True, 0.5, 100_000),
    "large": BootSize(5_000_000, 500_000, True, 0.5, 100_000),
}

# target name -> (what, goal); rates in rows/s, ratios as numbers
TARGETS: dict[str, tuple[str, float]] = {
    "bootstrap_read_vs_mariadb_quick": ("snapshot read / `mariadb --quick -B` on the same table", 0.5),
    "bootstrap_iceberg": ("`cdc bootstrap` into the Iceberg history (rows/s)", 250_000),
    "bootstrap_postgresql": ("`cdc bootstrap` into PostgreSQL (rows/s)", 150_000),
    "bootstrap_kafka_vs_debezium": ("`cdc bootstrap` into Kafka / Debezium's 57k rows/s (quoted)", 2.0),
    "bootstrap_memory_ratio": ("bootstrap peak RSS, big table / 500k-row table (at most)", 1.2),
}


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    cpu_s: float
    peak_rss_mb: float
    output: str


def run_child(argv: list[str], env: Mapping[str, str], core: int | None) -> ChildRun:
    """Runs ``argv`` (pinned to ``core``), returns its wall time, CPU seconds and peak RSS (its own)."""
    if core is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(core), *argv]  # taskset execs: the pid stays the measured one
    started = time.perf_counter()
    peak = 0.0
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env), cwd=ROOT)
        while True:
            # VmHWM, polled: wait4's ru_maxrss would also count the pages this (large) process held
            # when it forked the child, which the kernel carries over the exec
            peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-4:])} exited {proc.returncode}:\n{text[-4000:]}")
    return ChildRun(seconds, usage.ru_utime + usage.ru_stime, peak, text)


@dataclass(frozen=True)
class Pipeline:
    """One bootstrap pipeline: its config file, state and sink places under ``directory``."""

    name: str
    directory: Path
    sink: str  # "iceberg", "postgresql" or "kafka"

    def write_config(self, stack: StackConnections, ref: TableRef, size: BootSize) -> Path:
        m = stack.mariadb
        lines = [
            f"name: {self.name}",
            f"source: {{type: mariadb, host: '{m.host}', port: {m.port}, user: '{m.user}',"
            f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {random.choice(SERVER_IDS)},"
            f" tables: ['{ref.db}.{ref.table}']}}",
        ]
        if self.sink == "kafka":
            lines.append(f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}'}}")
            # `cdc bootstrap` in Kafka mode needs no sink; one is configured for `cdc sink` only
            lines.append(f"sinks: [{{type: sql, url: 'sqlite:///{self.directory / 'unused.db'}'}}]")
        elif self.sink == "postgresql":
            lines.append(f"sinks: [{{type: sql, url: '${{BOOTBENCH_PG_URL}}', schema: {self.name}}}]")
        else:
            lines.append(
                f"sinks: [{{type: iceberg, namespace: {self.name}, catalog: {{type: sql,"
                f" uri: 'sqlite:///{self.directory / 'catalog.db'}',"
                f" warehouse: '{(self.directory / 'warehouse').as_uri()}'}}}}]"
            )
        lines.append(
            f"bootstrap: {{chunk_seconds: {size.chunk_seconds}, max_chunk_rows: {size.max_chunk_rows}}}"
        )
        lines.append(f"state_dir: {self.directory / 'state'}")
        path = self.directory / "cdc.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path


class Bench:
    def __init__(self, stack: StackConnections, size: BootSize, tmp: Path, core: int | None) -> None:
        self.stack = stack
        self.size = size
        self.tmp = tmp
        self.core = core
        self.run_id = uuid.uuid4().hex[:8]
        self.env = {
            **os.environ,
            "CDC_SOURCE_PASSWORD": stack.mariadb.password,
            "BOOTBENCH_PG_URL": stack.postgres.sqlalchemy_url(),
        }
        self.databases: list[str] = []
        self.schemas: list[str] = []
        self.topics: list[str] = []

    def table(self, rows: int, label: str) -> TableRef:
        db = f"bootbench_{self.run_id}_{label}"
        self.databases.append(db)
        return snapshot_read_bench.create_page_table(self.stack, rows, db)

    def bootstrap(self, ref: TableRef, sink: str, label: str, size: BootSize | None = None) -> dict[str, Any]:
        name = f"bootbench{self.run_id}{label}"
        place = Pipeline(name, self.tmp / name, sink)
        place.directory.mkdir(parents=True)
        if sink == "postgresql":
            self.schemas.append(name)
        if sink == "kafka":
            self.topics.append(name)
        config = place.write_config(self.stack, ref, size or self.size)
        argv = [sys.executable, "-m", "cdc.cli", "bootstrap", "-c", str(config), str(ref)]
        child = run_child(argv, self.env, self.core)
        rows = self._rows(ref)
        return {
            "rows": rows,
            "seconds": child.seconds,
            "rows_per_s": rows / child.seconds,
            "cpu_s": child.cpu_s,
            "rows_per_cpu_s": rows / child.cpu_s if child.cpu_s else 0.0,
            "peak_rss_mb": child.peak_rss_mb,
            "pipeline": name,
            "directory": str(place.directory),
        }

    def profile(self, ref: TableRef, sink: str, prefix: Path) -> str:
        """The same bootstrap again under py-spy (every thread, sampled from outside), or cProfile (the
        main thread) where py-spy is missing; writes ``<prefix>.txt`` and returns its path."""
        name = f"bootbench{self.run_id}prof"
        place = Pipeline(name, self.tmp / name, sink)
        place.directory.mkdir(parents=True)
        if sink == "postgresql":
            self.schemas.append(name)
        if sink == "kafka":
            self.topics.append(name)
        config = place.write_config(self.stack, ref, self.size)
        command = ["-m", "cdc.cli", "bootstrap", "-c", str(config), str(ref)]
        raw = place.directory / "profile.raw"
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        prefix.parent.mkdir(parents=True, exist_ok=True)
        out = prefix.with_name(prefix.name + ".txt")
        title = f"# cdc bootstrap of {ref} ({self._rows(ref):,} rows) into {sink}"
        if spy:
            argv = [spy, "record", "-r", "50", "-f", "raw", "--threads", "-o", str(raw), "--", sys.executable]
            run_child([*argv, *command], self.env, self.core)
            out.write_text(title + ", py-spy, all threads\n\n" + summarize_samples(raw.read_text()))
        else:
            run_child([sys.executable, "-m", "cProfile", "-o", str(raw), *command], self.env, self.core)
            stats = pstats.Stats(str(raw))
            out.write_text(format_stats(stats, title[2:] + ", cProfile, main thread"))
        return str(out)

    def _rows(self, ref: TableRef) -> int:
        with self.stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM `{ref.db}`.`{ref.table}`")
            row = cur.fetchone()
            return int(row[0]) if row else 0

    def iceberg_reference(self, boot: Mapping[str, Any]) -> dict[str, Any]:
        """One pyiceberg Arrow append of the history rows the bootstrap wrote (a child: ``reference``)."""
        import json

        place = {"target": "iceberg", "name": boot["pipeline"], "directory": boot["directory"]}
        args = {"place": place, "sink_name": boot["directory"]}
        argv = [sys.executable, "-m", "benchmarks.child", "reference", json.dumps(args)]
        child = run_child(argv, self.env, self.core)
        result: dict[str, Any] = json.loads(child.output.strip().splitlines()[-1])
        result["rows_per_s"] = result["rows"] / result["seconds"]
        return result

    def postgresql_reference(self, boot: Mapping[str, Any], ref: TableRef) -> dict[str, Any]:
        """COPY of the rows the sink wrote into an unkeyed table of the same shape, in one transaction
        per 250k rows (read untimed, through a server-side cursor, so memory stays bounded)."""
        url = self.stack.postgres.sqlalchemy_url()
        schema = f"{boot['pipeline']}ref"
        self.schemas.append(schema)
        source = f'"{boot["pipeline"]}"."{ref.table}"'
        target = f'"{schema}"."{ref.table}"'
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            conn.execute(sa.text(f"CREATE TABLE {target} (LIKE {source})"))
        rows, seconds = 0, 0.0
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=50_000).execute(
                sa.text(f"SELECT * FROM {source}")
            )
            while part := result.fetchmany(250_000):
                data = [tuple(r) for r in part]
                seconds += copy_rows(url, target, data)
                rows += len(data)
        engine.dispose()
        return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds else 0.0}

    def drop(self) -> None:
        with self.stack.mariadb.connect_root(autocommit=True) as my, my.cursor() as cur:
            for db in self.databases:
                cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        engine = sa.create_engine(self.stack.postgres.sqlalchemy_url())
        with engine.begin() as pg:
            for schema in self.schemas:
                pg.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
        if self.topics:
            self._drop_topics()

    def _drop_topics(self) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.stack.kafka.bootstrap_servers})
        names = admin.list_topics(timeout=10).topics
        mine = [t for t in names if any(t.startswith(p) for p in self.topics)]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=30).values():
                future.result()


def summarize_samples(raw: str, top: int = 30) -> str:
    """py-spy's raw (collapsed) stacks as tables: samples per thread, and the top functions by own
    and by cumulative samples."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        threads[frames[0].split(":")[-1].strip()] += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            cumulative[frame] += n
    out = [f"{total} samples (50/s, active threads only)", "", "## samples by thread"]
    out += [f"{n / total:7.1%}  {name}" for name, n in threads.most_common(10)]
    out += ["", f"## top {top} by own samples"]
    out += [f"{n / total:7.1%}  {frame}" for frame, n in own.most_common(top)]
    out += ["", f"## top {top} by cumulative samples"]
    out += [f"{n / total:7.1%}  {frame}" for frame, n in cumulative.most_common(top + 15)]
    return "\n".join(out) + "\n"


def run(
    stack: StackConnections,
    size: BootSize,
    core: int | None = None,
    *,
    profiles: Path | None = None,
    log: bool = True,
) -> dict[str, Any]:
    """Every figure of the bootstrap section (tables created and dropped here)."""

    def say(text: str) -> None:
        if log:
            print(f"[bench] bootstrap: {text}", file=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="hw-bootbench-"))
    bench = Bench(stack, size, tmp, core)
    out: dict[str, Any] = {"size": asdict(size)}
    try:
        started = time.perf_counter()
        ref = bench.table(size.rows, "big")
        out["table"] = {"name": str(ref), "rows": size.rows, "generation_s": time.perf_counter() - started}
        say(f"{ref}: {size.rows:,} rows generated in {out['table']['generation_s']:.1f}s")
        read = snapshot_read_bench.measure(stack, ref)
        out["read"] = {
            "mariadb_quick": {"rows": read.mariadb_quick.rows, "rows_per_s": read.mariadb_quick.rows_per_s},
            "figures": {f.name: {"rows": f.rows, "rows_per_s": f.rows_per_s} for f in read.figures},
            "reader_name": "SnapshotReader (chunks, own views)",
        }
        out["read"]["ratio"] = read.ratio(out["read"]["reader_name"])
        say(f"read {out['read']['ratio']:.2f}x mariadb --quick -B")
        if size.startup:
            empty = bench.table(0, "empty")
            out["startup_s"] = bench.bootstrap(empty, "iceberg", "empty")["seconds"]
        for sink in ("iceberg", "postgresql", "kafka"):
            try:
                entry: dict[str, Any] = {"bootstrap": bench.bootstrap(ref, sink, sink[:4])}
            except RuntimeError as exc:  # reported as failed; the other figures are still measured
                out[sink] = {"failed": str(exc).splitlines()[-1][:300]}
                say(f"{sink}: FAILED: {out[sink]['failed']}")
                continue
            if sink == "iceberg":
                entry["reference"] = bench.iceberg_reference(entry["bootstrap"])
            elif sink == "postgresql":
                entry["reference"] = bench.postgresql_reference(entry["bootstrap"], ref)
            else:
                entry["reference"] = {"rows_per_s": DEBEZIUM_SNAPSHOT_ROWS_PER_S, "quoted": True}
            out[sink] = entry
            say(
                f"{sink}: {entry['bootstrap']['rows_per_s']:,.0f} rows/s"
                f" (reference {entry['reference']['rows_per_s']:,.0f})"
            )
        if size.memory_rows is not None and "bootstrap" in out["iceberg"]:
            small = bench.table(size.memory_rows, "mem")
            small_boot = bench.bootstrap(small, "iceberg", "memsmall")
            big_boot = out["iceberg"]["bootstrap"]
            out["memory"] = {
                "small": {"rows": small_boot["rows"], "peak_rss_mb": small_boot["peak_rss_mb"]},
                "big": {"rows": big_boot["rows"], "peak_rss_mb": big_boot["peak_rss_mb"]},
                "ratio": big_boot["peak_rss_mb"] / small_boot["peak_rss_mb"],
            }
            say(f"peak RSS {out['memory']['ratio']:.2f}x")
        if profiles is not None:
            measured = [k for k in ("iceberg", "postgresql", "kafka") if "bootstrap" in out[k]]
            slowest = min(measured, key=lambda k: out[k]["bootstrap"]["rows_per_s"])
            say(f"profiling the slowest, {slowest}")
            out["profiles"] = [bench.profile(ref, slowest, profiles / f"bootstrap_{slowest}")]
        out["targets"] = targets(out)
    finally:
        bench.drop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def targets(boot: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    values = {"bootstrap_read_vs_mariadb_quick": boot["read"]["ratio"]}
    for name, sink in (("bootstrap_iceberg", "iceberg"), ("bootstrap_postgresql", "postgresql")):
        if "bootstrap" in boot[sink]:
            values[name] = boot[sink]["bootstrap"]["rows_per_s"]
    if "bootstrap" in boot["kafka"]:
        values["bootstrap_kafka_vs_debezium"] = (
            boot["kafka"]["bootstrap"]["rows_per_s"] / DEBEZIUM_SNAPSHOT_ROWS_PER_S
        )
    if "memory" in boot:
        values["bootstrap_memory_ratio"] = boot["memory"]["ratio"]
    out = {}
    for name, (what, goal) in TARGETS.items():
        if name not in values:
            continue  # not measured at this size
        value = values[name]
        met = value <= goal if name == "bootstrap_memory_ratio" else value >= goal
        out[name] = {"what": what, "value": value, "target": goal, "met": met}
    return out


def markdown(boot: Mapping[str, Any]) -> list[str]:
    table = boot["table"]
    read = boot["read"]
    lines = [
        "",
        f"## Bootstrap (`cdc bootstrap`, direct, of {table['name']}: {table['rows']:,} wiki `page` rows)",
        "",
        f"Read: SnapshotReader {read['figures'][read['reader_name']]['rows_per_s']:,.0f} rows/s,"
        f" `mariadb --quick -B` {read['mariadb_quick']['rows_per_s']:,.0f} rows/s"
        f" ({read['ratio']:.2f}x). Other readers: "
        + ", ".join(f"{n} {f['rows_per_s']:,.0f}" for n, f in read["figures"].items())
        + ".",
        "",
        "| into | rows/s | rows per CPU-second | peak RSS MiB | reference rows/s | reference |",
        "|---|---:|---:|---:|---:|---|",
    ]
    refs = {
        "iceberg": "pyiceberg Arrow append of the rows written",
        "postgresql": "COPY of the same rows into an unkeyed table",
        "kafka": "Debezium 3.5 initial snapshot, quoted from issue 9 (not re-measured)",
    }
    for sink, ref in refs.items():
        if "bootstrap" not in boot[sink]:
            lines.append(f"| {sink} | failed: {boot[sink]['failed']} | | | | {ref} |")
            continue
        b = boot[sink]["bootstrap"]
        lines.append(
            f"| {sink} | {b['rows_per_s']:,.0f} | {b['rows_per_cpu_s']:,.0f} | {b['peak_rss_mb']:,.0f}"
            f" | {boot[sink]['reference']['rows_per_s']:,.0f} | {ref} |"
        )
    note = (
        "Each bootstrap is `python -m cdc.cli bootstrap` in a child pinned to one core; rows/s is over"
        " its whole wall time"
    )
    if "startup_s" in boot:
        note += f", which includes {boot['startup_s']:.1f} s of fixed cost (an empty table's bootstrap)"
    lines += ["", note + "."]
    if "memory" in boot:
        mem = boot["memory"]
        lines += [
            "",
            f"Peak RSS (Iceberg bootstrap): {mem['small']['rows']:,} rows {mem['small']['peak_rss_mb']:,.0f}"
            f" MiB, {mem['big']['rows']:,} rows {mem['big']['peak_rss_mb']:,.0f} MiB ({mem['ratio']:.2f}x).",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", choices=sorted(BOOT_SIZES), default="small")
    parser.add_argument("--rows", type=int, help="override the table's rows")
    parser.add_argument("--max-chunk-rows", type=int, help="override bootstrap.max_chunk_rows")
    parser.add_argument("--chunk-seconds", type=float, help="override bootstrap.chunk_seconds")
    parser.add_argument("--profiles", type=Path, help="profile the slowest bootstrap into this directory")
    args = parser.parse_args()
    size = BOOT_SIZES[args.size]
    if args.rows:
        size = replace(size, rows=args.rows)
    if args.max_chunk_rows:
        size = replace(size, max_chunk_rows=args.max_chunk_rows)
    if args.chunk_seconds:
        size = replace(size, chunk_seconds=args.chunk_seconds)
    stack = StackConnections.read(default_state_dir())
    core = max(os.sched_getaffinity(0))
    boot = run(stack, size, core, profiles=args.profiles)
    print("\n".join(markdown(boot)))
    for t in targets(boot).values():
        print(f"- {t['what']}: {t['value']:,.2f} (goal {t['target']:,}) {'met' if t['met'] else 'MISSED'}")


if __name__ == "__main__":
    main()
