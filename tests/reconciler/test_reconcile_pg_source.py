"""`cdc reconcile` with a PostgreSQL source (issue 13): the real `cdc run` from the shared pgsource
cluster into serving tables in PostgreSQL, MariaDB and SQLite and the Iceberg history; drift injected
behind the pipeline's back is found (missing, extra, different with its columns) and repaired through
the stream; a busy, correct pipeline reports nothing."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from cdc.devstack.connections import StackConnections
from reconciler.model import DriftKind, Verdict
from reconciler.report import Report
from tests.support.pgsrc_daemon import ForkedDaemon, warm_up

PASSWORD_ENV = "CDC_SOURCE_PASSWORD"  # what tests/support/pgsrc_daemon.py's daemons are given

# every kind the PostgreSQL capture gives, NULLs included: equal values must compare equal in each copy
TABLE = (
    "CREATE TYPE mood AS ENUM ('calm', 'busy');"
    "CREATE TABLE item (id int PRIMARY KEY, amount numeric(12,2), ratio float8, at timestamptz,"
    " day date, t time, blob bytea, doc jsonb, u uuid, tags int[], m mood, code char(5), note text,"
    " flag bool, span interval, big numeric, ip inet, small int2, at_local timestamp(3))"
)
ROWS = (
    "INSERT INTO item SELECT g, g * 1.25, g / 3.0,"
    " timestamptz '2024-02-29 13:45:01.25+02' + g * interval '1 h', date '2024-01-01' + g,"
    " time '10:00:00.5' + g * interval '1 s', decode(md5(g::text), 'hex'),"
    " jsonb_build_object('g', g, 'b', array[1, 2]), md5(g::text)::uuid, array[g, NULL, 3],"
    " CASE WHEN g % 2 = 0 THEN 'calm' ELSE 'busy' END::mood, 'c' || g, CASE WHEN g % 5 = 0 THEN NULL"
    " WHEN g % 7 = 0 THEN '' ELSE 'note ' || g END, g % 3 = 0, g * interval '1 day 2 h',"
    " 1e30 + g, ('10.0.0.' || g)::inet, g, timestamp '2020-01-01 00:00:00.123' + g * interval '1 min'"
    " FROM generate_series(1, 40) g"
)


@dataclass
class PgReconPipeline:
    stack: StackConnections
    tmp: Path
    db: str
    config: Path = Path()
    procs: list[ForkedDaemon] = field(default_factory=list)

    def admin(self, database: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
        assert self.stack.pgsource is not None
        return psycopg.connect(self.stack.pgsource.admin_conninfo(database or self.db), autocommit=True)

    def run(self, *statements: str) -> None:
        with self.admin() as c:
            for s in statements:
                c.execute(s)

    def env(self) -> dict[str, str]:
        assert self.stack.pgsource is not None
        return {**os.environ, PASSWORD_ENV: self.stack.pgsource.password}

    def write_config(self, kafka: bool) -> None:
        s = self.stack.pgsource
        assert s is not None
        self.config = self.tmp / "cdc.yaml"
        stream = f"stream: {{type: kafka, bootstrap_servers: '{self.stack.kafka.bootstrap_servers}'}}\n"
        m = self.stack.mariadb
        maria = sa.URL.create(
            "mysql+pymysql", username=m.root_user, password=m.root_password or None, host=m.host,
            port=m.port, database=f"{self.db}_serving",
        ).render_as_string(hide_password=False)  # fmt: skip
        self.config.write_text(
            f"name: {self.db.replace('_', '-')}\n"
            f"source: {{type: postgresql, host: {s.host}, port: {s.port}, user: {s.user},"
            f" password: '${{{PASSWORD_ENV}}}', database: {self.db}, slot: {self.db},"
            " publication: pgrecon_pub, heartbeat_seconds: 0.5}\n" + (stream if kafka else "") + "sinks:\n"
            f"  - {{type: sql, name: pg, url: '{self.pg_url()}'}}\n"
            f"  - {{type: sql, name: lite, url: 'sqlite:///{self.tmp / 'serving.db'}'}}\n"
            + ("" if kafka else f"  - {{type: sql, name: maria, url: '{maria}'}}\n")
            + f"  - {{type: iceberg, name: history, namespace: {self.db}, commit_seconds: 1,"
            f" catalog: {{type: sql, uri: 'sqlite:///{self.tmp / 'catalog.db'}',"
            f" warehouse: '{(self.tmp / 'wh').as_uri()}'}}}}\n"
            "batch: {idle_flush_seconds: 1}\n"
            f"state_dir: {self.tmp / 'state'}\n"
        )

    def pg_url(self) -> str:
        url = sa.engine.make_url(self.stack.postgres.sqlalchemy_url(self.db))
        return url.render_as_string(hide_password=False)

    def background(self, command: str) -> None:
        """`cdc run` or `cdc sink`, forked from a server that imported Headwater once (seconds saved)."""
        assert self.stack.pgsource is not None
        daemon = ForkedDaemon(self.config, self.tmp / f"{command}.log", command, self.stack.pgsource.password)
        daemon.start()
        self.procs.append(daemon)

    def reconcile(self, *args: str) -> tuple[int, dict[str, Any], str]:
        """`cdc reconcile` in this process (an interpreter start is seconds on a loaded machine)."""
        from click.testing import CliRunner

        from cdc.cli import main

        report = self.tmp / f"report-{secrets.token_hex(3)}.json"
        command = ["reconcile", "-c", str(self.config), "--report", str(report), "--wait", "20", *args]
        done = CliRunner().invoke(main, command, env=self.env())
        data = json.loads(report.read_text()) if report.exists() else {}
        return done.exit_code, data, done.output

    def reconcile_here(self, wait: float = 20.0, max_lag: float = 0.0, sink: str | None = None) -> Report:
        from cdc.config import load_config
        from cdc.reconcile_pipeline import reconcile_pipeline

        return reconcile_pipeline(load_config(self.config, self.env()), (), sink, wait, max_lag=max_lag)

    def source_rows(self) -> list[tuple[object, ...]]:
        with self.admin() as c:
            return c.execute("SELECT id, amount, note, code FROM item ORDER BY id").fetchall()


@pytest.fixture(scope="module", autouse=True)
def _daemons_warm() -> None:
    warm_up()  # the daemons' fork server imports Headwater once


@pytest.fixture
def pipeline(stack: StackConnections, tmp_path: Path) -> Iterator[PgReconPipeline]:
    assert stack.pgsource is not None, "the dev stack has no pgsource cluster: run `cdc dev up`"
    p = PgReconPipeline(stack, tmp_path, f"pgrecon_{secrets.token_hex(4)}")
    with p.admin("postgres") as c:
        c.execute(f"CREATE DATABASE {p.db}")
    user = stack.pgsource.user
    p.run(
        "CREATE PUBLICATION pgrecon_pub FOR ALL TABLES",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {user}",
    )
    serving = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    with serving.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{p.db}"'))
    with stack.mariadb.connect_root(autocommit=True) as maria, maria.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{p.db}_serving`")
    try:
        yield p
    finally:
        for daemon in p.procs:
            if daemon.alive:
                daemon.kill()
        with p.admin("postgres") as c:
            c.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s"
                " AND active_pid IS NOT NULL",
                (p.db,),
            )
            c.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (p.db,),
            )
            c.execute(f"DROP DATABASE {p.db} WITH (FORCE)")
        with serving.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{p.db}" WITH (FORCE)'))
        serving.dispose()
        with stack.mariadb.connect_root(autocommit=True) as maria, maria.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{p.db}_serving`")


def _topic(p: PgReconPipeline) -> list[dict[str, Any]]:
    """Every committed envelope of the table's topic."""
    import uuid

    from confluent_kafka import Consumer, TopicPartition

    from cdc.core.schemas import TableRef
    from cdc.stream.topics import TopicNames

    topic = TopicNames(p.db.replace("_", "-")).table(TableRef("public", "item"))
    consumer = Consumer({"bootstrap.servers": p.stack.kafka.bootstrap_servers, "group.id": uuid.uuid4().hex,
                         "isolation.level": "read_committed", "enable.partition.eof": True})  # fmt: skip
    out: list[dict[str, Any]] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        while True:
            message = consumer.poll(5)
            assert message is not None, "the topic did not reach its end in 5 s"
            if message.error() is not None:
                break
            value = message.value()
            if value:
                out.append(json.loads(value))
    finally:
        consumer.close()
    return out


def _verdicts(report: Report) -> dict[str, Verdict]:
    return {r.sink: r.verdict for r in report.results}


def _inject_iceberg(p: PgReconPipeline, changes: list[tuple[str, dict[str, Any]]]) -> None:
    """History rows appended straight into the Iceberg table at its applied position (as a bug would)."""
    import pyarrow as pa

    from cdc.config import load_config
    from cdc.config.models import IcebergSinkConfig
    from cdc.core.schemas import TableRef
    from sinks.iceberg.catalogs import find_history_table, open_catalog
    from sinks.iceberg.snapshot_state import stored_state

    config = load_config(p.config, p.env()).sinks[-1]
    assert isinstance(config, IcebergSinkConfig)
    _, iceberg = find_history_table(
        open_catalog(config.catalog), config.namespace, TableRef("public", "item")
    )
    assert iceberg is not None
    state = stored_state(iceberg)
    assert state is not None
    existing = iceberg.scan().to_arrow().sort_by("_position").to_pylist()
    rows = []
    for op, values in changes:
        row = dict([r for r in existing if r["id"] == values["id"]][-1])
        row.update(values)
        row["_op"] = op
        row["_position"] = state.position.to_string()
        rows.append(row)
    iceberg.append(pa.Table.from_pylist(rows, schema=iceberg.schema().as_arrow()))


def _started(p: PgReconPipeline, copies: int) -> None:
    """`cdc run` (and in Kafka mode `cdc sink`) in the background, the slot made, the rows loaded and
    in the serving copies (the reconciler then pairs positions for whatever lag remains)."""
    p.run(TABLE)
    p.background("run")
    if copies == 2:
        p.background("sink")
    _wait(
        lambda: bool(
            p.admin().execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (p.db,)).fetchall()
        )
    )
    p.run(ROWS, "UPDATE item SET note = 'changed' WHERE id = 4", "DELETE FROM item WHERE id = 40")
    lite = sa.create_engine(f"sqlite:///{p.tmp / 'serving.db'}")

    def loaded() -> bool:
        try:
            with lite.connect() as c:
                return bool(c.execute(sa.text("SELECT count(*) FROM item")).scalar_one() == 39)
        except sa.exc.OperationalError:
            return False  # no table yet

    _wait(loaded)
    lite.dispose()
    time.sleep(1.5)  # the Iceberg history's first commit (commit_seconds: 1)


def _wait(check: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_embedded_drift_in_every_copy_is_found_and_repaired(pipeline: PgReconPipeline) -> None:
    p = pipeline
    p.write_config(kafka=False)
    _started(p, copies=1)

    clean = p.reconcile_here()
    assert not clean.errors, clean.errors
    assert _verdicts(clean) == dict.fromkeys(["pg", "lite", "maria", "history"], Verdict.MATCH), [
        (r.sink, r.drift[:2]) for r in clean.results
    ]
    assert {r.rows_source for r in clean.results} == {39}
    assert clean.results[0].source_position.count("/") == 1  # an LSN, PostgreSQL's text form

    # drift behind the pipeline's back: one of each kind per copy
    with sa.create_engine(p.pg_url()).begin() as c:
        c.execute(sa.text("DELETE FROM item WHERE id = 3"))
        c.execute(sa.text("UPDATE item SET amount = 999.99, note = 'bug' WHERE id = 5"))
    with sa.create_engine(f"sqlite:///{p.tmp / 'serving.db'}").begin() as c:
        c.execute(sa.text("INSERT INTO item (id, note) VALUES (1000, 'extra')"))
    m = p.stack.mariadb
    with m.connect_root(database=f"{p.db}_serving", autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("UPDATE item SET code = 'zz' WHERE id = 7")
    _inject_iceberg(p, [("d", {"id": 9}), ("u", {"id": 11, "note": "history bug"})])

    # one run: the JSON report holds the first comparison, the output the repair and the second one
    code, report, output = p.reconcile("--repair")
    assert code == 0, output
    found = {
        (r["sink"], d["kind"], d["key"][0], tuple(d["columns"]))
        for r in report["results"]
        for d in r["samples"]
    }
    assert found == {
        ("pg", "missing", "3", ()),
        ("pg", "different", "5", ("amount", "note")),
        ("lite", "extra", "1000", ()),
        ("maria", "different", "7", ("code",)),
        ("history", "missing", "9", ()),
        ("history", "different", "11", ("note",)),
    }, output
    again = output.split("comparing public.item again")[1]
    assert again.count("MATCH    public.item") == 4 and "every copy matches its source" in again, output

    from click.testing import CliRunner

    from cdc.cli import main

    status = CliRunner().invoke(main, ["status", "-c", str(p.config)], env=p.env())
    assert "reconciled  public.item -> pg: match" in status.output, status.output


def test_kafka_busy_pipeline_reports_nothing_and_drift_is_repaired_through_the_daemon(
    pipeline: PgReconPipeline,
) -> None:
    p = pipeline
    p.write_config(kafka=True)
    _started(p, copies=2)
    # infinities: PostgreSQL, SQLite and the Iceberg history (DuckDB) each spell them their own way
    p.run(
        "UPDATE item SET ratio = 'Infinity' WHERE id = 3", "UPDATE item SET ratio = '-Infinity' WHERE id = 4"
    )
    stop = threading.Event()

    def writes() -> None:  # ids 10-39 and new ones: the drift below is on keys it never touches
        n = 0
        with p.admin() as c:
            while not stop.is_set():
                n += 1
                c.execute(
                    "UPDATE item SET amount = amount + 1, note = %s WHERE id = %s", (f"w{n}", n % 30 + 10)
                )
                if n % 5 == 0:
                    c.execute("DELETE FROM item WHERE id = %s", (100 + n - 5,))
                c.execute("INSERT INTO item (id, note) VALUES (%s, 'new')", (100 + n,))
                time.sleep(0.02)

    writer = threading.Thread(target=writes)
    writer.start()
    try:
        # every copy, then the PostgreSQL one again paced by LSNs (--max-lag)
        runs = [p.reconcile_here(), p.reconcile_here(max_lag=2.0, sink="pg")]
    finally:
        stop.set()
        writer.join()
    for report, copies in zip(runs, (["pg", "lite", "history"], ["pg"]), strict=True):
        assert not report.errors, report.errors
        assert _verdicts(report) == dict.fromkeys(copies, Verdict.MATCH), [
            (r.sink, r.verdict, r.drift[:3], r.message) for r in report.results
        ]

    with sa.create_engine(p.pg_url()).begin() as c:
        c.execute(sa.text("DELETE FROM item WHERE id = 2"))
        c.execute(sa.text("UPDATE item SET note = 'bug' WHERE id = 6"))
    code, data, output = p.reconcile("--repair", "--sink", "pg")
    assert code == 0, output
    kinds = {(d["kind"], d["key"][0]) for r in data["results"] for d in r["samples"]}
    assert kinds == {(DriftKind.MISSING.value, "2"), (DriftKind.DIFFERENT.value, "6")}, output
    assert "through the running `cdc run`" in output, output
    # every consumer saw the corrections: the topic holds them, marked as a repair by a PostgreSQL source
    marked = [e for e in _topic(p) if e["source"]["snapshot"] == "repair"]
    assert {e["op"] for e in marked} == {"r"} and len(marked) >= 2, marked
    assert {(e["source"]["connector"], e["source"]["snapshot"]) for e in marked} == {("postgresql", "repair")}


def test_float_nan_and_infinities_have_one_canonical_text(stack: StackConnections) -> None:
    """PostgreSQL (a source's and a serving copy's), DuckDB (the Iceberg history) and SQLite (±Infinity
    only: it holds no NaN) give NaN and the infinities the same canonical text."""
    import sqlite3

    import duckdb

    from cdc.core.schemas import ArrowKind
    from reconciler.canonical import Engine, column_text
    from reconciler.model import CompareColumn

    column = CompareColumn("x", ArrowKind.FLOAT64)
    values = ("NaN", "Infinity", "-Infinity", "1.5")
    assert stack.pgsource is not None
    with psycopg.connect(stack.pgsource.admin_conninfo("postgres")) as pg:
        sql = f"SELECT {column_text(Engine.POSTGRESQL, column, 'x')} FROM unnest(%s::float8[]) x"
        in_pg = [r[0] for r in pg.execute(sql, (list(values),)).fetchall()]
    duck = duckdb.connect()
    sql = f"SELECT {column_text(Engine.DUCKDB, column, 'x')} FROM unnest(?::DOUBLE[]) t(x)"
    in_duckdb = [r[0] for r in duck.execute(sql, [list(values)]).fetchall()]
    lite = sqlite3.connect(":memory:")
    rows = "SELECT 9e999 x UNION ALL SELECT -9e999 UNION ALL SELECT 1.5"
    sql = f"SELECT {column_text(Engine.SQLITE, column, 'x')} FROM ({rows})"
    in_sqlite = [r[0] for r in lite.execute(sql).fetchall()]
    assert in_pg == in_duckdb == ["ENaN", "EInfinity", "E-Infinity", "1500000"]
    assert in_sqlite == in_pg[1:]
