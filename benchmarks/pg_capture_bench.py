"""PostgreSQL capture speed beside pg_recvlogical, on the same WAL range with the same plugin.

Run: ``.venv/bin/python benchmarks/pg_capture_bench.py [ROWS] [ROWS_PER_TRANSACTION] [REPS]`` with the dev
stack up (its pgsource cluster). One workload (an 8-column table, ROWS inserts in transactions of
ROWS_PER_TRANSACTION, then as many updates) is written once; three slots created before it all hold
the same WAL range, and three readers decode it in the same run:

- ``pg_recvlogical`` (pgoutput proto 1, the publication, output to /dev/null): the server-side
  decoding and transport alone, the reference;
- ``transport``: psycopg2's LogicalReplicationConnection reading the messages without decoding them;
- ``cdc source``: the PostgreSQL source's reader, decoding every message into SourceRecords
  (ChangeEvents with typed values), what `cdc run` hands to the Kafka writer.

Each reader runs REPS times (3), interleaved, each time on its own slot; the best run of each is
compared. Prints rows/s of each, the source's CPU time per row change (transport and decoding, this
process), and the ratio of the source to pg_recvlogical (target >= 0.5). Never asserted in tests. The
machine is shared: compare figures of one run only (A/B: run it with ``PYTHONPATH=<another checkout>``
beside this one; benchmarks/pg_decode_bench.py times the decoder alone).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

import psycopg
import psycopg2
import psycopg2.extras

from cdc.core.events import ChangeEvent
from cdc.core.positions import RestartPoint, lsn_position
from cdc.core.table_filter import TableFilter
from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.sources.postgresql.reader import SESSION_OPTIONS, Acks, PgLogicalReader, ReaderOptions
from cdc.sources.postgresql.server import PgSettings, current_lsn

TABLE = """CREATE TABLE orders (id bigint PRIMARY KEY, account_id int, title varchar(80),
    amount numeric(12, 2), score double precision, active boolean, created_at timestamp,
    updated_at timestamptz)"""


def _lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    per_txn = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    conn = StackConnections.read(default_state_dir()).pgsource
    assert conn is not None, "the dev stack has no pgsource cluster: cdc dev up"
    db = f"pgbench_{secrets.token_hex(3)}"
    with psycopg.connect(conn.admin_conninfo("postgres"), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {db}")
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    names = ("pg_recvlogical", "transport", "cdc source")
    # one slot per reader and repetition, all created before the workload: the same WAL range each
    slots = [f"{db}_{n}_{r}" for r in range(reps) for n in range(len(names))]
    admin = psycopg.connect(conn.admin_conninfo(db), autocommit=True)
    try:
        admin.execute(TABLE)
        admin.execute("CREATE PUBLICATION bench FOR ALL TABLES")
        for slot in slots:
            admin.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        start_lsn = current_lsn(admin)
        t0 = time.perf_counter()
        for first in range(0, rows, per_txn):
            last = min(first + per_txn, rows)
            with admin.transaction():
                admin.execute(
                    "INSERT INTO orders SELECT g, g %% 1000, 'order ' || g, g * 1.25, g / 7.0, g %% 2 = 0,"
                    " '2024-05-01 12:30:15.123456'::timestamp + g * interval '1 second', now()"
                    " FROM generate_series(%s::bigint, %s::bigint) g",
                    (first + 1, last),
                )
        for first in range(0, rows, per_txn):
            with admin.transaction():
                admin.execute(
                    "UPDATE orders SET score = score + 1, updated_at = now() WHERE id > %s AND id <= %s",
                    (first, first + per_txn),
                )
        end_lsn = current_lsn(admin)
        changes = 2 * rows
        print(
            f"workload: {changes} row changes in {2 * -(-rows // per_txn)} transactions, "
            f"{(end_lsn - start_lsn) / 2**20:.0f} MiB of WAL, written in {time.perf_counter() - t0:.1f} s"
        )
        timings: dict[str, list[float]] = {n: [] for n in names}
        cpu: list[float] = []
        for r in range(reps):  # interleaved, so that the machine's load falls on all three alike
            timings[names[0]].append(_recvlogical(conn, db, f"{db}_0_{r}", end_lsn))
            timings[names[1]].append(_transport(conn, db, f"{db}_1_{r}", end_lsn))
            wall, cpu_s = _source(conn, db, f"{db}_2_{r}", start_lsn, changes)
            timings[names[2]].append(wall)
            cpu.append(cpu_s / changes * 1e6)
        best = {n: min(t) for n, t in timings.items()}
        for name, seconds in best.items():
            runs = ", ".join(f"{t:.2f}" for t in timings[name])
            print(f"{name:>15}: best {seconds:6.2f} s  {changes / seconds:10,.0f} rows/s   (runs: {runs} s)")
        cpu_runs = ", ".join(f"{c:.2f}" for c in cpu)
        print(f"cdc source CPU per row change: min {min(cpu):.2f} us (runs: {cpu_runs})")
        ratio = best["pg_recvlogical"] / best["cdc source"]
        print(f"cdc source / pg_recvlogical: {ratio:.2f}x (best of {reps}; target >= 0.5)")
    finally:
        for slot in slots:
            admin.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (slot,),
            )
        admin.close()
        with psycopg.connect(conn.admin_conninfo("postgres"), autocommit=True) as c:
            c.execute(f"DROP DATABASE {db} WITH (FORCE)")


def _recvlogical(conn: object, db: str, slot: str, end_lsn: int) -> float:
    from cdc.devstack.connections import PgSourceConnection

    assert isinstance(conn, PgSourceConnection)
    env = {**os.environ, "PGPASSWORD": conn.password}
    argv = [
        "pg_recvlogical", "-h", conn.host, "-p", str(conn.port), "-U", conn.user, "-d", db, "-S", slot,
        "--start", "-E", _lsn_text(end_lsn), "--no-loop", "-f", "/dev/null",
        "-o", "proto_version=1", "-o", "publication_names=bench",
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True)
    return time.perf_counter() - t0


def _transport(conn: object, db: str, slot: str, end_lsn: int) -> float:
    from cdc.devstack.connections import PgSourceConnection

    assert isinstance(conn, PgSourceConnection)
    t0 = time.perf_counter()
    repl = psycopg2.connect(
        host=conn.host, port=conn.port, user=conn.user, password=conn.password, dbname=db,
        options=SESSION_OPTIONS, connection_factory=psycopg2.extras.LogicalReplicationConnection,
    )  # fmt: skip
    cur = repl.cursor()
    cur.start_replication(
        slot_name=slot, decode=False, options={"proto_version": "1", "publication_names": "bench"}
    )
    while True:
        msg = cur.read_message()
        if msg is None:
            import select

            select.select([repl.fileno()], [], [], 0.5)
            continue
        if msg.data_start >= end_lsn or (msg.payload[:1] == b"C" and msg.wal_end >= end_lsn):
            break
    repl.close()
    return time.perf_counter() - t0


def _source(conn: object, db: str, slot: str, start_lsn: int, changes: int) -> tuple[float, float]:
    from cdc.devstack.connections import PgSourceConnection

    assert isinstance(conn, PgSourceConnection)
    settings = PgSettings(conn.host, conn.port, conn.user, conn.password, db)
    options = ReaderOptions(settings, slot, "bench", TableFilter(("public.*",)), blocking=False)
    reader = PgLogicalReader(options, Acks())
    t0 = time.perf_counter()
    c0 = time.process_time()
    seen = 0
    for record in reader.records(RestartPoint(lsn_position(start_lsn, 0, 0))):
        if record.__class__ is ChangeEvent:
            seen += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert seen == changes, f"the source decoded {seen} row changes, expected {changes}"
    return elapsed, cpu


if __name__ == "__main__":
    main()
