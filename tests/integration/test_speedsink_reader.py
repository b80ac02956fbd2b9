"""The `cdc sink` consumer against a real broker: a change is handed over as soon as it arrives (not
after the poll's whole timeout, waiting for a full batch), and the prefetch is bounded."""

from __future__ import annotations

import random
import time
import uuid

from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.devstack.connections import StackConnections
from cdc.stream import KafkaStreamWriter
from cdc.stream.kafka_reader import ConsumedChange, KafkaChangeReader

SCHEMA = TableSchema.build(
    TableRef("speedsink", "items"),
    (
        Column("id", "int", ArrowType(ArrowKind.INT32), False),
        Column("name", "varchar", ArrowType(ArrowKind.STRING)),
    ),
    ("id",),
)


def write_transaction(writer: KafkaStreamWriter, seq: int, rows: int) -> None:
    start = Position(Gtid(0, 1, seq), "mysql-bin.000001", 1000 * seq)
    writer.begin()
    for i in range(rows):
        writer.write(
            ChangeEvent(Op.CREATE, SCHEMA, (seq * 1000 + i,), None, (seq * 1000 + i, f"n{i}"),
                        start.at_row(i), 1, f"0-1-{seq}")
        )  # fmt: skip
    end = TransactionEnd(f"0-1-{seq}", start.at_row(rows - 1), rows, 1)
    writer.write(end)
    writer.commit(end.restart)


def test_a_poll_returns_what_arrived_without_waiting_out_its_timeout(stack: StackConnections) -> None:
    pipeline = f"speedsink{uuid.uuid4().hex[:8]}"
    config = KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers)
    writer = KafkaStreamWriter(config, pipeline, random.randrange(5100, 5200))
    reader = KafkaChangeReader(config, pipeline, lambda parts: {})
    try:
        writer.start()
        write_transaction(writer, 1, 3)  # the topic exists before the reader subscribes
        reader.start()
        got: list[ConsumedChange] = []
        deadline = time.monotonic() + 60
        while len(got) < 3 and time.monotonic() < deadline:  # the group join, then the first rows
            got += reader.poll(10_000, 0.5)
        assert [c.event.key for c in got] == [(1000,), (1001,), (1002,)]
        assert not reader.backlog  # it returned fewer than it was allowed: nothing more waits

        write_transaction(writer, 2, 2)
        started = time.monotonic()
        got = []
        while len(got) < 2 and time.monotonic() - started < 20:
            got += reader.poll(10_000, 5.0)
        took = time.monotonic() - started
        assert [c.event.key for c in got] == [(2000,), (2001,)]
        assert got[0].event.position == Position(Gtid(0, 1, 2), "mysql-bin.000001", 2000, 0)
        # before: consume(10000, timeout=5) waited its whole 5 s for a batch that never filled
        assert took < 2.5, f"a poll held 2 changes for {took:.1f}s"
    finally:
        reader.close()
        writer.close()
