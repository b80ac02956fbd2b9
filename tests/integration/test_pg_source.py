"""PostgreSQL source, golden: SQL in, SourceRecords out, against the dev stack's pgsource cluster."""

from __future__ import annotations

import datetime as dt
import decimal
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from cdc.config.models import PostgresSourceConfig
from cdc.core.errors import SourceSettingsError, StreamGap
from cdc.core.events import ChangeEvent, SourceProgress, SourceRecord, TransactionEnd
from cdc.core.positions import Position, RestartPoint
from cdc.core.schemas import ArrowKind
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


@pytest.fixture(scope="module", autouse=True)
def _daemons_warm() -> None:
    """The daemons' fork server imports Headwater while the first tests (no daemon) run."""
    from tests.support.pgsrc_daemon import warm_up

    warm_up()


@pytest.fixture
def pgdb(stack: StackConnections) -> Iterator[PgDb]:
    from tests.support.pg_databases import pg_source_database

    assert stack.pgsource is not None, "the dev stack has no pgsource cluster: run `cdc dev up`"
    with pg_source_database(stack.pgsource, "pgsrc") as name:
        db = PgDb(stack.pgsource, name)
        db.run("CREATE PUBLICATION pgsrc_pub FOR ALL TABLES")
        yield db


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
    source = PostgresSource(pgdb.config(heartbeat_seconds=0.2), "idle", blocking=True, acks=acks)
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


COLUMNS = """
    id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint,
    n numeric(38, 6), n_big numeric(60, 30), n_any numeric,
    r real, d double precision, t text, vc varchar(20), ch char(3), b bytea, bo boolean,
    da date, ti time(6), ttz timetz, ts timestamp(6), tstz timestamptz, iv interval,
    u uuid, j json, jb jsonb, ai int[], at text[], e mood, ip inet, cid cidr
"""
ROWS = [
    "(1, -32768, -2147483648, -9223372036854775808, -12345678901234567890123456789012.123456,"
    " 123456789012345678901234567890.123456789012345678901234567890, 'NaN',"
    " 'NaN', '-Infinity', 'héllo ☃', 'varchar', 'ab', '\\x00ff10', true,"
    " '0001-01-01', '23:59:59.999999', '12:34:56.789+05:30', '1999-12-31 23:59:59.999999',"
    " '2024-02-29 13:45:01.25+01', '1 year 2 months 3 days 04:05:06.5',"
    " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2.50]}', '{\"b\": null, \"a\": 1}',"
    " '{1,NULL,3}', ARRAY['x y', 'q\"', NULL], 'happy', '192.168.0.1/24', '10.0.0.0/8')",
    "(2, 32767, 2147483647, 9223372036854775807, 0.000001, 0, '12345678901234567890.000000000000000000001',"
    " 3.4028235e38, 2.2250738585072014e-308, '', '', '', '\\x', false,"
    " '9999-12-31', '00:00:00', '00:00:00+00', '0001-01-01 00:00:00', '1970-01-01 00:00:00+00',"
    " '-1 days', '00000000-0000-0000-0000-000000000000', '[]', '{}', '{}', '{}', 'sad', '::1', '::/0')",
    "(3" + ", NULL" * 27 + ")",
]


def _select(pgdb: PgDb) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Each row twice: psycopg's Python values, and each column's text (SELECT col::text)."""
    with pgdb.admin() as c:
        c.execute("SET TimeZone = 'UTC'")
        c.execute("SET extra_float_digits = 3")
        cols = [
            r[0]
            for r in c.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'typed'::regclass AND attnum > 0"
                " ORDER BY attnum"
            ).fetchall()
        ]
        values = c.execute("SELECT * FROM typed ORDER BY id").fetchall()
        c.execute("SET IntervalStyle = 'iso_8601'")  # psycopg parses only the default style
        texts = c.execute(
            f"SELECT {', '.join(f'{col}::text' for col in cols)} FROM typed ORDER BY id"
        ).fetchall()
    return values, texts


# The envelopes of the typed rows, SQL in, JSON out. "r"/"d" of row 1: real NaN and double
# -Infinity are the strings "NaN" and "-Infinity" (JSON has no such numbers: cdc/stream/json_values.py;
# they were null, indistinguishable from a NULL, before the nanfloat fix).
GOLDEN_AFTER = [
    {
        "id": 1,
        "i2": -32768,
        "i4": -2147483648,
        "i8": -9223372036854775808,
        "n": "-12345678901234567890123456789012.123456",
        "n_big": "123456789012345678901234567890.123456789012345678901234567890",
        "n_any": "NaN",
        "r": "NaN",
        "d": "-Infinity",
        "t": "héllo ☃",
        "vc": "varchar",
        "ch": "ab ",
        "b": "AP8Q",
        "bo": True,
        "da": "0001-01-01",
        "ti": "23:59:59.999999",
        "ttz": "12:34:56.789+05:30",
        "ts": "1999-12-31T23:59:59.999999",
        "tstz": "2024-02-29T12:45:01.250000Z",
        "iv": "P1Y2M3DT4H5M6.5S",
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "j": '{"a": [1, 2.50]}',
        "jb": '{"a": 1, "b": null}',
        "ai": "{1,NULL,3}",
        "at": '{"x y","q\\"",NULL}',
        "e": "happy",
        "ip": "192.168.0.1/24",
        "cid": "10.0.0.0/8",
    },
    {
        "id": 2,
        "i2": 32767,
        "i4": 2147483647,
        "i8": 9223372036854775807,
        "n": "0.000001",
        "n_big": "0.000000000000000000000000000000",
        "n_any": "12345678901234567890.000000000000000000001",
        "r": 3.4028235e38,
        "d": 2.2250738585072014e-308,
        "t": "",
        "vc": "",
        "ch": "   ",
        "b": "",
        "bo": False,
        "da": "9999-12-31",
        "ti": "00:00:00.000000",
        "ttz": "00:00:00+00",
        "ts": "0001-01-01T00:00:00.000000",
        "tstz": "1970-01-01T00:00:00Z",
        "iv": "P-1D",
        "u": "00000000-0000-0000-0000-000000000000",
        "j": "[]",
        "jb": "{}",
        "ai": "{}",
        "at": "{}",
        "e": "sad",
        "ip": "::1",
        "cid": "::/0",
    },
]


def golden_envelopes(events: list[ChangeEvent]) -> None:
    import orjson

    from cdc.stream.envelope import EnvelopeEncoder

    encoder = EnvelopeEncoder("pgsrc")
    afters = [orjson.loads(encoder.encode(e)[1])["after"] for e in events]
    assert afters[:2] == GOLDEN_AFTER
    assert set(afters[2].values()) == {3, None}


def test_every_type_equals_select(pgdb: PgDb) -> None:
    """Differential: what the source captures equals what a SELECT returns, type by type."""
    pgdb.run("CREATE TYPE mood AS ENUM ('sad', 'happy')", f"CREATE TABLE typed ({COLUMNS})")
    source = PostgresSource(pgdb.config(), "types", blocking=False, acks=Acks())
    start = source.current_restart_point()
    pgdb.run(*(f"INSERT INTO typed VALUES {row}" for row in ROWS))
    events = [r for r in source.records(start) if isinstance(r, ChangeEvent)]
    source.close()
    assert len(events) == len(ROWS)
    schema = events[0].schema
    kinds = {c.name: c.arrow_type for c in schema.columns}
    assert kinds["n"].kind is ArrowKind.DECIMAL and (kinds["n"].precision, kinds["n"].scale) == (38, 6)
    assert kinds["n_big"].kind is ArrowKind.DECIMAL and kinds["n_big"].precision == 60
    assert {k for k, t in kinds.items() if t.kind is ArrowKind.STRING} == {
        "n_any",
        "t",
        "vc",
        "ch",
        "ttz",
        "iv",
        "u",
        "j",
        "jb",
        "ai",
        "at",
        "e",
        "ip",
        "cid",
    }
    assert [c.source_type for c in schema.columns][:3] == ["integer", "smallint", "integer"]
    golden_envelopes(events)
    values, texts = _select(pgdb)
    for event, value_row, text_row in zip(events, values, texts, strict=True):
        assert event.after is not None
        for column, got, want, text in zip(schema.columns, event.after, value_row, text_row, strict=True):
            kind = column.arrow_type.kind
            if want is None:
                assert got is None, column.name
            elif kind is ArrowKind.STRING:
                # PostgreSQL's own text, exactly (char(n) keeps its padding, which ::text drops)
                # inet: the type's output ('::1'), which ::text writes with its mask ('::1/128')
                expected = (
                    want if isinstance(want, str) else str(want) if column.name in ("ip", "cid") else text
                )
                assert got == expected, column.name
            elif kind in (ArrowKind.FLOAT32, ArrowKind.FLOAT64) and want != want:
                assert got != got, column.name  # NaN
            elif kind is ArrowKind.FLOAT32:
                assert got == float(text), column.name  # real: the shortest text that round-trips
            elif kind is ArrowKind.DURATION:
                since_midnight = dt.timedelta(
                    hours=want.hour, minutes=want.minute, seconds=want.second, microseconds=want.microsecond
                )
                assert got == since_midnight, column.name
            else:
                assert got == want, (column.name, got, want)


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def _status_and_catalog(config_path: Any, pgdb: PgDb, table: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """`cdc status --json` and `cdc catalog --json` of a PostgreSQL pipeline; both exit 0."""
    import json

    from click.testing import CliRunner

    from cdc.cli import main

    pgdb.run(f"ANALYZE {table}")  # the catalog shows the server's estimate (pg_class.reltuples)
    status = CliRunner().invoke(main, ["status", "-c", str(config_path), "--json"])
    assert status.exit_code == 0, status.output
    catalog = CliRunner().invoke(main, ["catalog", "-c", str(config_path), "--json"])
    assert catalog.exit_code == 0, catalog.output
    st = json.loads(status.output)
    with pgdb.admin() as c:
        now = c.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        flush = c.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (pgdb.name,)
        ).fetchone()
    assert now is not None and flush is not None
    source = st["source"]
    assert source["address"] == f"{pgdb.conn.host}:{pgdb.conn.port}/{pgdb.name}"
    assert source["slot"]["name"] == pgdb.name and source["slot"]["exists"] and not source["slot"]["lost"]
    assert source["slot"]["confirmed_flush_lsn"] == flush[0]
    # WAL distances, read before our own reads of the server: within what it holds now
    assert _lsn(source["current_lsn"]) <= _lsn(str(now[0]))
    assert 0 <= source["slot"]["bytes_behind"] <= _lsn(str(now[0])) - _lsn(str(flush[0]))
    assert st["tables"] == [f"public.{table}"] and st["exit_code"] == 0
    entry = json.loads(catalog.output)["pipelines"][0]["tables"][0]
    assert entry["table"] == f"public.{table}"
    assert (
        entry["lineage"]["source"]
        == f"postgresql://{pgdb.conn.host}:{pgdb.conn.port}/{pgdb.name}/public.{table}"
    )
    return st, entry


def _cdc_run(config_path: Any, timeout: float = 90.0) -> None:
    """`cdc run --until-caught-up` as its own process (forked from a preloaded server: no 4 s of
    imports per run), its log beside the config."""
    from pathlib import Path

    from tests.support.pgsrc_daemon import ForkedDaemon

    ForkedDaemon(Path(config_path), Path(config_path).with_suffix(".log")).catch_up(timeout)


def test_cdc_run_into_kafka_exactly_once_and_slot_acknowledged_behind_kafka(
    pgdb: PgDb, stack: StackConnections, tmp_path: Any
) -> None:
    """`cdc run` (Kafka mode) before and after a workload: every change once, in order; the slot's
    confirmed_flush_lsn is at or behind the last LSN Kafka holds; the envelope carries the LSN."""
    from tests.support.kafka_replay import change_events, consume_all, pipeline_topics, replay

    pipeline = f"pgsrc-{secrets.token_hex(4)}"
    config = tmp_path / "pg.yaml"
    config.write_text(
        f"name: {pipeline}\n"
        "source:\n"
        "  type: postgresql\n"
        f"  host: {pgdb.conn.host}\n  port: {pgdb.conn.port}\n  user: {pgdb.conn.user}\n"
        f"  password: {pgdb.conn.password}\n  database: {pgdb.name}\n  slot: {pgdb.name}\n"
        "  publication: pgsrc_pub\n"
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}'}}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    pgdb.run("CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL)")
    _cdc_run(config)  # first start: creates the slot, commits its position
    pgdb.run(
        "INSERT INTO acct SELECT g, 0 FROM generate_series(1, 50) g",
        "UPDATE acct SET balance = balance + id WHERE id % 2 = 0",
        "DELETE FROM acct WHERE id % 5 = 0",
        "UPDATE acct SET balance = -1 WHERE id = 1",
        "INSERT INTO acct VALUES (51, 51)",
    )
    _cdc_run(config)  # resumes from the first run's checkpoint (more restarts: the fault test)
    records = consume_all(
        stack.kafka.bootstrap_servers, pipeline_topics(stack.kafka.bootstrap_servers, pipeline)
    )
    events = change_events(records)
    positions = [e.position for e in events]
    assert len(positions) == len(set(positions)) == 50 + 25 + 10 + 2  # each change exactly once
    assert all(p.startswith("pgl1:") for p in positions)
    with pgdb.admin() as c:
        rows = c.execute("SELECT id, balance FROM acct ORDER BY id").fetchall()
        slot = c.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (pgdb.name,)
        ).fetchone()
    state = replay(records)["public.acct"]
    assert sorted((v["id"], v["balance"]) for v in state.values()) == [(r[0], r[1]) for r in rows]
    assert slot is not None
    high, low = str(slot[0]).split("/")
    confirmed = (int(high, 16) << 32) | int(low, 16)
    last = Position.parse(positions[-1]).lsn
    assert last is not None and confirmed <= last
    # `cdc status` and `cdc catalog`: the checkpoint, its WAL distance to the server's end, the slot
    st, entry = _status_and_catalog(config, pgdb, "acct")
    checkpoint = RestartPoint.parse(st["checkpoint"]["restart_point"]).transaction.lsn
    assert checkpoint is not None and checkpoint >= last
    assert st["lag_bytes"] == _lsn(st["source"]["current_lsn"]) - checkpoint
    assert entry["source_rows_estimate"] == len(rows)
    assert [c["kind"] for c in entry["lineage"]["copies"]] == ["topic"]


def test_unchanged_toast_value_is_never_invented(pgdb: PgDb) -> None:
    """An update that leaves a TOASTed value unchanged: with FULL the value comes from the old row;
    with DEFAULT PostgreSQL does not log it, and the capture stops naming the column."""
    big = secrets.token_hex(8000)  # 16 kB of incompressible text: stored out of line (TOAST)
    pgdb.run(
        "CREATE TABLE doc_full (id int PRIMARY KEY, n int, body text)",
        "ALTER TABLE doc_full REPLICA IDENTITY FULL",
        "CREATE TABLE doc_default (id int PRIMARY KEY, n int, body text)",
    )
    full = PostgresSource(pgdb.config(tables=["public.doc_full"]), "toast", blocking=False, acks=Acks())
    start = full.current_restart_point()
    pgdb.run(
        f"INSERT INTO doc_full VALUES (1, 0, '{big}')",
        "UPDATE doc_full SET n = 1",
        f"INSERT INTO doc_default VALUES (1, 0, '{big}')",
        "UPDATE doc_default SET n = 1",
    )
    events = [r for r in full.records(start) if isinstance(r, ChangeEvent)]
    full.close()
    assert [(e.op.value, e.after) for e in events] == [("c", (1, 0, big)), ("u", (1, 1, big))]
    default = PostgresSource(
        pgdb.config(tables=["public.doc_default"]), "toast_default", blocking=False, acks=Acks()
    )
    with pytest.raises(SourceSettingsError, match=r"public\.doc_default\.body: .* REPLICA IDENTITY FULL"):
        list(default.records(start))
    default.close()


def test_embedded_run_into_a_sql_sink_and_slot_acknowledged_behind_it(pgdb: PgDb, tmp_path: Any) -> None:
    """`cdc run` without a stream: the changes land in the sink exactly once after a restart, and the
    slot is acknowledged no further than the position the sink stores with its data."""
    import sqlite3

    config = tmp_path / "pg.yaml"
    config.write_text(
        "name: pgsrc-embedded\n"
        "source:\n"
        "  type: postgresql\n"
        f"  host: {pgdb.conn.host}\n  port: {pgdb.conn.port}\n  user: {pgdb.conn.user}\n"
        f"  password: {pgdb.conn.password}\n  database: {pgdb.name}\n  slot: {pgdb.name}\n"
        "  publication: pgsrc_pub\n"
        f"sinks: [{{type: sql, url: 'sqlite:///{tmp_path / 'serving.db'}'}}]\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    pgdb.run("CREATE TABLE item (id int PRIMARY KEY, qty int NOT NULL, label text)")
    _cdc_run(config)
    pgdb.run(
        "INSERT INTO item SELECT g, g, 'item ' || g FROM generate_series(1, 40) g",
        "UPDATE item SET qty = qty * 10 WHERE id % 3 = 0",
        "DELETE FROM item WHERE id % 7 = 0",
        "UPDATE item SET label = NULL WHERE id = 1",
        "TRUNCATE item",
        "INSERT INTO item VALUES (99, 1, 'x')",
    )
    _cdc_run(config)
    with pgdb.admin() as c:
        rows = c.execute("SELECT id, qty, label FROM item ORDER BY id").fetchall()
        slot = c.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (pgdb.name,)
        ).fetchone()
    with sqlite3.connect(tmp_path / "serving.db") as lite:
        assert (
            lite.execute("SELECT id, qty, label FROM item ORDER BY id").fetchall() == rows == [(99, 1, "x")]
        )
        tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        applied = [
            r for t in tables if "position" in t for r in lite.execute(f"SELECT * FROM {t}").fetchall()
        ]
    assert slot is not None and applied, tables
    high, low = str(slot[0]).split("/")
    confirmed = (int(high, 16) << 32) | int(low, 16)
    stored = [
        Position.parse(v).lsn for row in applied for v in row if isinstance(v, str) and v.startswith("pgl1:")
    ]
    assert stored and all(lsn is not None for lsn in stored)
    assert confirmed <= max(lsn for lsn in stored if lsn is not None)
    # `cdc status` and `cdc catalog`: the sink's resume point and its WAL distance to the server's end
    st, entry = _status_and_catalog(config, pgdb, "item")
    assert st["mode"] == "embedded"
    sink = st["sinks"][0]
    resume = RestartPoint.parse(sink["resume_point"]).transaction.lsn
    assert resume is not None and sink["lag_bytes"] == _lsn(st["source"]["current_lsn"]) - resume
    assert entry["source_rows_estimate"] == 1
    assert [(c["kind"], c["rows"]) for c in entry["lineage"]["copies"]] == [("serving", 1)]
    # the slot lost once the sink holds changes: status is unhealthy and names it
    import json

    from click.testing import CliRunner

    from cdc.cli import main

    pgdb.run(f"SELECT pg_drop_replication_slot('{pgdb.name}')")
    lost = CliRunner().invoke(main, ["status", "-c", str(config), "--json"])
    assert lost.exit_code == 1, lost.output
    assert any(
        f"replication slot '{pgdb.name}' does not exist" in p for p in json.loads(lost.output)["problems"]
    )


def test_bootstrap_under_writes_ends_exact_and_again_when_the_slot_is_lost(
    pgdb: PgDb, stack: StackConnections, tmp_path: Any
) -> None:
    """bootstrap.mode when_needed (its first start is `initial`'s): the first start reads every table
    in the slot's exported snapshot (op r), then streams; with writes going on throughout and the
    daemon killed once mid-way, nothing is missed or doubled. Then the slot is lost (dropped, after
    deletes and updates it held): the next start does not stop but truncates each table's copies and
    reads them again in a new slot's snapshot, writes going on. The replayed topic equals the table."""
    import threading

    from tests.support.kafka_replay import change_events, consume_all, pipeline_topics, replay
    from tests.support.pgsrc_daemon import ForkedDaemon

    pipeline = f"pgsrc-boot-{secrets.token_hex(4)}"
    config = tmp_path / "pg.yaml"
    config.write_text(
        f"name: {pipeline}\n"
        "source:\n"
        "  type: postgresql\n"
        f"  host: {pgdb.conn.host}\n  port: {pgdb.conn.port}\n  user: {pgdb.conn.user}\n"
        f"  password: {pgdb.conn.password}\n  database: {pgdb.name}\n  slot: {pgdb.name}\n"
        "  publication: pgsrc_pub\n"
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}'}}\n"
        "bootstrap: {mode: when_needed}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    pgdb.run(
        "CREATE TABLE stock (id int PRIMARY KEY, qty int NOT NULL, note text)",
        "INSERT INTO stock SELECT g, 0, 'seed' FROM generate_series(1, 3000) g",
        f"GRANT SELECT ON stock TO {pgdb.conn.user}",  # a bootstrap reads the tables
    )

    def writes(stop: threading.Event) -> None:
        rng = secrets.SystemRandom()
        with pgdb.admin() as c:
            while not stop.is_set():
                key = rng.randrange(1, 3100)
                if rng.random() < 0.1:
                    c.execute("DELETE FROM stock WHERE id = %s", (key,))
                else:
                    c.execute(
                        "INSERT INTO stock VALUES (%s, 1, 'new')"
                        " ON CONFLICT (id) DO UPDATE SET qty = stock.qty + 1",
                        (key,),
                    )
                time.sleep(0.002)

    def writing() -> tuple[threading.Event, threading.Thread]:
        stop = threading.Event()
        writer = threading.Thread(target=writes, args=(stop,), daemon=True)
        writer.start()
        return stop, writer

    daemon = ForkedDaemon(config, tmp_path / "cdc.log")
    stop, writer = writing()
    try:
        daemon.start()
        deadline = time.monotonic() + 60
        while "reading the tables" not in daemon.log_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        daemon.kill()  # in the snapshot: nothing of it is committed, the next start begins again
        daemon.catch_up(120)
        time.sleep(0.5)
    finally:
        stop.set()
        writer.join(10)
    daemon.catch_up(120)
    assert daemon.log_text().count("reading the tables in its snapshot") == 2
    # the slot is lost with changes in it, deletes among them (only a truncate removes those rows)
    with pgdb.admin() as c:
        c.execute("SELECT pg_drop_replication_slot(%s)", (pgdb.name,))
        c.execute("DELETE FROM stock WHERE id > 2800")
        c.execute("UPDATE stock SET qty = qty + 100 WHERE id <= 50")
    stop, writer = writing()
    try:
        daemon.catch_up(120)  # bootstraps afresh, writes going on
    finally:
        stop.set()
        writer.join(10)
    daemon.catch_up(120)
    log = daemon.log_text()
    assert "bootstrap.mode when_needed: bootstrapping every captured table afresh" in log
    assert log.count("reading the tables in its snapshot") == 3
    records = consume_all(
        stack.kafka.bootstrap_servers, pipeline_topics(stack.kafka.bootstrap_servers, pipeline)
    )
    events = change_events(records)
    changes = [e.position for e in events if e.value["op"] != "t"]  # a truncate goes to each partition
    assert len(changes) == len(set(changes))
    assert len({e.position for e in events if e.value["op"] == "t"}) == 1
    reads = [e for e in events if e.value["op"] == "r"]
    assert len(reads) >= 2 * 2_600  # each snapshot, once (writes delete a few rows before them)
    with pgdb.admin() as c:
        rows = c.execute("SELECT id, qty, note FROM stock ORDER BY id").fetchall()
    state = replay(records)["public.stock"]
    assert sorted((v["id"], v["qty"], v["note"]) for v in state.values()) == rows


def test_embedded_bootstrap_killed_inside_the_snapshot_ends_exact(pgdb: PgDb, tmp_path: Any) -> None:
    """Embedded mode, bootstrap.mode initial: the sink applies the snapshot in batches; the daemon is
    killed once the sink holds part of it, with writes going on. The next start reads every table
    again in a new slot's snapshot, truncating first; the sink ends equal to the table."""
    import sqlite3
    import threading

    from tests.support.pgsrc_daemon import ForkedDaemon

    config = tmp_path / "pg.yaml"
    config.write_text(
        "name: pgsrc-embedded-boot\n"
        "source:\n"
        "  type: postgresql\n"
        f"  host: {pgdb.conn.host}\n  port: {pgdb.conn.port}\n  user: {pgdb.conn.user}\n"
        f"  password: {pgdb.conn.password}\n  database: {pgdb.name}\n  slot: {pgdb.name}\n"
        "  publication: pgsrc_pub\n  heartbeat_seconds: 0.5\n"
        f"sinks: [{{type: sql, url: 'sqlite:///{tmp_path / 'serving.db'}'}}]\n"
        "batch: {max_events: 100, max_ms: 50}\n"
        "bootstrap: {mode: initial}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    pgdb.run(
        "CREATE TABLE item (id int PRIMARY KEY, qty int NOT NULL)",
        "INSERT INTO item SELECT g, 0 FROM generate_series(1, 3000) g",
        f"GRANT SELECT ON item TO {pgdb.conn.user}",
    )
    stop = threading.Event()

    def writes() -> None:
        rng = secrets.SystemRandom()
        with pgdb.admin() as c:
            while not stop.is_set():
                key = rng.randrange(1, 3100)
                if rng.random() < 0.2:
                    c.execute("DELETE FROM item WHERE id = %s", (key,))
                else:
                    c.execute(
                        "INSERT INTO item VALUES (%s, 1) ON CONFLICT (id) DO UPDATE SET qty = item.qty + 1",
                        (key,),
                    )
                time.sleep(0.002)

    def sink_rows() -> int:
        try:
            with sqlite3.connect(tmp_path / "serving.db", timeout=0.1) as lite:
                return int(lite.execute("SELECT count(*) FROM item").fetchone()[0])
        except sqlite3.OperationalError:  # not created yet, or being written
            return 0

    writer = threading.Thread(target=writes, daemon=True)
    writer.start()
    daemon = ForkedDaemon(config, tmp_path / "cdc.log")
    try:
        daemon.start()
        deadline = time.monotonic() + 60
        while (held := sink_rows()) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        daemon.kill()
        assert 0 < held < 3000, held  # killed inside the snapshot, part of it applied
        daemon.catch_up(120)
        time.sleep(0.3)
    finally:
        stop.set()
        writer.join(10)
    daemon.catch_up(120)
    log = daemon.log_text()
    assert "the sinks resume inside the bootstrap's snapshot" in log, log[-3000:]
    with pgdb.admin() as c:
        rows = c.execute("SELECT id, qty FROM item ORDER BY id").fetchall()
    with sqlite3.connect(tmp_path / "serving.db") as lite:
        assert lite.execute("SELECT id, qty FROM item ORDER BY id").fetchall() == rows
