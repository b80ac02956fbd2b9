"""Binlog decode throughput: our compiled decoder vs python-mysql-replication vs ``mariadb-binlog -v``.

    .venv/bin/python -m benchmarks.decode_bench                    # dev stack (cdc dev up)
    .venv/bin/python -m benchmarks.decode_bench --port 3399 --multi-rows 200000 --single-tx 30000

Writes two workloads into a fresh binlog file (multi-row INSERTs of a mixed table; single-row
transactions), then for each range measures, pinned to one core:
  ours (memory)   StreamDecoder over raw events already read into memory: decoding alone
  ours (server)   MariaDbBinlogReader from the server: protocol + decoding
  library         python-mysql-replication (framing-fixed reader) from the server
  mariadb-binlog  ``mariadb-binlog -v --base64-output=DECODE-ROWS`` from the server, output discarded
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pymysql
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from cdc.core import ChangeEvent
from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.sources.mariadb import ConnectionSettings, MariaDbBinlogReader, ReaderConfig, StartAt
from cdc.sources.mariadb.binlog_format import EventHeader
from cdc.sources.mariadb.connection import BinlogConnection, DumpStart
from cdc.sources.mariadb.dump_command import FixedBinLogStreamReader
from cdc.sources.mariadb.stream_decoder import StreamDecoder
from cdc.sources.mariadb.table_filter import TableFilter

DB = "hw_bench"
TABLE = f"""CREATE TABLE {DB}.mixed (
  id BIGINT NOT NULL PRIMARY KEY, a INT NOT NULL, b BIGINT UNSIGNED, vb VARBINARY(64),
  dt DATETIME(6), amount DECIMAL(12,4), txt TEXT
)"""


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str
    root_user: str
    root_password: str
    server_id: int


@dataclass(frozen=True)
class Range:
    name: str
    file: str
    start: int
    stop: int
    rows: int


def _root(s: Server) -> pymysql.Connection[pymysql.cursors.Cursor]:
    return pymysql.connect(
        host=s.host, port=s.port, user=s.root_user, password=s.root_password, autocommit=True
    )


def _coords(cur: pymysql.cursors.Cursor) -> tuple[str, int]:
    cur.execute("SHOW MASTER STATUS")
    row = cur.fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def generate(s: Server, multi_rows: int, single_tx: int) -> list[Range]:
    conn = _root(s)
    ranges = []
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute(f"CREATE DATABASE {DB}")
        cur.execute(TABLE)
        cur.execute("FLUSH BINARY LOGS")  # both ranges in one fresh file, so mariadb-binlog reads one file
        file, start = _coords(cur)
        batch = 1000
        for first in range(0, multi_rows, batch):
            values = ",".join(
                f"({i}, {i % 100000}, {i * 7919}, UNHEX(SHA1({i})), '2024-05-06 07:08:09.{i % 1000000:06d}',"
                f" {i % 100000}.{i % 10000:04d}, 'row number {i} with some text')"
                for i in range(first, min(first + batch, multi_rows))
            )
            cur.execute(f"INSERT INTO {DB}.mixed VALUES {values}")
        f2, mid = _coords(cur)
        ranges.append(Range("multi-row inserts", file, start, mid, multi_rows))
        for i in range(multi_rows, multi_rows + single_tx):
            cur.execute(
                f"INSERT INTO {DB}.mixed VALUES (%s, %s, %s, UNHEX(SHA1(%s)), '2024-05-06 07:08:09.123456',"
                " 12.5, 'single row transaction')",
                (i, i, i, i),
            )
        f3, end = _coords(cur)
        assert file == f2 == f3, "the workload crossed a binlog rotation; lower the row counts"
        ranges.append(Range("single-row transactions", file, mid, end, single_tx))
    conn.close()
    return ranges


def _settings(s: Server) -> ConnectionSettings:
    return ConnectionSettings(s.host, s.port, s.user, s.password)


def raw_events(s: Server, r: Range) -> list[bytes]:
    conn = BinlogConnection(_settings(s), s.server_id + 9001, blocking=False)
    conn.open(DumpStart(file=r.file, offset=r.start))
    out = []
    try:
        for ev in conn.events():
            header = EventHeader.parse(ev, 0)
            if header.log_pos and header.log_pos > r.stop:
                break
            out.append(ev)
    finally:
        conn.close()
    return out


def bench_ours_memory(events: list[bytes], charsets: dict[int, str]) -> int:
    decoder = StreamDecoder(charsets.__getitem__, table_filter=TableFilter((f"{DB}.*",)))
    return sum(1 for rec in decoder.records(events) if isinstance(rec, ChangeEvent))


def bench_ours_server(s: Server, r: Range) -> int:
    cfg = ReaderConfig(_settings(s), s.server_id + 9002, tables=(f"{DB}.*",), blocking=False)
    reader = MariaDbBinlogReader(cfg)
    n = 0
    for rec in reader.records(StartAt.coordinates(r.file, r.start)):
        if isinstance(rec, ChangeEvent):
            n += 1
            if n == r.rows:
                break
    reader.close()
    return n


def bench_library(s: Server, r: Range) -> int:
    reader = FixedBinLogStreamReader(
        {"host": s.host, "port": s.port, "user": s.user, "password": s.password},
        server_id=s.server_id + 9003,
        blocking=False,
        resume_stream=True,
        log_file=r.file,
        log_pos=r.start,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[DB],
        enable_logging=False,
    )
    n = 0
    try:
        while n < r.rows and (event := reader.fetchone()) is not None:
            n += len(event.rows)
    finally:
        reader.close()
    return n


def bench_mariadb_binlog(s: Server, r: Range) -> int:
    cmd = [
        "mariadb-binlog",
        "--read-from-remote-server",
        f"--host={s.host}",
        f"--port={s.port}",
        f"--user={s.root_user}",
        f"--password={s.root_password}",
        "-v",
        "--base64-output=DECODE-ROWS",
        f"--start-position={r.start}",
        f"--stop-position={r.stop}",
        r.file,
    ]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(_core()), *cmd]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    return out.count(b"### INSERT INTO")


def _core() -> int:
    return max(os.sched_getaffinity(0))


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--multi-rows", type=int, default=200_000)
    p.add_argument("--single-tx", type=int, default=30_000)
    p.add_argument("--repeat", type=int, default=3, help="best of N for the in-memory decode")
    args = p.parse_args()
    if args.port:
        s = Server(
            args.host or "127.0.0.1",
            args.port,
            "cdc",
            os.environ.get("CDC_PASSWORD", "cdc-dev-password"),
            "root",
            os.environ.get("ROOT_PASSWORD", "root"),
            1,
        )
    else:
        m = StackConnections.read(default_state_dir()).mariadb
        s = Server(m.host, m.port, m.user, m.password, m.root_user, m.root_password, m.server_id)
    os.sched_setaffinity(0, {_core()})  # one core for every Python measurement
    t0 = time.perf_counter()
    ranges = generate(s, args.multi_rows, args.single_tx)
    print(f"generated {sum(r.rows for r in ranges)} row changes in {time.perf_counter() - t0:.1f}s")
    with _root(s) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, character_set_name FROM information_schema.collations WHERE id IS NOT NULL")
        charsets = {int(i): str(n) for i, n in cur.fetchall()}
    print(f"{'workload':<26}{'decoder':<18}{'rows':>9}{'seconds':>9}{'rows/s':>11}")
    for r in ranges:
        events = raw_events(s, r)
        results: list[tuple[str, int, float]] = []
        best = min(
            (timed(partial(bench_ours_memory, events, charsets)) for _ in range(args.repeat)),
            key=lambda x: x[1],
        )
        results.append(("ours (memory)", *best))
        results.append(("ours (server)", *timed(partial(bench_ours_server, s, r))))
        results.append(("library", *timed(partial(bench_library, s, r))))
        if shutil.which("mariadb-binlog"):
            results.append(("mariadb-binlog -v", *timed(partial(bench_mariadb_binlog, s, r))))
        for name, n, secs in results:
            print(f"{r.name:<26}{name:<18}{n:>9}{secs:>9.2f}{n / secs:>11,.0f}")


if __name__ == "__main__":
    main()
