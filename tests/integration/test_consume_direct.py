"""`cdc sink`'s table messages read straight from librdkafka (cdc/stream/consume_direct.py) against
confluent_kafka's consume(), on the real broker: the same messages per partition (committed
transactions, tombstones, an aborted transaction between them, the end-of-partition marks), and a
cooperative rebalance between two readers of one group while both hold prefetched messages: each
message is handed out exactly once, and a reader returns nothing of a partition after its revoke."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from cdc.config.models import KafkaStreamConfig
from cdc.devstack.connections import StackConnections
from cdc.stream import KafkaStreamWriter
from cdc.stream.kafka_reader import KafkaChangeReader
from tests.integration.test_consume_runs import _aborted, _committed

PARTITIONS = 3


def _drain(
    reader: KafkaChangeReader, partitions: int, limit: int
) -> dict[str, tuple[list[bytes], list[int]]]:
    """Every message up to each partition's end, per partition, in batches of at most ``limit``."""
    got: dict[str, tuple[list[bytes], list[int]]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for chunk in reader.poll_chunks(limit, 0.2):
            values, offsets = got.setdefault(chunk.partition, ([], []))
            values += chunk.values
            offsets += chunk.next_offsets
        if len(reader.assigned) == partitions and reader.assigned <= reader.at_end:
            return got
    raise AssertionError(f"not at the end within 60 s: {reader.assigned} {reader.at_end}")


def test_the_direct_path_reads_what_consume_reads(
    stack: StackConnections, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = f"consume{uuid.uuid4().hex[:8]}"
    bootstrap = stack.kafka.bootstrap_servers
    config = KafkaStreamConfig(bootstrap_servers=bootstrap, partitions=PARTITIONS)
    writer = KafkaStreamWriter(config, pipeline, random.randrange(7200, 7300))
    topic = f"{pipeline}.speedsink.items"
    readers: list[KafkaChangeReader] = []
    try:
        writer.start()
        _committed(writer, 1, range(0, 30), delete=4)
        _aborted(bootstrap, topic)
        _committed(writer, 2, range(30, 45), delete=31)
        direct = KafkaChangeReader(config, pipeline, lambda parts: {}, group_id=f"consume-{uuid.uuid4().hex}")
        readers.append(direct)
        direct.start()
        assert direct._raw is not None, "the direct path was not taken (a silent fallback)"
        monkeypatch.setenv("HEADWATER_CONSUME_DIRECT", "0")
        plain = KafkaChangeReader(config, pipeline, lambda parts: {}, group_id=f"consume-{uuid.uuid4().hex}")
        readers.append(plain)
        plain.start()
        assert plain._raw is None
        for limit in (7, 10_000):  # batches that end inside partitions, and whole ones
            got, want = _drain(direct, PARTITIONS, limit), _drain(plain, PARTITIONS, limit)
            assert got == want
            assert direct.at_end == plain.at_end == {f"{topic}:{p}" for p in range(PARTITIONS)}
            values = [v for vs, _o in got.values() for v in vs]
            assert len(values) == 30 + 1 + 15 + 1  # the changes: no tombstone, nothing aborted
            assert not any(b"aborted" in v for v in values)
            # the aborted messages and the markers left gaps in every partition's offsets
            assert all(max(o) > len(o) + 1 for _v, o in got.values())
            if limit == 7:  # again from the start: a second assignment of the same partitions
                for reader in readers:
                    reader.close()
                readers.clear()
                monkeypatch.delenv("HEADWATER_CONSUME_DIRECT")
                direct = KafkaChangeReader(config, pipeline, lambda parts: {})
                readers.append(direct)
                direct.start()
                monkeypatch.setenv("HEADWATER_CONSUME_DIRECT", "0")
                plain = KafkaChangeReader(
                    config, pipeline, lambda parts: {}, group_id=f"c-{uuid.uuid4().hex}"
                )
                readers.append(plain)
                plain.start()
    finally:
        for reader in readers:
            reader.close()
        writer.close()


def test_a_rebalance_hands_each_message_out_once(stack: StackConnections) -> None:
    """Reader A takes every partition and reads in small polls (its direct queue holds prefetched
    messages of all of them); B joins the group: A's revoke records what it consumed (as `cdc sink`
    commits it) and B starts there. Every message is read once in all, in order per partition."""
    pipeline = f"consume{uuid.uuid4().hex[:8]}"
    partitions = 4
    config = KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers, partitions=partitions)
    writer = KafkaStreamWriter(config, pipeline, random.randrange(7200, 7300))
    group = f"consume-{uuid.uuid4().hex}"
    committed: dict[str, int] = {}  # what a revoke handed over: the next offset to read
    read: dict[str, list[int]] = {}  # per partition, the offsets read by either reader
    consumed: dict[str, dict[str, int]] = {"a": {}, "b": {}}
    revoked: set[str] = set()

    def offsets(parts: list[str]) -> dict[str, int]:
        return {p: committed[p] for p in parts if p in committed}

    a = KafkaChangeReader(config, pipeline, offsets, group_id=group)
    b = KafkaChangeReader(config, pipeline, offsets, group_id=group)

    unread: list[int] = []  # per revoked partition, messages it held that A had not read

    def on_revoke_a(names: set[str], lost: bool) -> None:
        assert not lost
        ends = a.watermarks(sorted(names))
        for name in names:
            if name in consumed["a"]:
                committed[name] = consumed["a"][name]
            unread.append(ends[name].high - consumed["a"].get(name, 0))
        revoked.update(names)

    a.on_revoke = on_revoke_a

    def take(label: str, reader: KafkaChangeReader, limit: int) -> int:
        got = 0
        for chunk in reader.poll_chunks(limit, 0.05):
            if label == "a":
                assert chunk.partition not in revoked, f"A read {chunk.partition} after its revoke"
            read.setdefault(chunk.partition, []).extend(o - 1 for o in chunk.next_offsets)
            consumed[label][chunk.partition] = chunk.next_offsets[-1]
            got += len(chunk)
        return got

    try:
        writer.start()
        for seq in range(1, 5):
            _committed(writer, seq, range(seq * 1000, seq * 1000 + 100), delete=None)
        a.start()
        assert a._raw is not None
        deadline = time.monotonic() + 90
        count = 0
        while count < 400 and time.monotonic() < deadline:  # A has read part of every partition
            count += take("a", a, 50)
        for seq in range(5, 9):
            _committed(writer, seq, range(seq * 1000, seq * 1000 + 100), delete=None)
        total = 8 * 100
        time.sleep(0.5)  # A's fetcher queues them (our direct queue)
        b.start()
        while count < total and time.monotonic() < deadline:
            # A reads one at a time until B has its part: the revoke finds most of it queued, unread
            count += take("a", a, 1 if not b.assigned else 50)
            count += take("b", b, 50)
        assert count == total
        assert revoked, "no partition moved to B"
        # A's queue held messages of what it gave away (prefetched, unread): none of them came out
        assert sum(unread) > 8 * len(unread)  # more than the 8 commit markers per partition
        assert b.assigned, "B got no partition"
        for name, offsets_read in read.items():
            assert offsets_read == sorted(set(offsets_read)), f"{name}: read twice or out of order"
    finally:
        a.close()
        b.close()
        writer.close()
