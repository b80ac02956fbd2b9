"""The end-to-end benchmark's observers (benchmarks/e2e.py): the clock of write and arrival times, the
read_committed probe of the Kafka topic (in its own process), and the PostgreSQL poller."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import orjson
import psycopg
from confluent_kafka import Consumer

from benchmarks.e2e_cpu import local_ports
from cdc.devstack.connections import StackConnections

POLL_S = 0.005  # the PostgreSQL poller's period: up to this much is the measurement's own


@dataclass
class Clock:
    """Write times by id, and arrival latencies as the poller sees ids arrive."""

    written: dict[int, float] = field(default_factory=dict)
    written_kafka: dict[int, float] = field(default_factory=dict)  # the same, for the Kafka probe
    arrived_upto: int = 0
    next_id: int = 1
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (arrival time, latency)
    # the capture half: when each id became visible to a read_committed consumer of its topic
    in_kafka: list[tuple[float, float]] = field(default_factory=list)  # (arrival time, latency)
    # ... split at the message's timestamp (when `cdc run` produced it): (written -> produced,
    # produced -> visible), by the id's arrival time in Kafka
    produced: list[tuple[float, float, float]] = field(default_factory=list)
    # per change, for the decomposition: every message the probe saw, in offset order (id, visible,
    # produced); when each id was written and first seen in PostgreSQL
    seq: list[tuple[int, float, float]] = field(default_factory=list)
    write_time: dict[int, float] = field(default_factory=dict)
    source_commit: dict[int, float] = field(default_factory=dict)  # when its INSERT returned
    seen_at: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def kafka_probe(bootstrap: str, topic: str, out: Any, stop: Any, sparse: Any = None) -> None:
    """In its own process: each message of ``topic`` as it becomes visible to a read_committed
    consumer (as `cdc sink` reads), put on ``out`` per consume as (visible, ids, produced, upto). In
    the bench's own process it lagged `cdc sink` by ~30 ms on average at 10k/s (the writer's and the
    poller's threads, under the GIL), which the split between the halves then carried.

    While ``sparse`` is set (the rate steps), only each consume's last message is read (``upto``
    True): ids are written in order into one partition, so every id up to it was visible by then,
    as the poller reads PostgreSQL. Reading every key took ~1 us per change of a process of its own
    (at 85k/s the benchmark used 0.41 of the 2 cores), which the steps' pipeline needs."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}",
         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
         "topic.metadata.refresh.interval.ms": 1000}
    )  # fmt: skip
    try:
        consumer.subscribe([topic])
        while not stop.is_set():
            # the first message as soon as it arrives, then what came with it (consume(10_000, t)
            # waits out t unless 10,000 arrive: 5 ms added to every "visible" time)
            messages = consumer.consume(1, timeout=0.05)
            if messages:
                messages += consumer.consume(10_000, timeout=0)
            now = time.time()
            ids: list[int] = []
            produced: list[float] = []
            upto = sparse is not None and sparse.is_set()
            for msg in reversed(messages) if upto else messages:
                key = msg.key()
                if msg.error() or not key or not msg.value():
                    continue
                # the key ({"id": N}), not the value: a fifth of the bytes to parse
                ids.append(orjson.loads(key)["id"])
                produced.append(msg.timestamp()[1] / 1000)
                if upto:
                    break
            if ids:
                # two flat lists, not a tuple per message: a third of the pickling on both sides
                out.put((now, ids, produced, upto))
    finally:
        consumer.close()


def probe_reader(found: Any, clock: Clock, stop: threading.Event) -> None:
    """The probe's findings into ``clock`` (in this process: a few puts a second, each
    ``(visible, ids, produced, upto)``: when the consume returned, each message's id and timestamp;
    with ``upto``, the last message only, and every id up to it was visible then)."""
    upto_id = 0  # every id up to this one has been seen
    while not stop.is_set():
        try:
            batch = found.get(timeout=0.05)
        except queue.Empty:
            continue
        now, ids, produced, upto = batch
        with clock.lock:
            pop = clock.written_kafka.pop
            if upto:
                arrived = range(upto_id + 1, ids[-1] + 1)
                clock.in_kafka.extend(
                    [(now, now - w) for w in map(pop, arrived, repeat(None)) if w is not None]
                )
            else:
                clock.seq.extend(zip(ids, repeat(now, len(ids)), produced, strict=True))
                for written, made in zip(map(pop, ids, repeat(None)), produced, strict=True):
                    if written is not None:
                        clock.in_kafka.append((now, now - written))
                        clock.produced.append((now, made - written, now - made))
            upto_id = max(upto_id, ids[-1])


def poller(stack: StackConnections, schema: str, clock: Clock, stop: threading.Event) -> None:
    p = stack.postgres
    with psycopg.connect(
        host=p.host, port=p.port, user=p.user, password=p.password, dbname=p.database, autocommit=True
    ) as conn:
        while not stop.is_set():
            try:
                row = conn.execute(f'SELECT max(id) FROM "{schema}".edit').fetchone()
            except psycopg.errors.UndefinedTable:
                time.sleep(0.02)
                continue
            now = time.time()
            top = int(row[0]) if row and row[0] is not None else 0
            with clock.lock:
                arrived = range(clock.arrived_upto + 1, top + 1)
                if arrived:
                    # the same entries as a loop per id, in C where it can be (CPU the pipeline needs)
                    clock.seen_at.update(dict.fromkeys(arrived, now))
                    pop = clock.written.pop
                    clock.latencies.extend(
                        [(now, now - w) for w in map(pop, arrived, repeat(None)) if w is not None]
                    )
                clock.arrived_upto = max(clock.arrived_upto, top)
            time.sleep(POLL_S)


def sink_backends(stack: StackConnections, sink_pid: int) -> list[int]:
    """The pids of the PostgreSQL backends serving ``sink_pid``'s connections (by client port)."""
    ports = local_ports(sink_pid, stack.postgres.port)
    if not ports:
        return []
    p = stack.postgres
    with psycopg.connect(
        host=p.host, port=p.port, user=p.user, password=p.password, dbname=p.database, autocommit=True
    ) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", (ports,)
        ).fetchall()
    return [int(row[0]) for row in rows]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
