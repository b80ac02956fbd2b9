"""`cdc sink`'s chunked poll against a real broker: one chunk per partition run, offsets per message
(a delete's tombstone left out), and both decodes of a chunk agreeing with each other."""

from __future__ import annotations

import random
import time
import uuid

from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.devstack.connections import StackConnections
from cdc.stream import KafkaStreamWriter
from cdc.stream.kafka_chunks import ChangeChunk
from cdc.stream.kafka_reader import KafkaChangeReader
from tests.integration.test_speedsink_reader import SCHEMA


def test_chunks_hold_each_partitions_messages_with_their_offsets(stack: StackConnections) -> None:
    pipeline = f"sinkcol{uuid.uuid4().hex[:8]}"
    config = KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers, partitions=2)
    writer = KafkaStreamWriter(config, pipeline, random.randrange(7700, 7800))
    reader = KafkaChangeReader(config, pipeline, lambda parts: {})
    try:
        writer.start()
        start = Position(Gtid(0, 1, 1), "mysql-bin.000001", 1000)
        writer.begin()
        for i in range(20):
            writer.write(
                ChangeEvent(Op.CREATE, SCHEMA, (i,), None, (i, f"n{i}"), start.at_row(i), 1, "0-1-1")
            )
        # a delete: its tombstone follows it on the same partition and is no change
        writer.write(ChangeEvent(Op.DELETE, SCHEMA, (3,), (3, "n3"), None, start.at_row(20), 1, "0-1-1"))
        writer.write(ChangeEvent(Op.CREATE, SCHEMA, (3,), None, (3, "again"), start.at_row(21), 1, "0-1-1"))
        end = TransactionEnd("0-1-1", start.at_row(21), 22, 1)
        writer.write(end)
        writer.commit(end.restart)
        reader.start()
        chunks: list[ChangeChunk] = []
        deadline = time.monotonic() + 60
        while sum(len(c) for c in chunks) < 22 and time.monotonic() < deadline:
            chunks += reader.poll_chunks(10_000, 0.5)
        assert sum(len(c) for c in chunks) == 22
        for chunk in chunks:
            assert chunk.partition.startswith(f"{pipeline}.speedsink.items:")
            assert chunk.next_offsets == sorted(set(chunk.next_offsets))
            events = chunk.events()
            columns = chunk.columns()
            assert columns is not None
            assert columns.position.to_pylist() == [e.position.to_string() for e in events]
            assert [e.op.value for e in events] == columns.op.to_pylist()
        keyed = [(e.key, e.op) for c in chunks for e in c.events() if e.key == (3,)]
        assert keyed == [((3,), Op.CREATE), ((3,), Op.DELETE), ((3,), Op.CREATE)]
        # the tombstone after the delete took an offset: the next change's offset skips it
        three = next(c for c in chunks if any(e.key == (3,) for e in c.events()))
        at = [i for i, e in enumerate(three.events()) if e.key == (3,)]
        assert three.next_offsets[at[2]] == three.next_offsets[at[1]] + 2
    finally:
        reader.close()
        writer.close()
