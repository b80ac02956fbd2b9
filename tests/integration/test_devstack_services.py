"""Each dev stack service does what the pipeline needs from it, through real queries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pymysql
import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent

from cdc.devstack.connections import StackConnections


def _root(stack: StackConnections, database: str | None = None) -> pymysql.Connection[Any]:
    db = stack.mariadb
    return db.connect_root(database=database, autocommit=True)


def _one(cur: Any) -> tuple[Any, ...]:
    row = cur.fetchone()
    assert row is not None
    return tuple(row)


@pytest.fixture
def schema(stack: StackConnections) -> Iterator[str]:
    name = f"devstack_{uuid.uuid4().hex[:8]}"
    conn = _root(stack)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    yield name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE `{name}`")
    conn.close()


def test_mariadb_binlog_settings(stack: StackConnections, schema: str) -> None:
    conn = _root(stack)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, "
            "@@server_id, @@gtid_domain_id, @@gtid_strict_mode, @@log_slave_updates, @@bind_address"
        )
        row = _one(cur)
        assert row == (1, "ROW", "FULL", "FULL", stack.mariadb.server_id, 0, 1, 1, "127.0.0.1")
        # The fixture's CREATE DATABASE was binlogged, so there is a GTID: domain 0, our server id.
        cur.execute("SELECT @@gtid_binlog_pos, @@gtid_current_pos")
        binlog_pos, current_pos = _one(cur)
    conn.close()
    assert binlog_pos.startswith(f"0-{stack.mariadb.server_id}-")
    assert current_pos == binlog_pos


def test_cdc_user_is_least_privilege(stack: StackConnections) -> None:
    db = stack.mariadb
    conn = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password)
    with conn.cursor() as cur:
        cur.execute("SHOW GRANTS")
        grants = " ".join(row[0] for row in cur.fetchall())
        cur.execute("SHOW BINARY LOGS")  # BINLOG MONITOR
        assert cur.fetchall()
        with pytest.raises(pymysql.err.OperationalError):
            cur.execute("CREATE DATABASE cdc_must_not_create")
    conn.close()
    for privilege in ("SELECT", "RELOAD", "LOCK TABLES", "SHOW VIEW", "REPLICATION SLAVE", "BINLOG MONITOR"):
        assert privilege in grants
    assert "ALL PRIVILEGES" not in grants


def test_mariadb_committed_row_is_read_back_from_the_binlog(stack: StackConnections, schema: str) -> None:
    conn = _root(stack, database=schema)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), qty INT)")
        cur.execute("SHOW MASTER STATUS")
        log_file, log_pos = _one(cur)[:2]
        cur.execute("INSERT INTO items VALUES (%s, %s, %s)", (7, "seven", 70))
        cur.execute("SELECT @@gtid_binlog_pos")
        (gtid_pos,) = _one(cur)
    conn.close()
    assert gtid_pos.startswith(f"0-{stack.mariadb.server_id}-")

    db = stack.mariadb
    # File/position mode on purpose: the library's MariaDB GTID mode is the known-broken path.
    reader = BinLogStreamReader(
        connection_settings={"host": db.host, "port": db.port, "user": db.user, "passwd": db.password},
        server_id=db.server_id + 1000,
        log_file=log_file,
        log_pos=log_pos,
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent],
        only_schemas=[schema],
    )
    try:
        rows = [(event.table, row["values"]) for event in reader for row in event.rows]
    finally:
        reader.close()
    assert rows == [("items", {"id": 7, "name": "seven", "qty": 70})]


def _topic(stack: StackConnections) -> str:
    name = f"devstack-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers})
    for future in admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=30)
    return name


def _consume_all(stack: StackConnections, topic: str, isolation: str) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka.bootstrap_servers,
            "group.id": f"devstack-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    idle = 0
    try:
        while idle < 6:  # about 3 s with nothing new once the partition is assigned
            msg = consumer.poll(0.5)
            if msg is None:
                idle += 1 if consumer.assignment() else 0
                continue
            if msg.error():
                raise KafkaException(msg.error())
            idle = 0
            values.append(msg.value() or b"")
    finally:
        consumer.close()
    return values


def test_kafka_transactions_commit_and_abort(stack: StackConnections) -> None:
    topic = _topic(stack)
    producer = Producer(
        {
            "bootstrap.servers": stack.kafka.bootstrap_servers,
            "transactional.id": f"devstack-test-{uuid.uuid4().hex}",
        }
    )
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"committed-1")
    producer.produce(topic, key=b"k", value=b"committed-2")
    producer.commit_transaction(60)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"aborted")
    producer.flush(30)
    producer.abort_transaction(60)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"committed-3")
    producer.commit_transaction(60)

    assert _consume_all(stack, topic, "read_committed") == [b"committed-1", b"committed-2", b"committed-3"]
    # The aborted record did reach the log: a read_uncommitted consumer sees it.
    assert b"aborted" in _consume_all(stack, topic, "read_uncommitted")


def test_postgres_creates_writes_and_reads_a_table(stack: StackConnections) -> None:
    pg = stack.postgres
    table = f"devstack_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database
    ) as conn:
        conn.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute(f"INSERT INTO {table} VALUES (%s, %s), (%s, %s)", (1, "one", 2, "two"))
        conn.commit()
        rows = conn.execute(f"SELECT id, name FROM {table} ORDER BY id").fetchall()
        conn.execute(f"DROP TABLE {table}")
    assert rows == [(1, "one"), (2, "two")]


def test_postgres_rejects_a_wrong_password(stack: StackConnections) -> None:
    pg = stack.postgres
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password="wrong", dbname=pg.database)
