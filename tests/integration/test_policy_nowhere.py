"""Column policies (issue 12, governance): known secret values written to MariaDB appear nowhere.

Two pipelines over the same secret values, both bootstrapping rows that already hold secrets
(``bootstrap: {mode: initial}``) and then streaming inserts, updates and deletes:
- Kafka: `cdc run` into Kafka, `cdc sink` into PostgreSQL (its own database) and Iceberg;
- embedded: `cdc run` into SQLite and Iceberg.
Then every place a value could reach is searched for each raw secret (and the HMAC key): every
record of every topic of the pipeline (read_uncommitted: aborted writes too, checkpoints and schema
topics included), every table of the PostgreSQL database (dead letters included), every file under
each pipeline's home (SQLite, Iceberg data and metadata, state_dir with its snapshot-chunk log),
every value of every Parquet file, the processes' logs (DEBUG) and `cdc catalog --json`. The hashed
column still joins: the same input gives the same hash in both tables and every copy.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from cdc.devstack.connections import StackConnections

KEY = f"hmac-key-{uuid.uuid4().hex}"
CDC = [sys.executable, "-m", "cdc.cli", "--log-level", "DEBUG"]


def _sql(stack: StackConnections, *statements: str) -> None:
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _cdc(args: list[str], env: dict[str, str], logs: list[bytes], ok: tuple[int, ...] = (0,)) -> bytes:
    done = subprocess.run([*CDC, *args], env=env, capture_output=True, timeout=300)
    logs.append(done.stdout + done.stderr)
    assert done.returncode in ok, (done.stdout + done.stderr).decode(errors="replace")[-4000:]
    return done.stdout


class Secrets:
    """Distinct per run, so that a hit can only come from this test's rows."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.emails = [f"person{i}-{tag}@secret.example" for i in range(4)]
        self.ssns = [f"SSN-{tag}-{i:04d}" for i in range(4)]
        self.names = [f"Name{tag}Person{i}" for i in range(4)]
        self.notes = [f"NOTE{i}x{tag}-longer-than-six" for i in range(4)]
        self.plans = [f"plan-{tag}-{i}" for i in range(4)]  # not covered by a policy: must appear

    def raw(self) -> list[str]:
        return [*self.emails, *self.ssns, *self.names, *self.notes, KEY]


def _hash(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _pipeline(stack: StackConnections, home: Path, db: str, kafka: bool, pg_db: str) -> Path:
    m = stack.mariadb
    home.mkdir()
    name = db.replace("_", "-")
    iceberg = (
        f"  - {{type: iceberg, name: history, namespace: gov, catalog: {{type: sql,"
        f" uri: 'sqlite:///{home / 'catalog.db'}', warehouse: 'file://{home / 'warehouse'}'}}}}\n"
    )
    if kafka:
        serving = f"  - {{type: sql, name: serving, url: '{stack.postgres.sqlalchemy_url(pg_db)}'}}\n"
        # a Kafka commit per source transaction: checkpoints are committed in mid-bootstrap too
        stream = f"stream: {{bootstrap_servers: '{stack.kafka.bootstrap_servers}', flush_max_events: 1}}\n"
    else:
        serving = f"  - {{type: sql, name: serving, url: 'sqlite:///{home / 'serving.db'}'}}\n"
        stream = ""
    config = home / "cdc.yaml"
    config.write_text(
        f"name: {name}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
        f" server_id: {random.randint(4900, 4999)}, tables: ['{db}.*']}}\n"
        + stream
        + "sinks:\n"
        + serving
        + iceberg
        + f"state_dir: {home / 'state'}\n"
        "bootstrap: {mode: initial, min_chunk_rows: 1, max_chunk_rows: 1}\n"  # a chunk per row
        "catalog: {owner: {team: governance}}\n"
        "policies:\n"
        "  hash_key_env: POLICY_HMAC_KEY\n"
        "  tables:\n"
        f"    '{db}.users': {{email: hash, ssn: exclude, full_name: redact, note: {{truncate: 6}}}}\n"
        f"    '{db}.*': {{email: hash}}\n"
    )
    return config


def _source(stack: StackConnections, db: str, s: Secrets) -> None:
    _sql(
        stack,
        f"CREATE DATABASE {db}",
        f"CREATE TABLE {db}.users (id INT PRIMARY KEY, email VARCHAR(100), ssn VARCHAR(40),"
        " full_name VARCHAR(60) NOT NULL, note TEXT, plan VARCHAR(40))",
        f"CREATE TABLE {db}.orders (id INT PRIMARY KEY, email VARCHAR(100), amount INT)",
        # a hashed primary key: the event's key is hashed alike
        f"CREATE TABLE {db}.accounts (email VARCHAR(100) PRIMARY KEY, plan VARCHAR(40))",
        # rows that already hold secrets when the pipeline starts: bootstrapped (op r)
        f"INSERT INTO {db}.users VALUES (1, '{s.emails[0]}', '{s.ssns[0]}', '{s.names[0]}',"
        f" '{s.notes[0]}', '{s.plans[0]}'), (2, '{s.emails[1]}', '{s.ssns[1]}', '{s.names[1]}',"
        f" '{s.notes[1]}', '{s.plans[1]}')",
        f"INSERT INTO {db}.orders VALUES (10, '{s.emails[0]}', 5), (11, '{s.emails[1]}', 7)",
        # bootstrapped rows keyed by a secret: the bootstrap's resume point (the last key copied)
        # must not hold it raw either
        f"INSERT INTO {db}.accounts VALUES ('{s.emails[1]}', 'z'), ('{s.emails[3]}', 'w')",
    )


def _stream_changes(stack: StackConnections, db: str, s: Secrets) -> None:
    _sql(
        stack,
        f"INSERT INTO {db}.users VALUES (3, '{s.emails[2]}', '{s.ssns[2]}', '{s.names[2]}',"
        f" '{s.notes[2]}', '{s.plans[2]}')",
        f"UPDATE {db}.users SET ssn = '{s.ssns[3]}', note = '{s.notes[3]}' WHERE id = 1",
        f"INSERT INTO {db}.users VALUES (4, '{s.emails[3]}', NULL, '{s.names[3]}', NULL, NULL)",
        f"DELETE FROM {db}.users WHERE id = 4",
        f"INSERT INTO {db}.orders VALUES (12, '{s.emails[2]}', 9)",
        f"INSERT INTO {db}.accounts VALUES ('{s.emails[0]}', '{s.plans[0]}'), ('{s.emails[2]}', 'x')",
        f"UPDATE {db}.accounts SET plan = 'y' WHERE email = '{s.emails[2]}'",
        f"DELETE FROM {db}.accounts WHERE email = '{s.emails[2]}'",
    )


def _kafka_bytes(stack: StackConnections, prefix: str) -> list[bytes]:
    conf: dict[str, str | int | float | bool] = {"bootstrap.servers": stack.kafka.bootstrap_servers}
    topics = [t for t in AdminClient(conf).list_topics(timeout=10).topics if t.startswith(prefix)]
    assert len(topics) >= 4, topics  # 3 tables, schemas, checkpoints...
    consumer = Consumer(
        {
            **conf,
            "group.id": f"policy-check-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_uncommitted",  # aborted transactions' records too
            "enable.auto.commit": False,
        }
    )
    found: list[bytes] = []
    try:
        for topic in topics:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            for p in parts:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(topic, p, low)])
                read = low
                while read < high:
                    msg = consumer.poll(3)
                    if msg is None:  # the rest are transaction markers, which are not delivered
                        break
                    if msg.error():
                        continue
                    found.append((msg.key() or b"") + b"\x00" + (msg.value() or b""))
                    read = (msg.offset() or 0) + 1
    finally:
        consumer.close()
    return found


def _pg_rows(stack: StackConnections, pg_db: str) -> list[tuple[str, list[tuple[object, ...]]]]:
    import sqlalchemy as sa

    engine = sa.create_engine(stack.postgres.sqlalchemy_url(pg_db))
    out = []
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN"
                " ('pg_catalog', 'information_schema')"
            )
        ).all()
        for schema, table in tables:
            rows = conn.execute(sa.text(f'SELECT * FROM "{schema}"."{table}"')).all()
            out.append((f"{schema}.{table}", [tuple(r) for r in rows]))
    engine.dispose()
    return out


def _assert_nowhere(secrets: list[str], where: str, blob: bytes) -> None:
    for secret in secrets:
        assert secret.encode() not in blob, f"raw value {secret!r} found in {where}"


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_policies_leave_no_raw_value_anywhere(stack: StackConnections, tmp_path: Path) -> None:
    s = Secrets()
    tag = uuid.uuid4().hex[:8]
    kdb, edb, pg_db = f"policy_k{tag}", f"policy_e{tag}", f"policy_{tag}"
    import sqlalchemy as sa

    admin = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {pg_db}"))
    env = {**os.environ, "PW": stack.mariadb.password, "POLICY_HMAC_KEY": KEY}
    logs: list[bytes] = []
    try:
        _source(stack, kdb, s)
        _source(stack, edb, s)
        kconfig = _pipeline(stack, tmp_path / "kafka", kdb, True, pg_db)
        econfig = _pipeline(stack, tmp_path / "embedded", edb, False, pg_db)
        for config in (kconfig, econfig):  # first start: bootstraps the rows already there
            _cdc(["run", "-c", str(config), "--until-caught-up"], env, logs)
        _stream_changes(stack, kdb, s)
        _stream_changes(stack, edb, s)
        for config in (kconfig, econfig):
            _cdc(["run", "-c", str(config), "--until-caught-up"], env, logs)
        _cdc(["sink", "-c", str(kconfig), "--until-caught-up"], env, logs)
        # 1: a catalog may flag things; what matters is that it holds no raw value
        catalog = _cdc(["catalog", "-c", str(kconfig), "-c", str(econfig), "--json"], env, logs, (0, 1))
        validate = _cdc(["validate", "-c", str(kconfig), "--json"], env, logs)
        assert b"POLICY_HMAC_KEY" in validate

        raw = s.raw()
        # the copies hold what the policies promise (else "nowhere" could mean "not copied at all")
        pg = dict(_pg_rows(stack, pg_db))
        users = sorted(pg["public.users"])
        assert users == [
            (1, _hash(s.emails[0]), "[redacted]", s.notes[3][:6], s.plans[0]),
            (2, _hash(s.emails[1]), "[redacted]", s.notes[1][:6], s.plans[1]),
            (3, _hash(s.emails[2]), "[redacted]", s.notes[2][:6], s.plans[2]),
        ]
        accounts = sorted([(_hash(s.emails[i]), p) for i, p in ((0, s.plans[0]), (1, "z"), (3, "w"))])
        assert sorted(pg["public.accounts"]) == accounts
        with sqlite3.connect(tmp_path / "embedded" / "serving.db") as lite:
            lite_users = sorted(lite.execute("SELECT id, email, full_name, note, plan FROM users"))
            joined = lite.execute(
                "SELECT o.id FROM orders o JOIN users u ON u.email = o.email ORDER BY o.id"
            ).fetchall()
            lite_accounts = lite.execute("SELECT email, plan FROM accounts").fetchall()
        assert lite_users == users  # the same input gives the same hash in every copy
        assert joined == [(10,), (11,), (12,)]  # hashed columns still join
        assert sorted(lite_accounts) == accounts

        _assert_nowhere(raw, "PostgreSQL", repr(sorted(pg.items())).encode())
        records = _kafka_bytes(stack, kdb.replace("_", "-") + ".")
        assert any(_hash(s.emails[2]).encode() in r for r in records)
        for record in records:
            _assert_nowhere(raw, "a Kafka record", record)
        for home in (tmp_path / "kafka", tmp_path / "embedded"):
            files = _files(home)
            assert any(f.suffix == ".parquet" for f in files)
            for path in files:
                _assert_nowhere(raw, str(path), path.read_bytes())
                if path.suffix == ".parquet":
                    _assert_nowhere(raw, f"{path} (values)", repr(pq.read_table(path).to_pylist()).encode())
        history = [
            row
            for home in (tmp_path / "kafka", tmp_path / "embedded")
            for path in (home / "warehouse").rglob("*.parquet")
            for row in pq.read_table(path).to_pylist()
        ]
        assert {r["_op"] for r in history} >= {"r", "c", "u", "d"}
        assert all("ssn" not in r for r in history)
        _assert_nowhere(raw, "cdc catalog --json", catalog)
        for log in logs:
            _assert_nowhere(raw, "a process log", log)
    finally:
        for db in (kdb, edb):
            _sql(stack, f"DROP DATABASE IF EXISTS {db}")
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"))
        admin.dispose()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-x"])
