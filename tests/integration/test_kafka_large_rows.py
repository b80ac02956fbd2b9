"""Large rows through Kafka: a 5 MB LONGBLOB row goes through `cdc run` and back out through
`cdc sink` (table topics are created for stream.max_message_bytes, or raised to it when they exist
with a smaller limit; the producer and the consumers are configured for it); a row whose envelope
is over the limit stops capture with exit 2 naming the table, the key and the size, and nothing of
its source transaction is committed to Kafka.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
from pathlib import Path

from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from cdc.devstack.connections import StackConnections
from tests.support.kafka_pipeline import KafkaPipeline
from tests.support.kafka_replay import consume_all, pipeline_topics
from tests.support.workload import Daemon

TABLE = "CREATE TABLE t (id INT PRIMARY KEY, ver INT NOT NULL, data LONGBLOB)"


def until_caught_up(daemon: Daemon, timeout: float = 90) -> int:
    """Exit code of ``--until-caught-up``; a process still running after ``timeout`` is killed (-1)."""
    proc = daemon.start("--until-caught-up")
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
        return -1


def topic_max_message_bytes(bootstrap: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([resource])[resource].result(timeout=30)
    return int(described["max.message.bytes"].value)


def test_a_5_mb_row_goes_through_kafka_into_a_sink(stack: StackConnections, tmp_path: Path) -> None:
    serving = tmp_path / "serving.db"
    pipeline = KafkaPipeline.create(
        stack, tmp_path, sinks=f"  - {{type: sql, url: 'sqlite:///{serving}'}}\n", tables_sql=(TABLE,)
    )
    try:
        # the table's topic exists already, with the broker's default limit (about 1 MB), as a
        # topic created before stream.max_message_bytes would: capture raises it
        topic = f"{pipeline.name}.{pipeline.db}.t"
        admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers})
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
        assert topic_max_message_bytes(stack.kafka.bootstrap_servers, topic) < 2 * 1024 * 1024
        capture = pipeline.daemon("run", "run.log")
        capture.catch_up(120)
        blob = os.urandom(5 * 1024 * 1024)
        with pipeline.connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (1, 1, %s), (2, 1, 'small')", (blob,))
        assert until_caught_up(capture) == 0, capture.log.read_text()[-3000:]
        sink = pipeline.daemon("sink", "sink.log")
        assert until_caught_up(sink) == 0, sink.log.read_text()[-3000:]
        with sqlite3.connect(serving) as db:
            rows = dict(db.execute("SELECT id, data FROM t").fetchall())
        assert hashlib.sha256(rows[1]).digest() == hashlib.sha256(blob).digest()
        assert rows[2] == b"small"
        assert topic_max_message_bytes(stack.kafka.bootstrap_servers, topic) >= 16 * 1024 * 1024
    finally:
        pipeline.drop()


def test_a_row_over_the_limit_stops_capture_naming_table_key_and_size(
    stack: StackConnections, tmp_path: Path
) -> None:
    pipeline = KafkaPipeline.create(
        stack,
        tmp_path,
        partitions=1,
        stream_extra=", max_message_bytes: 1048576",
        sinks=f"  - {{type: sql, url: 'sqlite:///{tmp_path / 'serving.db'}'}}\n",
        tables_sql=(TABLE,),
    )
    try:
        capture = pipeline.daemon("run", "run.log")
        capture.catch_up(120)
        with pipeline.connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (7, 1, 'before')")
        capture.catch_up(120)
        with pipeline.connect() as conn, conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO t VALUES (8, 1, 'same transaction')")
            cur.execute("INSERT INTO t VALUES (9, 1, %s)", (os.urandom(2 * 1024 * 1024),))
            cur.execute("COMMIT")
        code = until_caught_up(capture)
        log = capture.log.read_text()
        assert code == 2, log[-3000:]
        assert f"{pipeline.db}.t" in log and '{"id":9}' in log, log[-3000:]
        assert "max_message_bytes" in log and "1048576" in log, log[-3000:]
        # nothing of that source transaction reached the topic
        records = consume_all(
            stack.kafka.bootstrap_servers,
            [t for t in pipeline_topics(stack.kafka.bootstrap_servers, pipeline.name) if t.endswith(".t")],
        )
        ids = [r.value["after"]["id"] for r in records if r.value]
        assert ids == [7]
    finally:
        pipeline.drop()
