"""End to end, MariaDB -> Kafka -> PostgreSQL: latency at a fixed source rate, and the highest rate held.

``cdc run`` and ``cdc sink`` run as real subprocesses with a config pointing at the dev stack. A paced
writer inserts rows every 10 ms (one multi-row transaction per tick) and keeps each row's write time
(``time.time()`` just before the INSERT, also stored in the ``written_at DATETIME(6)`` column); a poller
reads ``max(id)`` of the PostgreSQL table every 20 ms. Ids are written in order into one partition and
applied in order, so every id up to the max has arrived: its latency is the poll's time minus its write
time (the 20 ms poll adds up to 20 ms). The daemons' peak RSS is their ``VmHWM``, read while they run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pymysql
from confluent_kafka import Consumer

from benchmarks.child import peak_rss_mb
from cdc.devstack.connections import StackConnections

# each run's own database, <DB>_<pipeline>: two runs at once (several engineers share the machine)
# dropped each other's table under a shared name
DB = "hw_bench_e2e"
TICK_S = 0.01
_MAX_ROWS = 5_000


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
    # the sink half: from visible in Kafka to committed in PostgreSQL, per id the probe saw first
    kafka_at: dict[int, float] = field(default_factory=dict)
    sink_half: list[tuple[float, float]] = field(default_factory=list)  # (arrival time, latency)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _config(stack: StackConnections, name: str, schema: str, state: Path, server_id: int, db: str) -> str:
    m, k, p = stack.mariadb, stack.kafka, stack.postgres
    return f"""name: {name}
source:
  type: mariadb
  host: {m.host}
  port: {m.port}
  user: {m.user}
  password: ${{BENCH_SOURCE_PASSWORD}}
  server_id: {server_id}
  tables: ["{db}.*"]
stream:
  type: kafka
  bootstrap_servers: {k.bootstrap_servers}
sinks:
  - type: sql
    url: postgresql+psycopg://{p.user}:${{BENCH_PG_PASSWORD}}@{p.host}:{p.port}/{p.database}
    schema: {schema}
state_dir: {state}
"""


def _writer(
    stack: StackConnections, clock: Clock, plan: list[tuple[int, float]], stop: threading.Event, db: str
) -> None:
    """Writes ``plan`` (rate, seconds) steps, one multi-row transaction per tick."""
    m = stack.mariadb
    conn = pymysql.connect(
        host=m.host, port=m.port, user=m.root_user, password=m.root_password, autocommit=True
    )
    try:
        with conn.cursor() as cur:
            for rate, seconds in plan:
                started = time.monotonic()
                sent = 0
                while not stop.is_set():
                    elapsed = time.monotonic() - started
                    if elapsed >= seconds:
                        break
                    # at most _MAX_ROWS a statement: a writer that fell behind (an 80k/s step on a busy
                    # machine) built one INSERT over max_allowed_packet and the run died
                    due = min(int(rate * elapsed) - sent, _MAX_ROWS)
                    if due <= 0:
                        time.sleep(TICK_S / 2)
                        continue
                    now = time.time()
                    stamp = (
                        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}"
                    )
                    ids = range(clock.next_id, clock.next_id + due)
                    values = ",".join(
                        f"({i}, '{stamp}', UNHEX(SHA1({i})), {i % 100000}.{i % 10000:04d}, 'edit {i}')"
                        for i in ids
                    )
                    with clock.lock:
                        for i in ids:
                            clock.written[i] = now
                            clock.written_kafka[i] = now
                    cur.execute(f"INSERT INTO {db}.edit VALUES {values}")
                    clock.next_id += due
                    sent += due
    finally:
        conn.close()


def _kafka_probe(stack: StackConnections, topic: str, clock: Clock, stop: threading.Event) -> None:
    """The capture half of the latency: each id's arrival in Kafka (read_committed, as `cdc sink`
    reads), so a report can say which half the end-to-end latency comes from."""
    consumer = Consumer(
        {"bootstrap.servers": stack.kafka.bootstrap_servers, "group.id": f"probe-{uuid.uuid4().hex}",
         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
         "topic.metadata.refresh.interval.ms": 1000}
    )  # fmt: skip
    try:
        consumer.subscribe([topic])
        while not stop.is_set():
            messages = consumer.consume(10_000, timeout=0.005)
            now = time.time()
            found = []
            for msg in messages:
                value = msg.value()
                if msg.error() or not value:
                    continue
                after = orjson.loads(value).get("after")
                if after is not None:
                    found.append(int(after["id"]))
            if found:
                with clock.lock:
                    for i in found:
                        written = clock.written_kafka.pop(i, None)
                        if written is not None:
                            clock.in_kafka.append((now, now - written))
                            clock.kafka_at[i] = now
    finally:
        consumer.close()


def _poller(stack: StackConnections, schema: str, clock: Clock, stop: threading.Event) -> None:
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
                for i in range(clock.arrived_upto + 1, top + 1):
                    written = clock.written.pop(i, None)
                    if written is not None:
                        clock.latencies.append((now, now - written))
                    seen = clock.kafka_at.pop(i, None)
                    if seen is not None:
                        clock.sink_half.append((now, now - seen))
                clock.arrived_upto = max(clock.arrived_upto, top)
            time.sleep(0.02)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _cdc(
    cmd: str, config: Path, env: dict[str, str], log: Path, tree: Path | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    if tree is not None:
        # ``python -m`` from the other checkout: its packages come first on sys.path, ahead of the
        # editable install's (an A/B of two commits, as benchmarks.speedsink_bench --base does)
        return subprocess.Popen(
            [sys.executable, "-m", "cdc.cli", cmd, "-c", str(config)],
            env={**env, "PYTHONPATH": str(tree)},
            cwd=tree,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    exe = Path(sys.executable).with_name("cdc")
    return subprocess.Popen([str(exe), cmd, "-c", str(config)], env=env, stdout=out, stderr=subprocess.STDOUT)


def run(
    stack: StackConnections,
    rate: int,
    seconds: float,
    steps: list[int],
    step_seconds: float,
    tree: Path | None = None,
) -> dict[str, Any]:
    name = f"e2e{uuid.uuid4().hex[:8]}"
    db = f"{DB}_{name}"
    m = stack.mariadb
    root = pymysql.connect(host=m.host, port=m.port, user=m.root_user, password=m.root_password)
    with root as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(
            f"CREATE TABLE {db}.edit (id BIGINT UNSIGNED NOT NULL PRIMARY KEY,"
            " written_at DATETIME(6) NOT NULL, sha1 VARBINARY(32), score DECIMAL(10,4), comment TEXT)"
        )
    tmp = Path(tempfile.mkdtemp(prefix="hw-bench-e2e-"))
    config = tmp / "pipeline.yaml"
    config.write_text(
        _config(stack, name, name, tmp / "state", random.randrange(100_000_000, 2_100_000_000), db)
    )
    env = {**os.environ, "BENCH_SOURCE_PASSWORD": m.password, "BENCH_PG_PASSWORD": stack.postgres.password}
    capture = _cdc("run", config, env, tmp / "run.log", tree)
    sink = _cdc("sink", config, env, tmp / "sink.log", tree)
    clock = Clock()
    stop = threading.Event()
    poller = threading.Thread(target=_poller, args=(stack, name, clock, stop), daemon=True)
    poller.start()
    probe = threading.Thread(target=_kafka_probe, args=(stack, f"{name}.{db}.edit", clock, stop), daemon=True)
    probe.start()
    result: dict[str, Any] = {"pipeline": name, "rate": rate, "seconds": seconds}
    peaks = {"cdc_run": 0.0, "cdc_sink": 0.0}

    def sample() -> None:
        for key, proc in (("cdc_run", capture), ("cdc_sink", sink)):
            peaks[key] = max(peaks[key], peak_rss_mb(proc.pid) or 0.0)

    try:
        # warm-up: the first row makes the sink create its table; wait until it is there
        # (a row written before `cdc run` took its starting position never arrives: write a few
        # rows every 0.3 s until one does; the poller then counts the earlier ones as arrived)
        deadline = time.monotonic() + 90
        while not clock.arrived_upto and time.monotonic() < deadline:
            if capture.poll() is not None or sink.poll() is not None:
                raise RuntimeError(f"a daemon exited early; logs in {tmp}")
            _writer(stack, clock, [(200, 0.02)], stop, db)
            time.sleep(0.3)
        if not _drain(clock, 30):
            raise RuntimeError(f"warm-up rows never reached PostgreSQL; logs in {tmp}")
        clock.latencies.clear()
        clock.sink_half.clear()
        clock.in_kafka.clear()
        started = time.time()
        _writer(stack, clock, [(rate, seconds)], stop, db)
        _drain(clock, 30)
        sample()
        lat = [latency for at, latency in clock.latencies if at >= started]
        result.update(
            changes=len(lat),
            p50_s=_quantile(lat, 0.5),
            p99_s=_quantile(lat, 0.99),
            max_s=max(lat, default=0.0),
        )
        in_kafka = [latency for at, latency in clock.in_kafka if at >= started]
        result["kafka"] = {"p50_s": _quantile(in_kafka, 0.5), "p99_s": _quantile(in_kafka, 0.99)}
        sink_half = [latency for at, latency in clock.sink_half if at >= started]
        result["sink"] = {"p50_s": _quantile(sink_half, 0.5), "p99_s": _quantile(sink_half, 0.99)}
        sustained = 0
        result["steps"] = []
        for step in steps:
            clock.latencies.clear()
            clock.in_kafka.clear()
            begun = time.monotonic()
            _writer(stack, clock, [(step, step_seconds)], stop, db)
            wrote_s = time.monotonic() - begun
            ended = time.time()
            drained = _drain(clock, 30)
            sample()
            tail = [lat for at, lat in clock.latencies if at >= ended - step_seconds / 2]
            tail_kafka = [lat for at, lat in clock.in_kafka if at >= ended - step_seconds / 2]
            catch_up = max((at for at, _ in clock.latencies), default=ended) - ended
            ok = drained and catch_up <= 2.0 and wrote_s <= step_seconds * 1.1
            result["steps"].append(
                {
                    "rate": step,
                    "p99_s": _quantile(tail, 0.99),
                    "catch_up_s": catch_up,
                    "held": ok,
                    "kafka_p99_s": _quantile(tail_kafka, 0.99),
                    "wrote_s": wrote_s,
                }
            )
            if not ok:
                break
            sustained = step
        result["max_sustained_rate"] = sustained
        result["peak_rss_mb"] = dict(peaks)
    finally:
        stop.set()
        for proc in (capture, sink):
            proc.send_signal(signal.SIGTERM)
        for proc in (capture, sink):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        with pymysql.connect(host=m.host, port=m.port, user=m.root_user, password=m.root_password) as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
    result["logs"] = str(tmp)
    return result


def _drain(clock: Clock, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with clock.lock:
            if not clock.written:
                return True
        time.sleep(0.02)
    return False


def main(argv: list[str] | None = None) -> int:
    """Only the end-to-end part: ``python -m benchmarks.e2e [--rate 10000] [--seconds 20] [--steps ...]``."""
    import argparse
    import json

    from cdc.devstack.connections import default_state_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--steps", default="10000,20000,40000,80000,100000")
    parser.add_argument("--step-seconds", type=float, default=10)
    parser.add_argument("--tree", type=Path, help="run `cdc run` and `cdc sink` from this checkout")
    args = parser.parse_args(argv)
    steps = [int(x) for x in args.steps.split(",") if x]
    stack = StackConnections.read(default_state_dir())
    tree = args.tree.resolve() if args.tree else None
    result = run(stack, args.rate, args.seconds, steps, args.step_seconds, tree)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
