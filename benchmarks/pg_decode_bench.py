"""PostgreSQL decoder alone: CPU-us per row change on captured pgoutput payloads, A/B in one run.

Run: ``.venv/bin/python -m benchmarks.pg_decode_bench [ROWS] [--against DIR ...]`` with the dev stack
up. Writes pg_capture_bench's workload (ROWS inserts in 1000-row transactions, then as many updates)
into a fresh database, reads its pgoutput messages once through psycopg2 (no decoding), then feeds
them to ``PgoutputDecoder`` REPS times (min and median CPU time per row change). Each ``--against``
DIR (a checkout or ``git archive`` of another commit, holding ``cdc/``) decodes the same payloads in a
child interpreter, interleaved with this checkout, so that the machine's load falls on all alike.
Never asserted in tests; compare figures of one run only.
"""

from __future__ import annotations

import pickle
import secrets
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DECODE = """
import pickle, sys, time
from cdc.core.table_filter import TableFilter
from cdc.sources.postgresql.pgoutput import PgoutputDecoder
payloads, catalog = pickle.load(open(sys.argv[1], "rb"))
rows = sum(1 for p in payloads if p[:1] in (b"I", b"U", b"D"))
out = []
for _ in range(int(sys.argv[2])):
    feed = PgoutputDecoder(TableFilter(("public.*",)), catalog.get, None).feed
    t0 = time.process_time()
    for p in payloads:
        feed(p)
    out.append((time.process_time() - t0) / rows * 1e6)
print(" ".join(f"{us:.3f}" for us in out))
"""


def capture(rows: int, path: Path) -> None:
    import psycopg
    import psycopg2
    import psycopg2.extras

    from benchmarks.pg_capture_bench import TABLE
    from cdc.devstack.connections import StackConnections, default_state_dir
    from cdc.sources.postgresql.reader import SESSION_OPTIONS
    from cdc.sources.postgresql.server import catalog_columns, current_lsn

    conn = StackConnections.read(default_state_dir()).pgsource
    assert conn is not None, "the dev stack has no pgsource cluster: cdc dev up"
    db = f"pgdecode_{secrets.token_hex(3)}"
    with psycopg.connect(conn.admin_conninfo("postgres"), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {db}")
    admin = psycopg.connect(conn.admin_conninfo(db), autocommit=True)
    try:
        admin.execute(TABLE)
        admin.execute("CREATE PUBLICATION bench FOR ALL TABLES")
        admin.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (db,))
        for first in range(0, rows, 1000):
            with admin.transaction():
                admin.execute(
                    "INSERT INTO orders SELECT g, g %% 1000, 'order ' || g, g * 1.25, g / 7.0, g %% 2 = 0,"
                    " '2024-05-01 12:30:15.123456'::timestamp + g * interval '1 second', now()"
                    " FROM generate_series(%s::bigint, %s::bigint) g",
                    (first + 1, min(first + 1000, rows)),
                )
        for first in range(0, rows, 1000):
            with admin.transaction():
                admin.execute(
                    "UPDATE orders SET score = score + 1, updated_at = now() WHERE id > %s AND id <= %s",
                    (first, first + 1000),
                )
        end_lsn = current_lsn(admin)
        row = admin.execute("SELECT 'orders'::regclass::oid").fetchone()
        assert row is not None
        relid = int(str(row[0]))
        catalog = {relid: catalog_columns(admin, relid)}
        repl = psycopg2.connect(
            host=conn.host, port=conn.port, user=conn.user, password=conn.password, dbname=db,
            options=SESSION_OPTIONS, connection_factory=psycopg2.extras.LogicalReplicationConnection,
        )  # fmt: skip
        cur = repl.cursor()
        cur.start_replication(
            slot_name=db, decode=False, options={"proto_version": "1", "publication_names": "bench"}
        )
        payloads: list[bytes] = []
        while True:
            msg = cur.read_message()
            if msg is None:
                select.select([repl.fileno()], [], [], 0.5)
                continue
            payloads.append(msg.payload)
            if msg.payload[:1] == b"C" and msg.wal_end >= end_lsn:
                break
        repl.close()
        path.write_bytes(pickle.dumps((payloads, catalog)))
    finally:
        admin.execute("SELECT pg_drop_replication_slot(%s)", (db,))
        admin.close()
        with psycopg.connect(conn.admin_conninfo("postgres"), autocommit=True) as c:
            c.execute(f"DROP DATABASE {db} WITH (FORCE)")


def main() -> None:
    args = sys.argv[1:]
    against = [args[i + 1] for i, a in enumerate(args) if a == "--against"]
    plain = [a for i, a in enumerate(args) if a != "--against" and (i == 0 or args[i - 1] != "--against")]
    rows = int(plain[0]) if plain else 20_000
    checkouts = [str(Path(__file__).resolve().parent.parent), *against]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payloads.pkl"
        t0 = time.perf_counter()
        capture(rows, path)
        print(f"captured {2 * rows} row changes in {time.perf_counter() - t0:.1f} s")
        runs: dict[str, list[float]] = {c: [] for c in checkouts}
        for _ in range(4):  # rounds, interleaved
            for checkout in checkouts:
                out = subprocess.run(
                    [sys.executable, "-c", f"import sys; sys.path.insert(0, {checkout!r})\n" + DECODE,
                     str(path), "5"],
                    check=True, capture_output=True, text=True,
                ).stdout  # fmt: skip
                runs[checkout] += [float(x) for x in out.split()]
        for checkout, us in runs.items():
            us.sort()
            print(f"{checkout}: CPU-us per row change min {us[0]:.2f}, median {us[len(us) // 2]:.2f}")


if __name__ == "__main__":
    main()
