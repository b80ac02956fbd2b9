"""Kafka retention against `cdc sink`: messages the broker deleted before a sink applied them are a
gap the sink must stop on (exit 2, naming the sink, topic:partition and both offsets, and the
recovery), never something it skips silently; a sink added after the topic lost its first messages
stops the same way instead of starting from whatever is left.
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from cdc.config.models import KafkaStreamConfig
from cdc.core.errors import StreamGap
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.devstack.connections import StackConnections
from cdc.stream.json_schema import table_schema_record
from cdc.stream.kafka_reader import KafkaChangeReader
from tests.support.kafka_pipeline import KafkaPipeline


def delete_up_to_end(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """Delete every record of the topic (as retention would); returns each partition's new start."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kafka-retention-probe"})
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()
    futures = admin.delete_records([TopicPartition(topic, p, end) for p, end in ends.items()])
    for future in futures.values():
        future.result(timeout=30)
    return ends


def sinks(tmp: Path, *names: str) -> str:
    return "".join(f"  - {{type: sql, url: 'sqlite:///{tmp / name}'}}\n" for name in names)


def test_sink_stops_on_messages_deleted_before_it_applied_them(
    stack: StackConnections, tmp_path: Path
) -> None:
    pipeline = KafkaPipeline.create(stack, tmp_path, partitions=2, sinks=sinks(tmp_path, "a.db"))
    try:
        capture = pipeline.daemon("run", "run.log")
        capture.catch_up(120)
        pipeline.execute_with("INSERT INTO t VALUES (%s, 1)", [(i,) for i in range(20)])
        capture.catch_up(120)
        pipeline.daemon("sink", "sink.log").catch_up(120)  # the sink holds offsets now
        pipeline.execute_with("UPDATE t SET ver = 2 WHERE id = %s", [(i,) for i in range(20)])
        capture.catch_up(120)
        topic = f"{pipeline.name}.{pipeline.db}.t"
        ends = delete_up_to_end(stack.kafka.bootstrap_servers, topic, 2)

        stale = pipeline.daemon("sink", "stale.log")
        proc = stale.start("--until-caught-up")
        assert proc.wait(120) == 2, stale.log.read_text()[-3000:]
        text = stale.log.read_text()
        assert "StreamGap" in text or "gap" in text, text[-3000:]
        found = re.search(
            rf"needs {re.escape(topic)}:(\d) from offset (\d+), but the partition now starts at offset (\d+)",
            text,
        )
        assert found, text[-3000:]
        partition, offset, start = int(found[1]), int(found[2]), int(found[3])
        assert start == ends[partition] and offset < start
        assert "cdc bootstrap" in text and "--sink" in text

        # a sink added to the pipeline now would miss everything the topic no longer holds
        pipeline.config.write_text(
            pipeline.config.read_text().replace(sinks(tmp_path, "a.db"), sinks(tmp_path, "a.db", "new.db"))
        )
        late = pipeline.daemon("sink", "late.log")
        assert late.start("--until-caught-up").wait(120) == 2, late.log.read_text()[-3000:]
        text = late.log.read_text()
        assert re.search(
            rf"new\.db has never consumed {re.escape(topic)}:\d, which now starts at offset \d+", text
        ), text[-3000:]
        assert "--accept-gap" in text

        # the operator's explicit way on: the sinks start from what the partitions hold now, and
        # every skipped partition is named; later changes reach them, and the gap is gone for good
        pipeline.execute_with("UPDATE t SET ver = 3 WHERE id = %s", [(i,) for i in range(5)])
        capture.catch_up(120)
        accepted = pipeline.daemon("sink", "accepted.log")
        assert accepted.start("--until-caught-up", "--accept-gap").wait(120) == 0, accepted.log.read_text()[
            -3000:
        ]
        text = accepted.log.read_text()
        assert re.search(rf"--accept-gap: sink \S*new\.db has never consumed {re.escape(topic)}", text), text[
            -3000:
        ]
        with sqlite3.connect(tmp_path / "new.db") as conn:
            assert sorted(conn.execute("SELECT id, ver FROM t").fetchall()) == [(i, 3) for i in range(5)]
        again = pipeline.daemon("sink", "again.log")
        assert again.start("--until-caught-up").wait(120) == 0, again.log.read_text()[-3000:]
    finally:
        pipeline.drop()


def test_the_reader_stops_when_retention_deletes_what_it_was_about_to_read(stack: StackConnections) -> None:
    # the assignment check passed, then retention moved the log start past the consumer's position
    # (here: the reader is told to start at an offset that is gone): a gap, not a jump
    bootstrap = stack.kafka.bootstrap_servers
    pipeline = f"kafka-{uuid.uuid4().hex[:8]}"
    topic = f"{pipeline}.db.t"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        producer.produce(topic, b"{}", str(i).encode())
    # the table is announced on the schema topic, as the writer does: the reader subscribes to it
    schema = TableSchema.build(
        TableRef("db", "t"), (Column("id", "int", ArrowType(ArrowKind.INT32), False),), ("id",)
    )
    record = table_schema_record(pipeline, schema, Position(Gtid(0, 1, 1), "mysql-bin.000001", 4))
    producer.produce(f"{pipeline}.__schema", orjson.dumps(record), b"db.t")
    assert producer.flush(30) == 0
    delete_up_to_end(bootstrap, topic, 1)
    reader = KafkaChangeReader(
        KafkaStreamConfig(bootstrap_servers=bootstrap), pipeline, lambda parts: dict.fromkeys(parts, 1)
    )
    reader.start()
    try:
        deadline = time.monotonic() + 30
        with pytest.raises(StreamGap, match=rf"{re.escape(topic)}:0 no longer holds"):
            while time.monotonic() < deadline:
                reader.poll(100, 0.5)
    finally:
        reader.close()
