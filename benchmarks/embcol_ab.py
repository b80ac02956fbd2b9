"""Embedded apply (``cdc run`` without a stream), two checkouts A/B, interleaved (embcol).

    .venv/bin/python -m benchmarks.embcol_ab --base /tmp/a --new /tmp/b [--rounds 5]
        [--targets postgresql,iceberg] [--rows 200000] [--core 1] [--out FILE.json]

Writes one bulk range of the wiki mix (benchmarks/workload.py: 95% inserts, 5% updates, 1000-row
transactions) into ``hw_bench`` (its tables are created if missing, never dropped: other benchmarks
share them), then runs ``benchmarks.child sink_embedded`` over it from each checkout in turn (the
order alternating per round), pinned to one core, each into a fresh place. Per run: rows/s (from
the first record read to the end), CPU-us per row (the whole process, both threads, over the same
span; and over the whole run, the sink's imports and open included), peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pymysql
import sqlalchemy as sa

from benchmarks.decode_bench import DB, Server
from benchmarks.workload import SCHEMA, Workload
from cdc.devstack.connections import StackConnections, default_state_dir


def _workload(server: Server) -> Workload:
    """The wiki tables as they are (created if missing), with the next free id of each."""
    login = {"user": server.root_user, "password": server.root_password}
    with pymysql.connect(
        host=server.host, port=server.port, autocommit=True, **login
    ) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
        for ddl in SCHEMA:
            cur.execute(ddl.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
        next_id = {}
        for table, key in (
            ("actor", "actor_id"),
            ("page", "page_id"),
            ("revision", "rev_id"),
            ("text", "old_id"),
        ):
            cur.execute(f"SELECT COALESCE(MAX({key}), 0) FROM {DB}.{table}")
            row = cur.fetchone()
            next_id[table] = int(row[0]) + 1 if row else 1
    return Workload(server, next_id)


def _run(checkout: str, args: dict[str, Any], core: int) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        str(core),
        sys.executable,
        "-m",
        "benchmarks.child",
        "sink_embedded",
        json.dumps(args),
    ]
    env = {**os.environ, "HEADWATER_DEVSTACK_DIR": str(default_state_dir())}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=checkout, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"sink_embedded in {checkout} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rows_per_s"] = result["rows"] / result["seconds"]
    result["cpu_us_per_row"] = result["cpu_s"] / result["rows"] * 1e6
    result["cpu_us_per_row_run"] = result.get("cpu_s_run", result["cpu_s"]) / result["rows"] * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--new", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--targets", default="postgresql,iceberg")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)))
    parser.add_argument("--out", default="")
    opts = parser.parse_args()
    stack = StackConnections.read(default_state_dir())
    m = stack.mariadb
    server = Server(m.host, m.port, m.user, m.password, m.root_user, m.root_password, m.server_id)
    r = _workload(server).bulk(opts.rows)
    print(f"[embcol] range {r}", file=sys.stderr)
    run_id = uuid.uuid4().hex[:8]
    server_id = 300_000_000 + int(run_id, 16) % 1_000_000_000
    tmp = Path(tempfile.mkdtemp(prefix="embcol-ab-"))
    schemas: list[str] = []
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        for n in range(opts.rounds):
            for target in opts.targets.split(","):
                order = [("base", opts.base), ("new", opts.new)]
                if n % 2:
                    order.reverse()
                for label, checkout in order:
                    name = f"embcol_{run_id}_{target[:2]}_{label}_{n}"
                    (tmp / name).mkdir()
                    if target == "postgresql":
                        schemas.append(name)
                    server_id += 1
                    args = {
                        "range": asdict(r),
                        "pipeline": f"embcol{run_id}{n}",
                        "place": {"target": target, "name": name, "directory": str(tmp / name)},
                        "server_id": server_id,
                    }
                    try:
                        result = _run(checkout, args, opts.core)
                    except RuntimeError as exc:
                        if "has been purged" not in str(exc):
                            raise
                        # other tests on the shared server purge binlogs: a new range, the run again
                        r = _workload(server).bulk(opts.rows)
                        print(f"[embcol] purged; new range {r}", file=sys.stderr)
                        args["range"] = asdict(r)
                        result = _run(checkout, args, opts.core)
                    results.setdefault(target, {}).setdefault(label, []).append(result)
                    print(
                        f"[embcol] round {n} {target} {label}: {result['rows_per_s']:,.0f} rows/s,"
                        f" {result['cpu_us_per_row']:.2f} CPU-us/row"
                        f" ({result['cpu_us_per_row_run']:.2f} whole run), {result['peak_rss_mb']:.0f} MiB,"
                        f" load {os.getloadavg()[0]:.1f}",
                        file=sys.stderr,
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if schemas:
            engine = sa.create_engine(stack.postgres.sqlalchemy_url())
            with engine.begin() as conn:
                for name in schemas:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    summary = {}
    for target, by_label in results.items():
        for label, runs in by_label.items():
            rates = [x["rows_per_s"] for x in runs]
            cpus = [x["cpu_us_per_row"] for x in runs]
            whole = [x["cpu_us_per_row_run"] for x in runs]
            rss = [x["peak_rss_mb"] for x in runs]
            summary[f"{target}/{label}"] = {
                "rows_per_s_median": statistics.median(rates),
                "rows_per_s_range": [min(rates), max(rates)],
                "cpu_us_per_row_median": statistics.median(cpus),
                "cpu_us_per_row_range": [min(cpus), max(cpus)],
                "rows_per_cpu_s_median": 1e6 / statistics.median(cpus),
                "cpu_us_per_row_run_median": statistics.median(whole),
                "cpu_us_per_row_run_range": [min(whole), max(whole)],
                "peak_rss_mb_median": statistics.median(rss),
                "rounds": len(runs),
            }
            print(f"[embcol] {target}/{label}: {json.dumps(summary[f'{target}/{label}'])}", file=sys.stderr)
    out = {"range": asdict(r), "summary": summary, "runs": results}
    if opts.out:
        Path(opts.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
