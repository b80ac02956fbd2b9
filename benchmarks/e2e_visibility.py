"""From a Kafka commit's return to a read_committed consumer's poll: where `commit_to_polled` goes.

A transactional producer configured as `cdc run`'s (``producer_config``) writes ``--rate`` messages a
second into a fresh one-partition topic, ``--per-tick`` messages every 10 ms, and commits every
``--ticks`` ticks; it keeps, per transaction, when its commit was called and when it returned. Consumer
processes read the topic from its start and keep, per transaction, when its first message came out of
``consume()``: read_committed ones configured as `cdc sink`'s (``reader_settings``), one per
``--fetch-wait`` value, all at once (so they see the same broker at the same moment), and one
read_uncommitted (its messages arrive before the commit: how long a plain fetch takes).

Printed per consumer: ``visible - commit returned`` (ms) mean / p50 / p90 / p99 / max, and how many
transactions arrived before their commit returned (the markers can be written before the EndTxn
response reaches the producer). And the CPU-us per message produced of the producer, each consumer
and (``--broker-pid``) the broker, over the producing window: to A/B client settings by what they cost
the broker at capture's commit cadence (``--consumer-setting`` for the read_committed consumers).

    python -m benchmarks.e2e_visibility --seconds 20 --fetch-wait 100 --fetch-wait 10
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from benchmarks.e2e_cpu import sample as cpu_sample
from benchmarks.e2e_probes import quantile
from cdc.config.models import KafkaStreamConfig
from cdc.stream.kafka_clients import producer_config
from cdc.stream.kafka_reader import reader_settings

TICK_S = 0.01


def _consume(bootstrap: str, topic: str, settings: dict[str, str], out: Any, stop: Any, ready: Any) -> None:
    """In its own process: {txn: first arrival} into ``out`` when ``stop`` is set, then its CPU
    seconds over the producing window (``stop`` set, -1 for its start)."""
    config = KafkaStreamConfig(bootstrap_servers=bootstrap)
    conf = reader_settings(config, f"vis-{uuid.uuid4().hex}")
    conf.pop("logger", None)
    conf.update(settings)
    conf["auto.offset.reset"] = "earliest"
    conf.pop("partition.assignment.strategy", None)
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    first: dict[int, float] = {}
    ready.set()
    cpu_start = time.process_time()
    try:
        while not stop.is_set():
            messages = consumer.consume(1, timeout=0.05)
            if messages:
                messages += consumer.consume(10_000, timeout=0)
            now = time.time()
            for msg in messages:
                key = msg.key()
                if msg.error() or not key:
                    continue
                first.setdefault(int(key), now)
    finally:
        cpu = time.process_time() - cpu_start
        consumer.close()
        out.put(first)
        out.put(cpu)


def run(
    bootstrap: str,
    seconds: float,
    rate: int,
    ticks: int,
    fetch_waits: list[int],
    producer_settings: dict[str, str] | None = None,
    checkpoint: str = "late",
    consumer_settings: dict[str, str] | None = None,
    uncommitted: bool = True,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """``checkpoint``: "late" produces one record to a second topic just before each commit, as
    `cdc run` writes its checkpoint; "early" also one as the transaction's first record (the second
    partition is then in the transaction before the commit); "none" no second topic."""
    topic = f"hw-vis-{uuid.uuid4().hex[:8]}"
    marks = f"{topic}-cp"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for name in (topic, marks):
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(30)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    arms = {f"rc wait={w}": {"fetch.wait.max.ms": str(w), **(consumer_settings or {})} for w in fetch_waits}
    if uncommitted:
        arms["uncommitted"] = {"isolation.level": "read_uncommitted"}
    procs = []
    for name, settings in arms.items():
        results, ready = ctx.Queue(), ctx.Event()
        proc = ctx.Process(
            target=_consume, args=(bootstrap, topic, settings, results, stop, ready), daemon=True
        )
        proc.start()
        procs.append((name, proc, results, ready))
    for _name, _proc, _out, ready in procs:
        ready.wait(30)
    conf = producer_config(KafkaStreamConfig(bootstrap_servers=bootstrap), f"vis-{uuid.uuid4().hex[:8]}")
    conf.pop("logger", None)  # librdkafka's own lines on stderr, with their times (debug=eos)
    conf.update(producer_settings or {})
    producer = Producer(conf)
    producer.init_transactions(30)
    per_tick = max(rate * TICK_S, 1)
    value = b"x" * 300
    called: dict[int, float] = {}
    done: dict[int, float] = {}
    time.sleep(2)  # the consumers' assignment
    broker_before = cpu_sample(broker_pid)
    producer_cpu = time.process_time()
    started = time.monotonic()
    txn, tick = 0, 0
    producer.begin_transaction()
    fresh = True
    while time.monotonic() - started < seconds:
        due = started + tick * TICK_S
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if fresh and checkpoint == "early":
            producer.produce(marks, b"{}", b"cp", partition=0)
        fresh = False
        for _ in range(int(per_tick)):
            producer.produce(topic, value, str(txn).encode())
        producer.poll(0)
        tick += 1
        if tick % ticks == 0:
            if checkpoint != "none":
                producer.produce(marks, value, b"cp", partition=0)
            called[txn] = time.time()
            producer.commit_transaction(30)
            fresh = True
            done[txn] = time.time()
            txn += 1
            producer.begin_transaction()
    producer.abort_transaction(30)
    time.sleep(1)
    producer_cpu = time.process_time() - producer_cpu
    broker_after = cpu_sample(broker_pid)
    stop.set()
    messages = tick * int(per_tick)
    out: dict[str, Any] = {"topic": topic, "transactions": txn, "commit_ms": _stats(done, called)}
    # CPU-us per message produced (the window ends 1 s after the last commit)
    cpu: dict[str, float] = {"producer": producer_cpu / messages * 1e6}
    if broker_before is not None and broker_after is not None:
        cpu["broker"] = (broker_after.cpu_s - broker_before.cpu_s) / messages * 1e6
    for name, proc, queue, _ready in procs:
        first = queue.get(timeout=30)
        cpu[name] = queue.get(timeout=30) / messages * 1e6
        proc.join(10)
        out[name] = _stats(first, done)
        out[name]["missing"] = sum(1 for t in done if t not in first)
    out["cpu_us_per_message"] = cpu
    admin.delete_topics([topic, marks])
    return out


def _stats(later: dict[int, float], earlier: dict[int, float]) -> dict[str, float]:
    gaps = [(later[t] - earlier[t]) * 1000 for t in earlier if t in later]
    if not gaps:
        return {"n": 0}
    return {
        "n": len(gaps),
        "mean": sum(gaps) / len(gaps),
        "p50": quantile(gaps, 0.5),
        "p90": quantile(gaps, 0.9),
        "p99": quantile(gaps, 0.99),
        "max": max(gaps),
        "before": sum(1 for g in gaps if g < 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=2, help="ticks of 10 ms per transaction")
    parser.add_argument("--fetch-wait", type=int, action="append", default=[])
    parser.add_argument("--checkpoint", choices=("late", "early", "none"), default="late")
    parser.add_argument("--producer-setting", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--consumer-setting", action="append", default=[], metavar="KEY=VALUE", help="read_committed ones'"
    )
    parser.add_argument("--no-uncommitted", action="store_true", help="no read_uncommitted consumer")
    parser.add_argument("--broker-pid", type=int, help="the broker's CPU per message (schedstat)")
    args = parser.parse_args(argv)
    settings = dict(s.split("=", 1) for s in args.producer_setting)
    out = run(
        args.bootstrap,
        args.seconds,
        args.rate,
        args.ticks,
        args.fetch_wait or [100],
        settings,
        args.checkpoint,
        dict(s.split("=", 1) for s in args.consumer_setting),
        not args.no_uncommitted,
        args.broker_pid,
    )
    for name, value in out.items():
        if isinstance(value, dict) and value.get("n"):
            cells = " / ".join(f"{value[k]:.1f}" for k in ("mean", "p50", "p90", "p99", "max"))
            extra = f", before {value['before']:.0f}, missing {value.get('missing', 0)}"
            print(f"{name:<16} n={value['n']:.0f} {cells}{extra}", file=sys.stderr)
    cpu = " ".join(f"{k}={v:.1f}" for k, v in out["cpu_us_per_message"].items())
    print(f"CPU-us per message: {cpu} (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
