"""Fault test of the PostgreSQL source: `cdc run` (Kafka mode) SIGKILLed at random moments, ten times,
and PostgreSQL restarted, under a workload. Afterwards every change is in Kafka exactly once and in
per-key order, replaying the topics gives the source's rows, and the slot's confirmed_flush_lsn never
passed the checkpoint Kafka had committed (checked after every kill).

The source is a private cluster, one for the module (it is restarted, and reconfigured for the
invalidated slot; the shared stack's servers never are). The daemons are forked from a preloaded
server (tests/support/pgsrc_daemon.py): a real process each, started in a fraction of a second.
"""

from __future__ import annotations

import random
import re
import secrets
import sqlite3
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdc.config.models import KafkaStreamConfig
from cdc.core.positions import RestartPoint
from cdc.devstack.connections import PgSourceConnection, StackConnections
from cdc.devstack.private_pgsource import PrivatePgSource
from cdc.sources.postgresql.server import parse_lsn
from cdc.stream.checkpoints import read_checkpoint
from tests.support.kafka_replay import Consumed, consume_all, pipeline_topics, replay
from tests.support.pgsrc_daemon import ForkedDaemon, warm_up

pytestmark = pytest.mark.slow

DB = "pgsrc_fault"
KILLS = 10  # SIGKILLs in all: nine in the loop, and one after PostgreSQL's restart


class Workload(threading.Thread):
    """Transactions of 1-3 row changes on 40 keys; each update bumps the key's `seq` by one, so the
    stream of one key must show 1, 2, 3... after each create. Survives the server's restart."""

    def __init__(self, conn: PgSourceConnection) -> None:
        super().__init__(daemon=True)
        self._conninfo = conn.admin_conninfo(DB)
        self.stop = threading.Event()
        self.commits = 0
        self.rng = random.Random(13)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=False, connect_timeout=2) as c:
                    while not self.stop.is_set():
                        for _ in range(self.rng.randint(1, 3)):
                            key = self.rng.randrange(40)
                            if self.rng.random() < 0.08:
                                c.execute("DELETE FROM acct WHERE id = %s", (key,))
                            else:
                                c.execute(
                                    "INSERT INTO acct VALUES (%s, 1, %s) ON CONFLICT (id) DO UPDATE"
                                    " SET seq = acct.seq + 1, note = excluded.note",
                                    (key, secrets.token_hex(4)),
                                )
                            c.execute("INSERT INTO log (k) VALUES (%s)", (key,))
                        c.commit()
                        self.commits += 1
                        time.sleep(0.012)  # ~60 transactions/s: leaves the 2 cores to the daemon
            except psycopg.OperationalError:
                time.sleep(0.2)  # the server restarts: whatever did not commit is not in the table


def _confirmed_flush(conn: PgSourceConnection, slot: str) -> int:
    with psycopg.connect(conn.admin_conninfo(DB), autocommit=True) as c:
        row = c.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    assert row is not None, f"slot {slot} is gone"
    return parse_lsn(str(row[0]))


def _check_slot_behind_kafka(
    conn: PgSourceConnection, slot: str, stream: KafkaStreamConfig, pipeline: str
) -> None:
    checkpoint = read_checkpoint(stream, pipeline)
    assert checkpoint is not None
    committed = checkpoint.restart.transaction.lsn
    assert committed is not None
    confirmed = _confirmed_flush(conn, slot)
    assert confirmed <= committed, f"slot confirmed {confirmed:X} past Kafka's checkpoint {committed:X}"


def _check_kills(daemon: ForkedDaemon, log_size: int, confirmed_at_kills: list[int]) -> None:
    """The slot's confirmed_flush_lsn read right after each kill is at or before the checkpoint Kafka
    held then: the one the next start reads and logs ("resuming from checkpoint ..."; nothing commits
    or acknowledges before that line, so a start killed before it changed neither)."""
    found = re.findall(r"resuming from checkpoint (\S+)", daemon.log_text()[log_size:])
    if not found:
        return
    committed = RestartPoint.parse(found[0]).transaction.lsn
    assert committed is not None
    for confirmed in confirmed_at_kills:
        assert confirmed <= committed, f"slot confirmed {confirmed:X} past Kafka's checkpoint {committed:X}"
    confirmed_at_kills.clear()


def _until_committed(daemon: ForkedDaemon, conn: PgSourceConnection, slot: str) -> None:
    """Until the daemon has committed a checkpoint to Kafka since now, and acknowledged it to the
    slot: its confirmed_flush_lsn moves (a cheap query, where Kafka's checkpoint needs a consumer)."""
    before = _confirmed_flush(conn, slot)
    deadline = time.monotonic() + 60
    while _confirmed_flush(conn, slot) <= before:
        assert daemon.alive, daemon.log_text()[-2000:]
        assert time.monotonic() < deadline, f"no commit within 60 s: {daemon.log_text()[-2000:]}"
        time.sleep(0.02)


def _verify(records: list[Consumed], conn: PgSourceConnection) -> int:
    events = [r for r in records if r.value is not None and "op" in r.value]
    positions = [r.position for r in events]
    assert len(positions) == len(set(positions)), "a change was written twice"
    by_key: dict[tuple[str, Any], list[Consumed]] = defaultdict(list)
    for r in sorted(events, key=lambda r: (r.partition, r.offset)):
        by_key[(r.topic, str(r.key))].append(r)
    for (topic, key), changes in by_key.items():
        # per-key order: the partition's order is the source's order
        assert [c.position for c in changes] == sorted(c.position for c in changes), (topic, key)
        if not topic.endswith(".acct"):
            continue
        seq = 0
        for c in changes:
            op, after = c.value["op"], c.value["after"]
            if op == "d":
                seq = 0
            else:
                assert after["seq"] == seq + 1, f"key {key}: seq {after['seq']} after {seq} (lost or doubled)"
                seq = after["seq"]
    state = replay(records)
    with psycopg.connect(conn.admin_conninfo(DB)) as c:
        acct = c.execute("SELECT id, seq, note FROM acct ORDER BY id").fetchall()
        log = c.execute("SELECT id, k FROM log ORDER BY id").fetchall()
    assert sorted((v["id"], v["seq"], v["note"]) for v in state["public.acct"].values()) == acct
    assert sorted((v["id"], v["k"]) for v in state["public.log"].values()) == log
    return len(events)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePgSource]:
    """One private cluster for the module (it is restarted; initdb costs seconds on CI)."""
    warm_up()  # the daemons' fork server imports meanwhile
    with PrivatePgSource() as server:
        yield server


def _new_database(conn: PgSourceConnection, name: str) -> None:
    with psycopg.connect(conn.admin_conninfo("postgres"), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")


def test_sigkill_ten_times_and_postgresql_restart(
    stack: StackConnections, private_pg: PrivatePgSource
) -> None:
    rng = random.Random()
    pipeline = f"pgsrc-fault-{secrets.token_hex(3)}"
    slot = f"pgsrc_fault_{secrets.token_hex(3)}"
    tmp = Path(tempfile.mkdtemp(prefix="pgsrc-fault-"))
    stream = KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers)
    server = private_pg
    conn = server.connection()
    _new_database(conn, DB)
    with psycopg.connect(conn.admin_conninfo(DB), autocommit=True) as c:
        c.execute("CREATE TABLE acct (id int PRIMARY KEY, seq int NOT NULL, note text)")
        c.execute("CREATE TABLE log (id bigserial PRIMARY KEY, k int)")
        c.execute("CREATE PUBLICATION headwater FOR ALL TABLES")
    config = tmp / "cdc.yaml"
    config.write_text(
        f"name: {pipeline}\n"
        f"source: {{type: postgresql, host: {conn.host}, port: {conn.port}, user: {conn.user},"
        f" password: '${{CDC_SOURCE_PASSWORD}}', database: {DB}, slot: {slot}, heartbeat_seconds: 0.5}}\n"
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}', partitions: 3,"
        " flush_max_events: 100000, flush_max_ms: 300}\n"
        f"sinks: [{{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}]\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    daemon = ForkedDaemon(config, tmp / "cdc.log", password=conn.password)
    daemon.catch_up(120)  # creates the slot and commits its first checkpoint
    workload = Workload(conn)
    workload.start()
    at_kills: list[int] = []  # the slot's confirmed_flush_lsn right after each kill, until checked
    kills: list[int] = []

    def start() -> int:
        log_size = len(daemon.log_text())
        daemon.start()
        return log_size

    def kill() -> None:
        daemon.kill()
        at_kills.append(_confirmed_flush(conn, slot))
        kills.append(at_kills[-1])

    try:
        for attempt in range(KILLS - 1):
            log_size = start()
            if attempt in (0, 3):
                # during start-up: connecting, opening the slot, initialising the Kafka transaction
                time.sleep(rng.uniform(0.05, 0.6))
            else:
                # right after a commit the daemon acknowledged, or up to 0.3 s later (mid-transaction)
                _until_committed(daemon, conn, slot)
                if attempt % 2:
                    time.sleep(rng.uniform(0.0, 0.3))
            _check_kills(daemon, log_size, at_kills)  # the earlier kills, against this start's checkpoint
            kill()
            if attempt == 4:
                # PostgreSQL restarts under the workload and a streaming daemon, which retries and
                # commits again; then it is killed too
                log_size = start()
                _until_committed(daemon, conn, slot)
                _check_kills(daemon, log_size, at_kills)
                server.restart()
                _until_committed(daemon, conn, slot)
                kill()
    finally:
        workload.stop.set()
        workload.join(10)
    assert len(kills) == KILLS and workload.commits > 100
    log_size = len(daemon.log_text())
    daemon.catch_up(180)
    _check_kills(daemon, log_size, at_kills)
    assert at_kills == [] and daemon.log_text().count("resuming from checkpoint") >= KILLS - 2
    _check_slot_behind_kafka(conn, slot, stream, pipeline)  # and read from Kafka by the test itself
    records = consume_all(
        stack.kafka.bootstrap_servers, pipeline_topics(stack.kafka.bootstrap_servers, pipeline)
    )
    assert _verify(records, conn) > 300
    # and a sink fed from the stream holds the source's rows, row by row
    ForkedDaemon(config, tmp / "sink.log", command="sink", password=conn.password).catch_up(180)
    with psycopg.connect(conn.admin_conninfo(DB)) as c:
        acct = c.execute("SELECT id, seq, note FROM acct ORDER BY id").fetchall()
        log = c.execute("SELECT id, k FROM log ORDER BY id").fetchall()
    with sqlite3.connect(tmp / "serving.db") as lite:
        assert lite.execute("SELECT id, seq, note FROM acct ORDER BY id").fetchall() == acct
        assert lite.execute("SELECT id, k FROM log ORDER BY id").fetchall() == log
    with psycopg.connect(conn.admin_conninfo(DB), autocommit=True) as c:
        c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def test_invalidated_slot_is_terminal_and_names_the_recovery(private_pg: PrivatePgSource) -> None:
    """A slot that fell behind max_slot_wal_keep_size is invalidated by the server (wal_status lost):
    the daemon's source stops with a stream gap naming the slot and how to recover."""
    from cdc.config.models import PostgresSourceConfig
    from cdc.core.errors import StreamGap
    from cdc.daemon.postgresql_source import PostgresSource
    from cdc.sources.postgresql.reader import Acks

    conn = private_pg.connection()
    db = "pgsrc_inval"
    _new_database(conn, db)
    with psycopg.connect(conn.admin_conninfo(db), autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY)")
        c.execute("CREATE PUBLICATION headwater FOR ALL TABLES")
        config = PostgresSourceConfig(
            host=conn.host, port=conn.port, user=conn.user, password=conn.password, database=db, slot="behind"
        )
        source = PostgresSource(config, "behind", blocking=False, acks=Acks())
        start = source.current_restart_point()
        c.execute("INSERT INTO t VALUES (0)")
    # this private cluster only: a slot may pin 1 MB of WAL (the last test of the module)
    private_pg.restart({"max_slot_wal_keep_size": "1MB"})
    with psycopg.connect(conn.admin_conninfo(db), autocommit=True) as c:
        for i in range(1, 5):  # WAL the slot never confirms, past the 1 MB it may keep
            c.execute("INSERT INTO t VALUES (%s)", (i,))
            c.execute("SELECT pg_switch_wal()")
        c.execute("CHECKPOINT")
        row = c.execute("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'behind'").fetchone()
        assert row == ("lost",)
    with pytest.raises(StreamGap, match=r"slot 'behind' was invalidated.*bootstrap: \{mode: initial\}"):
        source.records(start)
