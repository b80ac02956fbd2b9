"""The reconciler beside reladiff 0.6.0 and a full-scan reference, MariaDB against PostgreSQL.

One wiki-like table (``page``: id, namespace, title, length, touched, latest revision) of ``rows`` rows
is loaded into a fresh MariaDB database and a fresh PostgreSQL database with identical values. Timed,
in one run, on the same tables:

- the full-scan reference: ``count(*)`` plus a CRC over every row, both sides at once;
- Headwater's compare (``reconciler.compare``: in-store chunk checksums, bisection, row diff), in sync;
- reladiff's ``diff_tables`` (hash diff, default bisection, threaded), in sync;
- then ``changes`` scattered rows are changed in PostgreSQL and both diff again; the differing keys
  each tool lists must be the same.

With ``--ab``, each round also times the compare as it was before the reconpre round: without the
next slice's digests asked for ahead (``CompareSettings.prefetch``: one wait per slice for the
slower side); the two are interleaved on the same tables.

Run: ``python -m benchmarks.reconcile_bench [rows] [changes] [--ab] [--rounds N]`` (``--help``); or call
:func:`run` for the typed result.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdc.core.schemas import ArrowKind
from cdc.devstack.connections import StackConnections, default_state_dir
from reconciler.canonical import Engine
from reconciler.compare import CompareSettings, compare
from reconciler.model import CompareColumn
from reconciler.stores import SqlRunner, Store

__all__ = ["ReconcileBench", "run"]

ROUNDS = 3

COLUMNS = (  # as reconciler.targets reads them from information_schema (all NOT NULL)
    CompareColumn("page_id", ArrowKind.INT32, nullable=False),
    CompareColumn("page_namespace", ArrowKind.INT32, nullable=False),
    CompareColumn("page_title", ArrowKind.STRING, nullable=False),
    CompareColumn("page_len", ArrowKind.INT32, nullable=False),
    CompareColumn("page_touched", ArrowKind.TIMESTAMP, nullable=False),
    CompareColumn("page_latest", ArrowKind.INT64, nullable=False),
)


@dataclass(frozen=True, slots=True)
class ReconcileBench:
    rows: int
    changes: int
    full_scan_s: float  # count(*) + CRC over both sides (concurrently); median of ROUNDS
    ours_in_sync_s: float  # median of ROUNDS, interleaved with the full scans
    ours_changed_s: float
    ours_found: int
    reladiff_in_sync_s: float
    reladiff_changed_s: float
    reladiff_found: int
    same_keys: bool  # both tools listed exactly the changed keys
    load: tuple[float, float]  # 1-minute load average at the start and at the end (2 shared cores)
    before_in_sync_s: float | None = None  # --ab: the compare without prefetch, median of ROUNDS
    samples: tuple[tuple[float, ...], ...] = ()  # per round: full scan, Headwater in sync (, before)
    before_changed_s: float | None = None  # --ab: the changed rows found without prefetch (same keys)
    # server CPU seconds of one in-sync compare (MariaDB's connection threads, PostgreSQL's backends,
    # read from /proc: the load inflates them less than wall time), medians of ROUNDS (--ab: before too)
    cpu_in_sync: tuple[float, float] | None = None
    before_cpu_in_sync: tuple[float, float] | None = None

    def describe(self) -> str:
        return (
            f"{self.rows} rows, MariaDB vs PostgreSQL (load {self.load[0]:.1f} to {self.load[1]:.1f}): "
            f"full scan {self.full_scan_s:.2f}s; in sync: "
            f"Headwater {self.ours_in_sync_s:.2f}s, reladiff {self.reladiff_in_sync_s:.2f}s; "
            f"{self.changes} changed rows: "
            f"Headwater {self.ours_changed_s:.2f}s ({self.ours_found} found), reladiff "
            f"{self.reladiff_changed_s:.2f}s ({self.reladiff_found} found); same keys: {self.same_keys}; "
            f"in sync / full scan {self.ours_in_sync_s / self.full_scan_s:.2f}, "
            f"changed: reladiff / Headwater {self.reladiff_changed_s / self.ours_changed_s:.1f}"
            + (
                ""
                if self.before_in_sync_s is None
                else f"; without prefetch: in sync {self.before_in_sync_s:.2f}s "
                f"({self.before_in_sync_s / self.full_scan_s:.2f} of the full scan), "
                f"{self.changes} changed {self.before_changed_s or 0:.2f}s"
            )
            + "".join(
                f"; server CPU {label} (MariaDB, PostgreSQL) {cpu[0]:.2f}s, {cpu[1]:.2f}s"
                for label, cpu in (
                    ("in sync", self.cpu_in_sync),
                    ("without prefetch", self.before_cpu_in_sync),
                )
                if cpu is not None
            )
        )


def _load(stack: StackConnections, db: str, rows: int) -> tuple[sa.Engine, sa.Engine]:
    m = stack.mariadb
    with m.connect_root(autocommit=True) as root, root.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"USE `{db}`")  # the seq_1_to_N sequence tables are found in the current database
        cur.execute(
            f"CREATE TABLE `{db}`.page (page_id INT PRIMARY KEY, page_namespace INT NOT NULL, "
            "page_title VARCHAR(255) NOT NULL, page_len INT NOT NULL, page_touched DATETIME(6) NOT NULL, "
            "page_latest BIGINT NOT NULL)"
        )
        cur.execute(
            f"INSERT INTO `{db}`.page SELECT seq, seq % 16, CONCAT('Title_', seq), (seq * 7) % 100000, "
            f"TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq SECOND, seq * 3 FROM seq_1_to_{rows}"
        )
    admin = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    admin.dispose()
    pg = sa.create_engine(stack.postgres.sqlalchemy_url(db))
    with pg.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE page (page_id INT PRIMARY KEY, page_namespace INT NOT NULL, page_title "
                "VARCHAR(255) NOT NULL, page_len INT NOT NULL, page_touched TIMESTAMP(6) NOT NULL, "
                "page_latest BIGINT NOT NULL)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO page SELECT s, s % 16, 'Title_' || s, (s * 7) % 100000, "
                "TIMESTAMP '2020-01-01 00:00:00' + s * INTERVAL '1 second', s * 3 "
                f"FROM generate_series(1, {rows}) s"
            )
        )
        conn.execute(sa.text("ANALYZE page"))
    maria = sa.create_engine(
        sa.URL.create(
            "mysql+pymysql",
            username=m.root_user,
            password=m.root_password or None,
            host=m.host,
            port=m.port,
            database=db,
        )
    )
    return maria, pg


def _full_scan(maria: sa.Engine, pg: sa.Engine) -> float:
    def m() -> None:
        with maria.connect() as conn:
            conn.exec_driver_sql(
                "SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', page_id, page_namespace, page_title, page_len, "
                "page_touched, page_latest))) FROM page"
            ).all()

    def p() -> None:
        with pg.connect() as conn:
            conn.exec_driver_sql(
                "SELECT COUNT(*), SUM(hashtext(concat_ws('|', page_id, page_namespace, page_title, page_len, "
                "page_touched, page_latest))) FROM page"
            ).all()

    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(m), pool.submit(p)]:
            f.result()
    return time.monotonic() - started


class _ServerCpu:
    """CPU seconds the servers spent for this benchmark's database: MariaDB's connection threads
    (``PROCESSLIST.TID``) and PostgreSQL's backends, from /proc (both servers run on this machine).
    A MariaDB thread taken from its thread cache brings CPU of earlier connections: every thread of
    the server is read before, only this database's after."""

    def __init__(self, maria: sa.Engine, pg: sa.Engine, db: str) -> None:
        self._maria, self._pg, self._db = maria, pg, db
        self._ticks = os.sysconf("SC_CLK_TCK")

    def _stat(self, path: str) -> float:
        try:
            fields = Path(path).read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime

    def _maria_tids(self) -> list[int]:
        with self._maria.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT TID FROM information_schema.PROCESSLIST WHERE DB = %s", (self._db,)
            ).all()
        return [int(r[0]) for r in rows]

    def _pg_pids(self) -> list[int]:
        with self._pg.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self._db,)
            ).all()
        return [int(r[0]) for r in rows]

    def read(self) -> tuple[dict[int, float], dict[int, float]]:
        tids = self._maria_tids()
        server = Path("/proc") / str(tids[0]) / "task" if tids else None
        every = [int(p.name) for p in server.iterdir()] if server is not None and server.exists() else tids
        maria = {tid: self._stat(f"/proc/{tid}/stat") for tid in every}
        return maria, {pid: self._stat(f"/proc/{pid}/stat") for pid in self._pg_pids()}

    def since(self, before: tuple[dict[int, float], dict[int, float]]) -> tuple[float, float]:
        maria = {t: self._stat(f"/proc/{t}/stat") for t in self._maria_tids()}
        pg = {p: self._stat(f"/proc/{p}/stat") for p in self._pg_pids()}
        return (
            sum(v - before[0].get(t, 0.0) for t, v in maria.items()),
            sum(v - before[1].get(p, 0.0) for p, v in pg.items()),
        )


def _median_pair(pairs: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    if not pairs:
        return None
    return statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)


def _ours(maria: sa.Engine, pg: sa.Engine, before: bool = False) -> tuple[float, set[int]]:
    source = Store(SqlRunner(maria, Engine.MARIADB, utc_session=True), "page", COLUMNS[:1], COLUMNS)
    copy = Store(SqlRunner(pg, Engine.POSTGRESQL), "page", COLUMNS[:1], COLUMNS)
    started = time.monotonic()
    found = compare(source, copy, CompareSettings(prefetch=not before))
    return time.monotonic() - started, {int(d.key[0]) for d in found.drift}


def _reladiff(stack: StackConnections, db: str) -> tuple[float, set[int]]:
    from reladiff import connect_to_table, diff_tables  # type: ignore[import-untyped]

    m, p = stack.mariadb, stack.postgres
    pg_url = sa.engine.make_url(p.sqlalchemy_url(db)).set(drivername="postgresql")
    maria_uri = f"mysql://{m.root_user}:{m.root_password}@{m.host}:{m.port}/{db}"
    extra = tuple(c.name for c in COLUMNS[1:])
    t1 = connect_to_table(maria_uri, "page", "page_id", extra_columns=extra)
    t2 = connect_to_table(
        pg_url.render_as_string(hide_password=False), "page", "page_id", extra_columns=extra
    )
    try:
        started = time.monotonic()
        keys = {int(row[0]) for _, row in diff_tables(t1, t2)}
        return time.monotonic() - started, keys
    finally:  # its open transactions would hold the tables' metadata locks (DROP DATABASE waits)
        t1.database.close()
        t2.database.close()


def run(
    rows: int = 1_000_000,
    changes: int = 1_000,
    stack: StackConnections | None = None,
    ab: bool = False,
    rounds: int = ROUNDS,
) -> ReconcileBench:
    stack = stack or StackConnections.read(default_state_dir())
    db = f"recon_bench_{uuid.uuid4().hex[:8]}"
    maria, pg = _load(stack, db, rows)
    try:
        load0 = os.getloadavg()[0]
        # the in-sync ratio is two short timings on a shared machine: three interleaved rounds, and
        # the median of each (one sample swung 0.9-4.8 s for the full scan at load 6-10)
        fulls, ours, before = [], [], []
        cpu = _ServerCpu(maria, pg, db)
        cpu_ours: list[tuple[float, float]] = []
        cpu_before: list[tuple[float, float]] = []
        for n in range(rounds):
            fulls.append(_full_scan(maria, pg))
            # --ab: the two compares in turns, now one first, now the other (neither always follows
            # the full scan)
            for old in [False, True][:: -1 if n % 2 else 1] if ab else [False]:
                at = cpu.read()
                (before if old else ours).append(_ours(maria, pg, before=old))
                (cpu_before if old else cpu_ours).append(cpu.since(at))
        full = statistics.median(fulls)
        ours_sync = statistics.median(t for t, _ in ours)
        ours_keys0 = set().union(*(k for _, k in ours + before))
        rd_sync, rd_keys0 = _reladiff(stack, db)
        assert not ours_keys0 and not rd_keys0, (len(ours_keys0), len(rd_keys0))
        columns = [fulls, [t for t, _ in ours]] + ([[t for t, _ in before]] if before else [])
        samples = tuple(zip(*columns, strict=True))
        changed = sorted(random.Random(42).sample(range(1, rows + 1), changes))
        with pg.begin() as conn:
            conn.execute(
                sa.text("UPDATE page SET page_len = page_len + 1 WHERE page_id = ANY(:ids)"), {"ids": changed}
            )
        # the first reader after the UPDATE would pay for its dead tuples (hint bits, index entries):
        # vacuumed first, so that the tools (and --ab's two compares) read the same pages
        with pg.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM page")
        ours_changed, ours_keys = _ours(maria, pg)
        before_changed = None
        if ab:
            before_changed, before_keys = _ours(maria, pg, before=True)
            assert before_keys == ours_keys, len(before_keys ^ ours_keys)
        rd_changed, rd_keys = _reladiff(stack, db)
        return ReconcileBench(
            rows, changes, full, ours_sync, ours_changed, len(ours_keys), rd_sync, rd_changed, len(rd_keys),
            ours_keys == set(changed) == rd_keys, (load0, os.getloadavg()[0]),
            statistics.median(t for t, _ in before) if before else None,
            samples, before_changed, _median_pair(cpu_ours), _median_pair(cpu_before),
        )  # fmt: skip
    finally:
        maria.dispose()
        pg.dispose()
        _drop(stack, db)


def _drop(stack: StackConnections, db: str) -> None:
    with stack.mariadb.connect_root(autocommit=True) as root, root.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    admin = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()


# -- memory over the Iceberg history: the state as a DuckDB view over the files, or rebuilt in memory --


@dataclass(frozen=True, slots=True)
class IcebergMemory:
    rows: int
    mode: str  # "view" (reconciler/iceberg_state.py) or "rebuild" (the whole state in memory)
    peak_rss_mb: float  # VmHWM of the compare's process, imports included
    seconds: float
    found: int  # differences (0: the history matches the source)


def _history_arrow(rows: int) -> Any:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(range(1, rows + 1), pa.int64())
    epoch = dt.datetime(2020, 1, 1)
    return pa.table(
        {
            "page_id": ids.cast(pa.int32()),
            "page_namespace": pc.bit_wise_and(ids, 15).cast(pa.int32()),
            "page_title": pc.binary_join_element_wise("Title_", ids.cast(pa.string()), ""),
            "page_len": pc.subtract(
                pc.multiply(ids, 7), pc.multiply(pc.divide(pc.multiply(ids, 7), 100_000), 100_000)
            ).cast(pa.int32()),
            "page_touched": pa.array(
                [epoch + dt.timedelta(seconds=i) for i in range(1, rows + 1)], pa.timestamp("us")
            ),
            "page_latest": pc.multiply(ids, 3),
            "_op": pa.array(["c"] * rows),
            "_position": pa.array([f"bench:{i:012d}" for i in range(1, rows + 1)]),
        }
    )


def _write_history(warehouse: str, catalog_uri: str, db: str, rows: int) -> dict[str, str]:
    from cdc.core.schemas import TableRef
    from sinks.iceberg.catalogs import history_identifiers, open_catalog
    from sinks.iceberg.history_schema import PRIMARY_KEY_PROPERTY, SOURCE_PROPERTY

    properties = {"type": "sql", "uri": catalog_uri, "warehouse": warehouse}
    catalog = open_catalog(properties)
    catalog.create_namespace(db)
    ref = TableRef(db, "page")
    short, _ = history_identifiers(db, ref)
    data = _history_arrow(rows)
    table = catalog.create_table(
        short, schema=data.schema, properties={SOURCE_PROPERTY: str(ref), PRIMARY_KEY_PROPERTY: '["page_id"]'}
    )
    for at in range(0, rows, 250_000):  # as a sink commits: several files
        table.append(data.slice(at, 250_000))
    return properties


def _iceberg_compare(
    properties: dict[str, str], db: str, maria_url: str, mode: str
) -> tuple[float, float, int]:
    """In a fresh process: the compare of the source with the history, and its peak RSS."""
    from pathlib import Path

    from cdc.core.schemas import TableRef
    from reconciler.iceberg_state import IcebergStateRunner, local_files
    from reconciler.stores import DuckDbRunner
    from sinks.iceberg.as_of import read_history, rebuild_state
    from sinks.iceberg.catalogs import find_history_table, open_catalog

    ref = TableRef(db, "page")
    started = time.monotonic()
    source = Store(SqlRunner(sa.create_engine(maria_url), Engine.MARIADB, utc_session=True), "page",
                   COLUMNS[:1], COLUMNS)  # fmt: skip
    runner: Any
    if mode == "view":
        _, table = find_history_table(open_catalog(properties), db, ref)
        files = local_files(table, None)
        assert files is not None
        runner = IcebergStateRunner(files, ("page_id",), None)
    else:
        history = read_history(properties, db, ref)
        runner = DuckDbRunner(rebuild_state(history.rows, history.primary_key))
    found = compare(source, Store(runner, "t", COLUMNS[:1], COLUMNS), CompareSettings())
    runner.close()
    # VmHWM, not ru_maxrss: the latter keeps the parent's pages at the fork that started this process
    peak_kb = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    return peak_kb / 1024, time.monotonic() - started, len(found.drift)


def iceberg_memory(sizes: tuple[int, ...] = (200_000, 1_000_000)) -> list[IcebergMemory]:
    """Peak RSS of comparing a MariaDB table with its Iceberg history, per size and mode."""
    import json
    import subprocess
    import tempfile
    from pathlib import Path

    stack = StackConnections.read(default_state_dir())
    m = stack.mariadb
    out = []
    for rows in sizes:
        db = f"recon_bench_{uuid.uuid4().hex[:8]}"
        maria, pg = _load(stack, db, rows)
        try:
            with tempfile.TemporaryDirectory(prefix="recon-bench-") as tmp:
                properties = _write_history(Path(tmp, "wh").as_uri(), f"sqlite:///{tmp}/catalog.db", db, rows)
                url = sa.URL.create("mysql+pymysql", username=m.root_user, password=m.root_password or None,
                                    host=m.host, port=m.port, database=db)  # fmt: skip
                for mode in ("view", "rebuild"):
                    # a fresh interpreter per measure: its peak RSS is this compare's alone
                    args = json.dumps([properties, db, url.render_as_string(hide_password=False), mode])
                    child = subprocess.run(
                        [sys.executable, "-m", "benchmarks.reconcile_bench", "iceberg-child", args],
                        capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    rss, seconds, found = json.loads(child.stdout.strip().splitlines()[-1])
                    out.append(IcebergMemory(rows, mode, rss, seconds, found))
        finally:
            maria.dispose()
            pg.dispose()
            _drop(stack, db)
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["iceberg-child"]:
        import json

        print(json.dumps(_iceberg_compare(*json.loads(sys.argv[2]))))
        sys.exit(0)
    if sys.argv[1:2] == ["iceberg-memory"]:
        for measured in iceberg_memory():
            print(asdict(measured))
        sys.exit(0)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reconcile_bench",
        description="Headwater's compare beside reladiff and a full scan, MariaDB against PostgreSQL "
        "(subcommands: iceberg-memory)",
    )
    parser.add_argument("rows", type=int, nargs="?", default=1_000_000)
    parser.add_argument("changes", type=int, nargs="?", default=1_000)
    parser.add_argument(
        "--ab",
        action="store_true",
        help="also time the compare without the digest prefetch, interleaved",
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved in-sync rounds (medians)")
    args = parser.parse_args()
    result = run(args.rows, args.changes, ab=args.ab, rounds=args.rounds)
    print(result.describe())
    print(asdict(result))
