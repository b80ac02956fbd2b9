"""PostgreSQL source, golden: SQL in, SourceRecords out, against the dev stack's pgsource cluster."""

from __future__ import annotations

import decimal
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from cdc.config.models import PostgresSourceConfig
from cdc.core.errors import SourceSettingsError, StreamGap
from cdc.core.events import ChangeEvent, SourceProgress, SourceRecord, TransactionEnd
from cdc.core.positions import RestartPoint
from cdc.daemon.postgresql_source import PostgresSource
from cdc.devstack.connections import PgSourceConnection, StackConnections
from cdc.sources.postgresql.reader import Acks


@dataclass
class PgDb:
    conn: PgSourceConnection
    name: str

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.conn.admin_conninfo(self.name), autocommit=True)

    def run(self, *statements: str) -> None:
        with self.admin() as c:
            for statement in statements:
                c.execute(statement)

    def config(self, **extra: object) -> PostgresSourceConfig:
        return PostgresSourceConfig.model_validate(
            {
                "host": self.conn.host,
                "port": self.conn.port,
                "user": self.conn.user,
                "password": self.conn.password,
                "database": self.name,
                "slot": self.name,
                "publication": "pgsrc_pub",
                "heartbeat_seconds": 0.5,
                **extra,
            }
        )


@pytest.fixture
def pgdb(stack: StackConnections) -> Iterator[PgDb]:
    assert stack.pgsource is not None, "the dev stack has no pgsource cluster: run `cdc dev up`"
    name = f"pgsrc_{secrets.token_hex(4)}"
    with psycopg.connect(stack.pgsource.admin_conninfo("postgres"), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    db = PgDb(stack.pgsource, name)
    db.run("CREATE PUBLICATION pgsrc_pub FOR ALL TABLES")
    try:
        yield db
    finally:
        with psycopg.connect(stack.pgsource.admin_conninfo("postgres"), autocommit=True) as c:
            c.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s"
                " AND active_pid IS NOT NULL",
                (name,),
            )
            c.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (name,),
            )
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")


def read_all(source: PostgresSource, start: RestartPoint) -> list[SourceRecord]:
    return list(source.records(start))


def changes(records: list[SourceRecord]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for r in records:
        if isinstance(r, ChangeEvent):
            out.append((r.op.value, str(r.table), r.key, r.before, r.after, r.position.row))
        elif isinstance(r, TransactionEnd):
            out.append(("end", r.row_count))
    return out


def test_golden_dml_transactions_rollback_truncate_ddl(pgdb: PgDb) -> None:
    pgdb.run(
        "CREATE TABLE a (id int PRIMARY KEY, v text)",
        "CREATE TABLE b (id bigint PRIMARY KEY, n numeric(10,2) NOT NULL)",
        "CREATE TABLE full_id (id int PRIMARY KEY, v text)",
        "ALTER TABLE full_id REPLICA IDENTITY FULL",
        "CREATE TABLE other (id int PRIMARY KEY)",
    )
    source = PostgresSource(
        pgdb.config(exclude_tables=["public.other"]), "golden", blocking=False, acks=Acks()
    )
    start = source.current_restart_point()
    with pgdb.admin() as c:
        c.execute("INSERT INTO a VALUES (1, 'one'), (2, 'two')")
        with c.transaction():
            c.execute("UPDATE a SET v = 'uno' WHERE id = 1")
            c.execute("INSERT INTO b VALUES (10, 1.50)")
            c.execute("DELETE FROM a WHERE id = 2")
        try:
            with c.transaction():
                c.execute("INSERT INTO a VALUES (3, 'rolled back')")
                raise RuntimeError("rollback")
        except RuntimeError:
            pass
        c.execute("INSERT INTO other VALUES (1)")
        c.execute("UPDATE a SET id = 5 WHERE id = 1")  # key change: delete + create
        c.execute("INSERT INTO full_id VALUES (1, 'x')")
        c.execute("UPDATE full_id SET v = 'y'")
        c.execute("DELETE FROM full_id")
        c.execute("ALTER TABLE a ADD COLUMN extra int")
        c.execute("INSERT INTO a VALUES (6, 'six', 66)")
        c.execute("TRUNCATE b")
    records = read_all(source, start)
    source.close()
    d = decimal.Decimal
    assert changes(records) == [
        ("c", "public.a", (1,), None, (1, "one"), 0),
        ("c", "public.a", (2,), None, (2, "two"), 1),
        ("end", 2),
        ("u", "public.a", (1,), None, (1, "uno"), 0),  # DEFAULT identity: no before image
        ("c", "public.b", (10,), None, (10, d("1.50")), 1),
        ("d", "public.a", (2,), (2, None), None, 2),  # DEFAULT identity: the key only
        ("end", 3),
        ("d", "public.a", (1,), (1, None), None, 0),
        ("c", "public.a", (5,), None, (5, "uno"), 1),
        ("end", 2),
        ("c", "public.full_id", (1,), None, (1, "x"), 0),
        ("end", 1),
        ("u", "public.full_id", (1,), (1, "x"), (1, "y"), 0),
        ("end", 1),
        ("d", "public.full_id", (1,), (1, "y"), None, 0),
        ("end", 1),
        ("c", "public.a", (6,), None, (6, "six", 66), 0),
        ("end", 1),
        ("t", "public.b", None, None, None, 0),
        ("end", 1),
    ]
    events = [r for r in records if isinstance(r, ChangeEvent)]
    # positions: totally ordered, text order = order, PostgreSQL's own tag
    assert [e.position for e in events] == sorted(e.position for e in events)
    texts = [e.position.to_string() for e in events]
    assert texts == sorted(texts) and all(t.startswith("pgl1:") for t in texts)
    # the new column is a new schema version of the same table
    versions = {e.schema.version for e in events if str(e.table) == "public.a"}
    assert len(versions) == 2
    assert events[-2].schema.column_names == ("id", "v", "extra")


def test_restart_resumes_mid_transaction_without_duplicates(pgdb: PgDb) -> None:
    pgdb.run("CREATE TABLE t (id int PRIMARY KEY)")
    acks = Acks()
    source = PostgresSource(pgdb.config(), "restart", blocking=False, acks=acks)
    start = source.current_restart_point()
    pgdb.run("INSERT INTO t SELECT generate_series(1, 3)", "INSERT INTO t SELECT generate_series(4, 6)")
    first = [r for r in read_all(source, start) if isinstance(r, ChangeEvent)]
    assert [e.after for e in first] == [(i,) for i in range(1, 7)]
    # resume after row 1 of the second transaction: rows 5 and 6 only, at the same positions
    restart = RestartPoint.after(first[3].position)
    again = [r for r in read_all(source, restart) if isinstance(r, ChangeEvent)]
    assert [(e.after, e.position) for e in again] == [(e.after, e.position) for e in first[4:]]
    source.close()


def test_idle_heartbeats_move_the_slot(pgdb: PgDb) -> None:
    pgdb.run("CREATE TABLE quiet (id int PRIMARY KEY)")
    acks = Acks()
    source = PostgresSource(pgdb.config(), "idle", blocking=True, acks=acks)
    start = source.current_restart_point()
    progress: list[SourceProgress] = []
    for record in source.records(start):
        if isinstance(record, SourceProgress):
            progress.append(record)
            acks.committed(record.restart.transaction.lsn)  # as a Kafka commit would
            if len(progress) == 3:
                break
    source.close()
    lsns = [p.restart.transaction.lsn or 0 for p in progress]
    assert lsns == sorted(lsns) and lsns[-1] > (start.transaction.lsn or 0)


def test_missing_publication_and_dropped_slot_are_named(pgdb: PgDb) -> None:
    with pytest.raises(SourceSettingsError, match="publication 'nopub' does not exist"):
        PostgresSource(
            pgdb.config(publication="nopub", create_publication=False), "x", blocking=False, acks=Acks()
        ).current_restart_point()
    source = PostgresSource(pgdb.config(), "gone", blocking=False, acks=Acks())
    start = source.current_restart_point()
    pgdb.run(f"SELECT pg_drop_replication_slot('{pgdb.name}')")
    with pytest.raises(StreamGap, match=f"replication slot '{pgdb.name}' does not exist"):
        source.records(start)
