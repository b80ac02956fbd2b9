"""`cdc sink` applies a batch on its sink thread while it reads the next (cdc/daemon/sink_thread.py):
a failed apply still stops the run with its error and nothing past it, and a SIGKILL while batches
overlap still leaves an exact copy. Real MariaDB, Kafka and PostgreSQL; one captured pipeline for
both tests."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition

from cdc.cli import main
from cdc.config import load_config
from cdc.config.models import KafkaStreamConfig, SqlSinkConfig
from cdc.daemon.sink_runner import SinkRunner, SinkRunnerOptions
from cdc.devstack.connections import StackConnections
from cdc.stream.kafka_reader import KafkaChangeReader, split_partition
from sinks.sql import create_sql_sink
from tests.support.workload import Daemon

ROWS = 4_500
PARTITIONS = 2
SERVER_IDS = (7800, 7899)  # this area's replica server_ids


@dataclass
class Pipeline:
    stack: StackConnections
    tmp: Path
    db: str
    name: str

    def config(self, schema: str, group: str, max_events: int) -> Path:
        m, pg = self.stack.mariadb, self.stack.postgres
        path = self.tmp / f"{schema}-{group}.yaml"
        path.write_text(
            f"name: {self.name}\n"
            f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
            f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {random.randint(*SERVER_IDS)},"
            f" tables: ['{self.db}.*'], heartbeat_seconds: 1}}\n"
            f"stream: {{type: kafka, bootstrap_servers: '{self.stack.kafka.bootstrap_servers}',"
            f" partitions: {PARTITIONS}, flush_max_ms: 50, consumer_group: {group}}}\n"
            f"sinks:\n  - {{type: sql, url: '{pg.sqlalchemy_url()}', schema: {schema}}}\n"
            f"batch: {{max_events: {max_events}, max_ms: 100, idle_flush_seconds: 1}}\n"
            f"state_dir: {self.tmp / 'state'}\n"
        )
        return path

    def daemon(self, config: Path, command: str, log: str) -> Daemon:
        return Daemon(config, self.tmp / log, command, self.stack.mariadb.password)

    def source(self, *statements: str) -> None:
        with self.stack.mariadb.connect_root(database=self.db, autocommit=True) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def source_rows(self) -> dict[int, int]:
        with self.stack.mariadb.connect_root(database=self.db) as conn, conn.cursor() as cur:
            cur.execute("SELECT id, ver FROM t")
            return {int(i): int(v) for i, v in cur.fetchall()}

    def catch_up(self, command: str, config: Path) -> None:
        """``cdc <command> --until-caught-up`` in this process (no interpreter to start)."""
        done = CliRunner().invoke(
            main,
            [command, "-c", str(config), "--until-caught-up"],
            env={"CDC_SOURCE_PASSWORD": self.stack.mariadb.password},
        )
        assert done.exit_code == 0, done.output[-3000:]

    def capture(self) -> None:
        self.catch_up("run", self.config("unused", "unused", 1000))


def pg(stack: StackConnections) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(stack.postgres.sqlalchemy_url().replace("+psycopg", ""), autocommit=True)


def pg_rows(stack: StackConnections, schema: str) -> dict[int, int]:
    with pg(stack) as conn:
        return {int(i): int(v) for i, v in conn.execute(f'SELECT id, ver FROM "{schema}".t')}  # type: ignore[call-overload]


def pg_count(stack: StackConnections, schema: str) -> int:
    with pg(stack) as conn:
        try:
            found = conn.execute(f'SELECT count(*) FROM "{schema}".t').fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        return int(found[0]) if found else 0  # type: ignore[call-overload]


def drop_schema(stack: StackConnections, schema: str) -> None:
    with pg(stack) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def stored_offsets(pipeline: Pipeline, config: Path) -> dict[str, int]:
    loaded = load_config(config, {"CDC_SOURCE_PASSWORD": pipeline.stack.mariadb.password})
    sink_config = loaded.sinks[0]
    assert isinstance(sink_config, SqlSinkConfig)
    sink = create_sql_sink(sink_config, loaded.name)
    sink.open()
    try:
        state = sink.applied()
        return dict(state.offsets) if state is not None else {}
    finally:
        sink.close()


def messages(pipeline: Pipeline) -> dict[str, list[dict[str, object]]]:
    """Every change envelope of ``t``'s topic, per partition, in offset order (with its offset)."""
    topic = f"{pipeline.name}.{pipeline.db}.t"
    consumer = Consumer(
        {
            "bootstrap.servers": pipeline.stack.kafka.bootstrap_servers,
            "group.id": f"sinkwall-check-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    out: dict[str, list[dict[str, object]]] = {}
    try:
        for p in range(PARTITIONS):
            name = f"{topic}:{p}"
            out[name] = []
            low, _high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            consumer.assign([TopicPartition(topic, p, low)])
            deadline = time.monotonic() + 30
            at_end = False
            while not at_end and time.monotonic() < deadline:
                for msg in consumer.consume(1000, timeout=1):
                    if msg.error():
                        at_end = True  # end of the partition (enable.partition.eof)
                    elif msg.value():
                        out[name].append({**orjson.loads(msg.value() or b"{}"), "_offset": msg.offset()})
    finally:
        consumer.close()
    return out


def state_below(found: dict[str, list[dict[str, object]]], offsets: dict[str, int]) -> dict[int, int]:
    """``t`` after every change below ``offsets`` (per partition): what the sink must hold exactly."""
    rows: dict[int, int] = {}
    for partition, changes in found.items():
        for change in changes:
            if int(change["_offset"]) >= offsets.get(partition, 0):  # type: ignore[call-overload]
                break
            image = change["after"] or change["before"]
            assert isinstance(image, dict)
            if change["op"] == "d":
                rows.pop(int(image["id"]), None)
            else:
                rows[int(image["id"])] = int(image["ver"])
    return rows


@pytest.fixture(scope="module")
def pipeline(stack: StackConnections, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    suffix = uuid.uuid4().hex[:8]
    p = Pipeline(stack, tmp_path_factory.mktemp("sinkwall"), f"sinkwall_{suffix}", f"sinkwall-{suffix}")
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {p.db}")
        cur.execute(f"CREATE TABLE {p.db}.t (id INT PRIMARY KEY, ver INT NOT NULL, pad VARCHAR(200))")
    p.capture()  # records where the pipeline begins
    statements = [
        f"INSERT INTO t SELECT seq, 0, REPEAT('x', 150) FROM seq_{lo}_to_{lo + 299}"
        for lo in range(1, ROWS, 300)
    ]
    # then every key changed again in small transactions, so the last change of keys is spread out
    statements += [f"UPDATE t SET ver = ver + 1 WHERE id % 40 = {k}" for k in range(40)]
    statements += [f"DELETE FROM t WHERE id % 97 = {k}" for k in range(0, 97, 7)]
    p.source(*statements)
    p.capture()
    yield p
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {p.db}")


def test_a_failed_apply_stops_the_run_with_nothing_past_it(pipeline: Pipeline) -> None:
    schema = f"sinkwall_err_{uuid.uuid4().hex[:6]}"
    stack = pipeline.stack
    config = pipeline.config(schema, f"sinkwall-err-{uuid.uuid4().hex[:6]}", 400)
    loaded = load_config(config, {"CDC_SOURCE_PASSWORD": stack.mariadb.password})
    sink_config = loaded.sinks[0]
    assert isinstance(sink_config, SqlSinkConfig) and loaded.stream is not None
    stream = loaded.stream
    assert isinstance(stream, KafkaStreamConfig)
    found = messages(pipeline)
    # the first change of key 3001 (an insert, in the middle of the stream) breaks a CHECK constraint
    poison = next(
        (partition, int(c["_offset"]))  # type: ignore[call-overload]
        for partition, changes in found.items()
        for c in changes
        if c["after"] and int(c["after"]["id"]) == 3001  # type: ignore[index]
    )
    try:
        with pg(stack) as conn:
            # the table exactly as the sink makes it (it adopts an existing one), with the constraint
            conn.execute(f'CREATE SCHEMA "{schema}"')
            conn.execute(
                f'CREATE TABLE "{schema}".t (id INTEGER NOT NULL PRIMARY KEY, ver INTEGER NOT NULL,'
                " pad VARCHAR(200), CHECK (id <> 3001))"
            )
        runner = SinkRunner(
            lambda: [create_sql_sink(sink_config, loaded.name)],
            lambda offsets: KafkaChangeReader(stream, loaded.name, offsets, stream.consumer_group),
            SinkRunnerOptions(until_caught_up=True, max_events=400, max_ms=100),
        )
        codes: list[int] = []
        worker = threading.Thread(target=lambda: codes.append(runner.run()))
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), "the run did not end after the failed apply"
        assert codes == [2]  # terminal: the constraint names a row only an operator can fix
        assert "3001" in (runner._supervisor.last_error or ""), runner._supervisor.last_error
        offsets = stored_offsets(pipeline, config)
        partition, offset = poison
        assert offsets.get(partition, 0) <= offset, (offsets, poison)  # the failed batch left nothing
        assert sum(offsets.values()) > 0  # batches before it were applied ...
        # ... exactly: the table is every change below the stored offsets, nothing more
        assert pg_rows(stack, schema) == state_below(found, offsets)
    finally:
        drop_schema(stack, schema)


def test_sigkill_while_batches_overlap_leaves_an_exact_copy(pipeline: Pipeline) -> None:
    schema = f"sinkwall_kill_{uuid.uuid4().hex[:6]}"
    stack = pipeline.stack
    mid_stream = 0
    try:
        total = sum(len(c) for c in messages(pipeline).values())
        for kill in range(2):
            # a group of its own per start: the killed member's partitions are not waited for
            config = pipeline.config(schema, f"sinkwall-kill-{uuid.uuid4().hex[:6]}", 1500)
            sink = pipeline.daemon(config, "sink", f"sink{kill}.log")
            # killed mid-stream, once it copied a few more rows: batches of 1500 (the COPY path)
            # are then applied while the next is read
            threshold = pg_count(stack, schema) + random.randrange(100, 1500)
            sink.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and pg_count(stack, schema) < threshold:
                time.sleep(0.005)
            sink.kill()
            mid_stream += 0 < sum(stored_offsets(pipeline, config).values()) < total
        config = pipeline.config(schema, f"sinkwall-kill-{uuid.uuid4().hex[:6]}", 1500)
        pipeline.catch_up("sink", config)
        assert pg_rows(stack, schema) == pipeline.source_rows()
        offsets = stored_offsets(pipeline, config)
        ends = {p: int(c[-1]["_offset"]) + 1 for p, c in messages(pipeline).items()}  # type: ignore[call-overload]
        assert {p: o for p, o in offsets.items() if split_partition(p)[0].endswith(".t")} == ends
        assert mid_stream == 2, "a kill came before the first batch or after the last"
    finally:
        drop_schema(stack, schema)
