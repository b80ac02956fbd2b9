"""`cdc bootstrap --sink` fill rate into each sink type, beside the snapshot reader's own rate.

A wiki ``page``-shaped table of N rows (benchmarks.snapshot_read_bench.create_page_table) is filled
into a fresh SQLite, PostgreSQL and Iceberg sink, each fill in its own process
(``python -m snapshotter.sink_fill_runner``, so its peak RSS is its own), embedded mode, default batch
size. The reference is the SnapshotReader alone reading the same table in the same keyset chunks.

    .venv/bin/python -m benchmarks.sinkfill_bench [--rows 500000] [--sinks sqlite,postgres,iceberg]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from benchmarks.snapshot_read_bench import create_page_table
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.sources.mariadb import ConnectionSettings, ZeroDatePolicy
from snapshotter.chunk_sizer import ChunkSizer
from snapshotter.reader import SnapshotReader


def read_only(stack: StackConnections, ref: TableRef) -> tuple[int, float]:
    m = stack.mariadb
    reader = SnapshotReader(
        ConnectionSettings(m.host, m.port, m.user, m.password), ZeroDatePolicy.NULL, one_view=True
    )
    sizer = ChunkSizer()
    rows, after = 0, None
    started = time.perf_counter()
    try:
        while True:
            chunk = reader.read_chunk(ref, after, sizer.limit)
            sizer.observe(len(chunk.rows), chunk.elapsed_s)
            rows += len(chunk.rows)
            after = chunk.last_key
            if chunk.complete:
                break
    finally:
        reader.close()
    return rows, time.perf_counter() - started


def sink_yaml(kind: str, tmp: Path, pg_url: str) -> str:
    if kind == "sqlite":
        return f"  - {{name: late, type: sql, url: 'sqlite:///{tmp / 'late.db'}'}}\n"
    if kind == "postgres":
        return f"  - {{name: late, type: sql, url: '{pg_url}'}}\n"
    return (
        f"  - {{name: late, type: iceberg, namespace: bench, catalog: {{type: sql,"
        f" uri: 'sqlite:///{tmp / 'catalog.db'}', warehouse: '{(tmp / 'wh').as_uri()}'}}}}\n"
    )


def fill(stack: StackConnections, ref: TableRef, kind: str, tmp: Path, pg_url: str) -> tuple[int, float, int]:
    """(rows, seconds, peak RSS in MiB) of one fill in its own process."""
    m = stack.mariadb
    config = tmp / f"{kind}.yaml"
    config.write_text(
        f"name: bench-{kind}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{BENCH_PASSWORD}}',"
        f" server_id: {4500 + os.getpid() % 100}, tables: ['{ref.db}.*']}}\n"
        f"sinks:\n{sink_yaml(kind, tmp, pg_url)}"
        f"state_dir: {tmp / ('state-' + kind)}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "snapshotter.sink_fill_runner", "-c", str(config), "--sink", "late", str(ref)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "BENCH_PASSWORD": m.password},
    )
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"the {kind} fill failed ({proc.returncode}): {out}")
    found = re.search(r"this run (\d+) rows in ([\d.]+)s", out)
    assert found is not None, out
    return int(found[1]), float(found[2]), usage.ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sinkfill_bench")
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--sinks", default="sqlite,postgres,iceberg")
    args = parser.parse_args()
    stack = StackConnections.read(default_state_dir())
    suffix = uuid.uuid4().hex[:8]
    db = f"sinkfill_bench_{suffix}"
    tmp = Path(tempfile.mkdtemp(prefix="sinkfill-bench-"))
    admin = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
        pg_url = sa.engine.make_url(stack.postgres.sqlalchemy_url(db)).render_as_string(hide_password=False)
        ref = create_page_table(stack, args.rows, db)
        rows, seconds = read_only(stack, ref)
        print(
            f"{'reader alone (reference)':28} {rows:>9} rows {seconds:7.1f}s {rows / seconds:>10,.0f} rows/s"
        )
        for kind in args.sinks.split(","):
            n, s, rss = fill(stack, ref, kind, tmp, pg_url)
            print(
                f"{'fill into ' + kind:28} {n:>9} rows {s:7.1f}s {n / s:>10,.0f} rows/s  peak RSS {rss} MiB"
            )
    finally:
        with stack.mariadb.connect_root(autocommit=True) as source, source.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
