"""Lifecycle of a second, separate dev stack (own state dir and ports): the main one is untouched.

up twice is idempotent (same PIDs), down leaves no process and no listening port, and the data of
all three services survives down + up.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer

from cdc.devstack.commands import dev
from cdc.devstack.connections import StackConnections
from cdc.devstack.process import pid_alive, port_open
from cdc.devstack.service import ServiceState, StartOutcome, StopOutcome
from cdc.devstack.settings import ServiceName, StackSettings
from cdc.devstack.stack import DevStack

pytestmark = pytest.mark.slow

PORTS = {
    "mariadb_port": 13307,
    "kafka_port": 19092,
    "kafka_controller_port": 19093,
    "postgres_port": 15433,
    "pgsource_port": 15434,
}
ALL_PORTS = tuple(PORTS.values())


@pytest.fixture(scope="module")
def second_stack() -> Iterator[DevStack]:
    # Not pytest's tmp_path: its parents are private to root and PostgreSQL runs as `postgres`.
    state_dir = Path(tempfile.mkdtemp(prefix="hw-devstack-"))
    state_dir.chmod(0o755)
    busy = [port for port in ALL_PORTS if port_open(port)]
    if busy:
        pytest.fail(f"ports {busy} are taken: the lifecycle test needs them free")
    stack = DevStack(
        StackSettings(
            state_dir=state_dir,
            mariadb_port=PORTS["mariadb_port"],
            kafka_port=PORTS["kafka_port"],
            kafka_controller_port=PORTS["kafka_controller_port"],
            postgres_port=PORTS["postgres_port"],
            pgsource_port=PORTS["pgsource_port"],
        )
    )
    try:
        yield stack
    finally:
        stack.down()
        shutil.rmtree(state_dir, ignore_errors=True)


def _cli(stack: DevStack, *args: str) -> str:
    options = [
        f"--dir={stack.settings.state_dir}",
        *(f"--{key.replace('_', '-')}={value}" for key, value in PORTS.items()),
    ]
    result = CliRunner().invoke(dev, [*args, *options], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return result.output


def _write_data(conn: StackConnections, topic: str) -> None:
    db = conn.mariadb
    my = db.connect_root()
    with my.cursor() as cur:
        cur.execute("CREATE DATABASE lifecycle")
        cur.execute("CREATE TABLE lifecycle.kept (id INT PRIMARY KEY, note VARCHAR(20))")
        cur.execute("INSERT INTO lifecycle.kept VALUES (1, 'survives')")
    my.commit()
    my.close()
    pg = conn.postgres
    with psycopg.connect(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database
    ) as pconn:
        pconn.execute("CREATE TABLE kept (id INT PRIMARY KEY, note TEXT)")
        pconn.execute("INSERT INTO kept VALUES (1, 'survives')")
    producer = Producer({"bootstrap.servers": conn.kafka.bootstrap_servers, "enable.idempotence": True})
    producer.produce(topic, key=b"k", value=b"survives")
    assert producer.flush(30) == 0


def _read_data(conn: StackConnections, topic: str) -> tuple[object, object, bytes | None]:
    db = conn.mariadb
    my = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password)
    with my.cursor() as cur:
        cur.execute("SELECT note FROM lifecycle.kept WHERE id = 1")
        maria_row = cur.fetchone()
        assert maria_row is not None
        (maria_note,) = maria_row
    my.close()
    pg = conn.postgres
    with psycopg.connect(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database
    ) as pconn:
        row = pconn.execute("SELECT note FROM kept WHERE id = 1").fetchone()
        assert row is not None
        (pg_note,) = row
    consumer = Consumer(
        {
            "bootstrap.servers": conn.kafka.bootstrap_servers,
            "group.id": f"lifecycle-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    value = None
    try:
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                value = msg.value()
                break
    finally:
        consumer.close()
    return maria_note, pg_note, value


def test_up_is_idempotent_down_leaves_nothing_and_data_survives(second_stack: DevStack) -> None:
    stack = second_stack
    first = stack.up()
    assert {outcome for outcome, _ in first.started.values()} == {StartOutcome.STARTED}
    assert set(first.started) == set(ServiceName)
    pids = {name: pid for name, (_, pid) in first.started.items()}

    second = stack.up()
    assert {outcome for outcome, _ in second.started.values()} == {StartOutcome.ALREADY_RUNNING}
    assert {name: pid for name, (_, pid) in second.started.items()} == pids
    assert "already running" in _cli(stack, "up")

    status = json.loads(_cli(stack, "status", "--json"))
    assert {s["service"]: s["pid"] for s in status["services"]} == {n.value: p for n, p in pids.items()}
    assert all(s["state"] == "running" for s in status["services"])
    conn = StackConnections.read(stack.settings.state_dir)
    assert conn == first.connections
    assert (stack.settings.state_dir / "connections.json").stat().st_mode & 0o777 == 0o600

    topic = f"lifecycle-{uuid.uuid4().hex[:8]}"
    _write_data(conn, topic)

    down = stack.down()
    assert set(down.stopped.values()) <= {StopOutcome.STOPPED, StopOutcome.KILLED}
    assert not [pid for pid in pids.values() if pid_alive(pid)]
    assert not [port for port in ALL_PORTS if port_open(port)]
    assert all(s.state is ServiceState.STOPPED for s in stack.status())
    assert "not running" in _cli(stack, "down")

    again = stack.up()
    assert {outcome for outcome, _ in again.started.values()} == {StartOutcome.STARTED}
    assert _read_data(again.connections, topic) == ("survives", "survives", b"survives")
