"""End to end, MariaDB -> Kafka -> PostgreSQL: latency at a fixed source rate, and the highest rate held.

``cdc run`` and ``cdc sink`` run as real subprocesses with a config pointing at the dev stack. A paced
writer inserts rows every 10 ms (one multi-row transaction per tick) and keeps each row's write time
(``time.time()`` just before the INSERT, also stored in the ``written_at DATETIME(6)`` column); a poller
reads ``max(id)`` of the PostgreSQL table every 5 ms. Ids are written in order into one partition and
applied in order, so every id up to the max has arrived: its latency is the poll's time minus its write
time (the poll adds up to 5 ms). The daemons' peak RSS is their ``VmHWM``, read while they run.

Where the latency goes (``parts``, change by change): a read_committed probe consumer, in its own
process, reads every message in offset order with its timestamp (set when `cdc run` produced it);
`cdc sink` runs with its per-batch timing lines on (``HEADWATER_SINK_TIMING=1``: logger
``cdc.sink.timing``); both read the one partition from its start, so the k-th message is the k-th
change of the sink's batches. Each change's hops: the INSERT's return (MariaDB's commit), produced
(binlog read, decode, produce), polled by `cdc sink` (the Kafka transaction's commit and the fetch),
handed to the sink thread (the wait for the batch before), taken up by it, committed in PostgreSQL,
seen by the poller. ``kafka`` (the capture half) is still the probe's view, an upper bound: it lags
`cdc sink` by ``parts.probe_lag_behind_sink``.

The highest rate held: each step writes at its rate for ``--step-seconds``; a step is held when the
writer sent 97% of its rows in the step's time, every change arrived, and no backlog built up: the
median latency of the changes written in the step's last second exceeds that of its second second by
at most HELD_GROWTH_S (a pipeline slower than the rate falls behind by a growing amount). Latency is
not part of "held" (the p99 is reported beside it). The search goes up the given steps until one is
not held, then tries the midpoint once (``--no-refine`` skips it). A step not held says which part
limited it: the writer (MariaDB, or this process, did not take the rows at the rate), capture (the
capture half grew by at least half the total's growth) or the sink.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pymysql
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from benchmarks.child import peak_rss_mb
from benchmarks.e2e_cpu import by_thread, cpu_per_change, kafka_pid, loadavg, sample_all, thread_shares
from benchmarks.e2e_cpu import sample as cpu_sample
from benchmarks.e2e_disk import DiskWatch, describe
from benchmarks.e2e_hops import latency_parts, print_parts
from benchmarks.e2e_probes import Clock, kafka_probe, poller, probe_reader, quantile, sink_backends
from benchmarks.e2e_stalls import StallSampler, annotate, gc_pauses, postgres_pids
from benchmarks.e2e_step_cpu import StepCpu
from benchmarks.e2e_step_cpu import describe as describe_cpu
from cdc.core.schemas import TableRef
from cdc.devstack.connections import KafkaConnection, StackConnections, default_state_dir
from cdc.stream.topics import TopicNames

# each run's own database, <DB>_<pipeline>: two runs at once (several engineers share the machine)
# dropped each other's table under a shared name
DB = "hw_bench_e2e"
TICK_S = 0.01
_MAX_ROWS = 5_000
# a step is held when the latency of its last second's changes (p50) exceeds its second second's by at
# most this: a pipeline a few percent slower than the rate grows its backlog by more in a 10 s step
HELD_GROWTH_S = 0.25


def _config(
    stack: StackConnections,
    name: str,
    schema: str,
    state: Path,
    server_id: int,
    db: str,
    sink_settings: tuple[str, ...] = (),
    stream_settings: tuple[str, ...] = (),
) -> str:
    extra = "".join(f"    {key}: {value}\n" for key, value in (s.split("=", 1) for s in sink_settings))
    # librdkafka properties for both daemons' clients (stream.properties), to try one
    props = "".join(f'    "{key}": "{value}"\n' for key, value in (s.split("=", 1) for s in stream_settings))
    props = f"  properties:\n{props}" if props else ""
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
{props}sinks:
  - type: sql
    url: postgresql+psycopg://{p.user}:${{BENCH_PG_PASSWORD}}@{p.host}:{p.port}/{p.database}
    schema: {schema}
{extra}state_dir: {state}
"""


def _writer(
    stack: StackConnections, clock: Clock, plan: list[tuple[int, float]], stop: threading.Event, db: str
) -> int:
    """Writes ``plan`` (rate, seconds) steps, one multi-row transaction per tick; returns the rows sent."""
    m = stack.mariadb
    conn = pymysql.connect(
        host=m.host, port=m.port, user=m.root_user, password=m.root_password, autocommit=True
    )
    total = 0
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
                    # dict.update of dict.fromkeys: the same entries at C speed (a Python loop over
                    # the ids was ~1 us per change of this process's CPU at 40k/s)
                    stamps = dict.fromkeys(ids, now)
                    with clock.lock:
                        clock.written.update(stamps)
                        clock.written_kafka.update(stamps)
                        clock.write_time.update(stamps)
                    # the rows made by the server from its sequence engine (the same row images as
                    # a VALUES list): building 100k rows/s of VALUES text took the writer's core
                    cur.execute(
                        f"INSERT INTO {db}.edit SELECT seq, '{stamp}', UNHEX(SHA1(seq)),"
                        " CONCAT(seq % 100000, '.', LPAD(seq % 10000, 4, '0')), CONCAT('edit ', seq)"
                        f" FROM {db}.seq_{ids[0]}_to_{ids[-1]}"
                    )
                    done = time.time()
                    with clock.lock:
                        clock.source_commit.update(dict.fromkeys(ids, done))
                    clock.next_id += due
                    sent += due
                total += sent
    finally:
        conn.close()
    return total


def _pid_file(state_dir: Path, service: str) -> int | None:
    try:
        return int((state_dir / "pids" / f"{service}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cdc(
    cmd: str, config: Path, env: dict[str, str], log: Path, tree: Path | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    args = [cmd, "-c", str(config)]
    if tree is not None:
        # ``python -m`` from the other checkout: its packages come first on sys.path, ahead of the
        # editable install's (an A/B of two commits, as benchmarks.speedsink_bench --base does)
        return subprocess.Popen(
            [sys.executable, "-m", "cdc.cli", *args],
            env={**env, "PYTHONPATH": str(tree)},
            cwd=tree,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    exe = Path(sys.executable).with_name("cdc")
    return subprocess.Popen([str(exe), *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def run(
    stack: StackConnections,
    rate: int,
    seconds: float,
    steps: list[int],
    step_seconds: float,
    tree: Path | None = None,
    refine: bool = True,
    sink_settings: tuple[str, ...] = (),
    stream_settings: tuple[str, ...] = (),
    kafka_state: Path | None = None,
) -> dict[str, Any]:
    """``kafka_state``: the state directory of another stack whose broker to use (its pid for the CPU
    figures, its port from its server.properties): a private broker with other settings, to A/B them."""
    if kafka_state is not None:
        stack = replace(stack, kafka=KafkaConnection(_broker_address(kafka_state)))
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
        _config(
            stack,
            name,
            name,
            tmp / "state",
            random.randrange(100_000_000, 2_100_000_000),
            db,
            sink_settings,
            stream_settings,
        )
    )
    env = {**os.environ, "BENCH_SOURCE_PASSWORD": m.password, "BENCH_PG_PASSWORD": stack.postgres.password,
           "HEADWATER_SINK_TIMING": "1", "HEADWATER_CAPTURE_TIMING": "1"}  # fmt: skip
    capture = _cdc("run", config, env, tmp / "run.log", tree)
    sink = _cdc("sink", config, env, tmp / "sink.log", tree)
    clock = Clock()
    stop = threading.Event()
    polling = threading.Thread(target=poller, args=(stack, name, clock, stop), daemon=True)
    polling.start()
    spawn = multiprocessing.get_context("spawn")
    found, probe_stop, probe_sparse = spawn.Queue(), spawn.Event(), spawn.Event()
    probe = spawn.Process(
        target=kafka_probe,
        args=(stack.kafka.bootstrap_servers, f"{name}.{db}.edit", found, probe_stop, probe_sparse),
    )
    probe.start()
    threading.Thread(target=probe_reader, args=(found, clock, stop), daemon=True).start()
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
        clock.in_kafka.clear()
        clock.produced.clear()
        # what `cdc run`, `cdc sink` and the broker spent, and how long they waited for a core
        pids = {
            "cdc_run": capture.pid,
            "cdc_sink": sink.pid,
            "kafka": kafka_pid(kafka_state or default_state_dir()),
        }
        # the PostgreSQL backends of `cdc sink`'s connections: each batch is one of their transactions
        backends = sink_backends(stack, sink.pid)
        cpu_before = {name: cpu_sample(pid) for name, pid in pids.items()}
        cpu_before["pg_sink_backends"] = sample_all(backends)
        threads_before = {"cdc_run": by_thread(capture.pid), "cdc_sink": by_thread(sink.pid)}
        result["loadavg"] = [loadavg()]
        # how long an fsync took meanwhile (MariaDB's and PostgreSQL's commits wait on one)
        disk = DiskWatch(stack, default_state_dir())
        disk.start()
        # what every process did during the slow episodes (run-queue waits, the rest of the machine)
        processes = {
            "cdc_run": [capture.pid],
            "cdc_sink": [sink.pid],
            "kafka": [pids["kafka"] or 0],
            "mariadb": [_pid_file(default_state_dir(), "mariadb") or 0],
            "postgres": postgres_pids(_pid_file(default_state_dir(), "postgres")),
            "benchmark": [os.getpid(), probe.pid or 0],
        }
        stalls = StallSampler(processes)
        stalls.start()
        started = time.time()
        _writer(stack, clock, [(rate, seconds)], stop, db)
        _drain(clock, 30)
        ended = time.time()
        stalls.stop()
        cpu_after = {name: cpu_sample(pid) for name, pid in pids.items()}
        cpu_after["pg_sink_backends"] = sample_all(backends)
        threads_after = {"cdc_run": by_thread(capture.pid), "cdc_sink": by_thread(sink.pid)}
        result["loadavg"].append(loadavg())
        sample()
        lat = [latency for at, latency in clock.latencies if at >= started]
        result.update(
            changes=len(lat),
            p50_s=quantile(lat, 0.5),
            p99_s=quantile(lat, 0.99),
            max_s=max(lat, default=0.0),
        )
        in_kafka = [latency for at, latency in clock.in_kafka if at >= started]
        result["kafka"] = {"p50_s": quantile(in_kafka, 0.5), "p99_s": quantile(in_kafka, 0.99)}
        # the sink half: from visible to the probe to seen in PostgreSQL
        with clock.lock:
            sink_half = [
                clock.seen_at[i] - visible
                for i, visible, _ in clock.seq
                if visible >= started and i in clock.seen_at
            ]
        result["sink"] = {"p50_s": quantile(sink_half, 0.5), "p99_s": quantile(sink_half, 0.99)}
        result["parts"] = latency_parts(clock, tmp / "sink.log", started, ended, tmp / "run.log")
        result["disk"] = disk.stop(started, ended)
        annotate(
            result["parts"].get("episodes", []),
            stalls,
            gc_pauses({"cdc_run": tmp / "run.log", "cdc_sink": tmp / "sink.log"}),
            [(float(at), float(ms)) for at, ms in result["disk"].get("slow", [])],
        )
        print_parts(result["parts"], rate)
        result["cpu"] = cpu_per_change(cpu_before, cpu_after, len(lat), ended - started)
        # librdkafka's threads apart from Python's (all of Python's are named after the process)
        result["cpu_threads"] = {
            key: thread_shares(threads_before[key], threads_after[key], len(lat)) for key in threads_before
        }
        print(
            f"  load {result['loadavg'][0]:.1f} -> {result['loadavg'][1]:.1f}; CPU-us per change, cores,"
            " s waited for a core per CPU-s: "
            + "; ".join(
                f"{name} {c['cpu_us_per_change']:.1f} us, {c['cores']:.2f}, {c['runq_wait_per_cpu_s']:.1f}"
                for name, c in result["cpu"].items()
            ),
            file=sys.stderr,
        )
        print(f"  {describe(result['disk'])}", file=sys.stderr, flush=True)
        # the benchmark's own share apart from its Kafka probe's (a process of its own)
        watch = StepCpu({**processes, "benchmark": [os.getpid()], "probe": [probe.pid or 0]})
        # the steps need each change's capture half, not its hops: the probe reads less (see there)
        probe_sparse.set()
        result["steps"] = _steps(stack, clock, stop, db, steps, step_seconds, refine, sample, watch)
        held = [step["rate"] for step in result["steps"] if step["held"]]
        result["max_sustained_rate"] = max(held, default=0)
        result["peak_rss_mb"] = dict(peaks)
    finally:
        stop.set()
        probe_stop.set()
        probe.join(10)
        if probe.is_alive():
            probe.kill()
        for proc in (capture, sink):
            proc.send_signal(signal.SIGTERM)
        for proc in (capture, sink):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        with pymysql.connect(host=m.host, port=m.port, user=m.root_user, password=m.root_password) as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        _drop_topics(stack, name, db)
        _drop_schema(stack, name)
    result["logs"] = str(tmp)
    return result


def _drop_schema(stack: StackConnections, schema: str) -> None:
    """The sink's PostgreSQL schema (its table and position rows: ~380 MB after a 45 s run at 10k/s
    and its steps). Left behind, they grew the dev stack's database by gigabytes a day."""
    p = stack.postgres
    try:
        with psycopg.connect(
            host=p.host, port=p.port, user=p.user, password=p.password, dbname=p.database, autocommit=True
        ) as conn:
            conn.execute("SET lock_timeout = '10s'")  # a sink still connected: leave it, say so
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except psycopg.Error as exc:  # cleanup: say what was left, go on
        print(f"  schema {schema} not dropped: {exc}", file=sys.stderr)


def _drop_topics(stack: StackConnections, pipeline: str, db: str) -> None:
    """The run's own four topics. Left behind, they made the shared broker's topic count grow run by
    run (2,800 after a day of benchmarks), and `cdc sink`, subscribed by pattern, asks for every
    topic's metadata every topic.metadata.refresh.interval.ms (5 s): at 2,800 topics ~6-13 ms of the
    broker's CPU and ~5 ms of the consumer's per second (a private broker, 3 alternated pairs)."""
    names = TopicNames(pipeline)
    topics = [names.table(TableRef(db, "edit")), names.schema, names.checkpoints, names.transactions]
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers})
    for topic, future in admin.delete_topics(topics, operation_timeout=30).items():
        try:
            future.result(timeout=30)
        except (KafkaException, TimeoutError) as exc:  # cleanup: say what was left, go on
            error = exc.args[0] if exc.args else None
            if not (isinstance(error, KafkaError) and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                print(f"  topic {topic} not deleted: {exc}", file=sys.stderr)


def _step(
    stack: StackConnections,
    clock: Clock,
    stop: threading.Event,
    db: str,
    rate: int,
    seconds: float,
    watch: StepCpu | None = None,
) -> dict[str, Any]:
    """One step at ``rate``: held or not (see the module docstring), and which part limited it;
    with ``watch``, each process's CPU over the step's writing."""
    clock.latencies.clear()
    clock.in_kafka.clear()
    begun, began = time.monotonic(), time.time()
    if watch is not None:
        watch.start()
    sent = _writer(stack, clock, [(rate, seconds)], stop, db)
    wrote_s = time.monotonic() - begun
    cpu = watch.stop(sent, wrote_s) if watch is not None else {}
    ended = time.time()
    drained = _drain(clock, 15)

    def by_write_time(arrivals: list[tuple[float, float]], lo: float, hi: float) -> list[float]:
        return [lat for at, lat in arrivals if lo <= at - lat < hi]  # arrival - latency = write time

    # a pipeline slower than the rate builds a backlog: the latency of what was written in the step's
    # last second exceeds that of its second second by the backlog's age
    early, late = (
        by_write_time(clock.latencies, began + 1, began + 2),
        by_write_time(clock.latencies, ended - 1, ended),
    )
    early_k, late_k = (
        by_write_time(clock.in_kafka, began + 1, began + 2),
        by_write_time(clock.in_kafka, ended - 1, ended),
    )
    growth = quantile(late, 0.5) - quantile(early, 0.5) if early and late else float("inf")
    growth_k = quantile(late_k, 0.5) - quantile(early_k, 0.5) if early_k and late_k else float("inf")
    catch_up = max((at for at, _ in clock.latencies), default=ended) - ended
    kept_pace = sent >= 0.97 * rate * seconds
    held = kept_pace and drained and growth <= HELD_GROWTH_S
    if held:
        limit = "-"
    elif not kept_pace:
        limit = "writer"
    elif growth_k >= 0.5 * growth:
        limit = "capture"
    else:
        limit = "sink"
    return {
        "rate": rate,
        "held": held,
        "p99_s": quantile(late, 0.99),
        "kafka_p99_s": quantile(late_k, 0.99),
        "growth_s": growth,
        "kafka_growth_s": growth_k,
        "catch_up_s": catch_up,
        "sent_rate": sent / max(wrote_s, 1e-9),
        "wrote_s": wrote_s,
        "drained": drained,
        "limit": limit,
        "cpu": cpu,
        "loadavg": os.getloadavg()[0],
    }


def _steps(
    stack: StackConnections,
    clock: Clock,
    stop: threading.Event,
    db: str,
    steps: list[int],
    seconds: float,
    refine: bool,
    sample: Callable[[], None],
    watch: StepCpu | None = None,
) -> list[dict[str, Any]]:
    """The given steps in order until one is not held, then (``refine``) the midpoint between the
    last held and that one: each printed as it ends."""
    out: list[dict[str, Any]] = []
    if steps:
        print(
            f"steps of {seconds:g} s; held = the writer sent 97% of the step's rows in its time, every"
            " change arrived, and the latency (p50) of the changes written in the step's last second"
            f" exceeds that of its second second by <= {HELD_GROWTH_S * 1000:.0f} ms (no backlog built)",
            file=sys.stderr,
        )
    failed: int | None = None
    for rate in steps:
        step = _step(stack, clock, stop, db, rate, seconds, watch)
        sample()
        out.append(step)
        _print_step(step)
        if not step["held"]:
            failed = rate
            break
    held = [s["rate"] for s in out if s["held"]]
    if refine and failed is not None and held:
        mid = (max(held) + failed) // 2 // 1000 * 1000
        if max(held) < mid < failed:
            step = _step(stack, clock, stop, db, mid, seconds, watch)
            sample()
            out.append(step)
            _print_step(step)
    return out


def _print_step(step: dict[str, Any]) -> None:
    print(
        f"  {step['rate']:>7,}/s: {'held' if step['held'] else 'NOT held'}; latency growth"
        f" {step['growth_s'] * 1000:,.0f} ms (capture half {step['kafka_growth_s'] * 1000:,.0f} ms),"
        f" last second's p99 {step['p99_s'] * 1000:,.0f} ms (capture half {step['kafka_p99_s'] * 1000:,.0f}"
        f" ms), writer {step['sent_rate']:,.0f} rows/s, catch-up {step['catch_up_s']:.2f} s"
        + ("" if step["held"] else f"; limited by {step['limit']}"),
        file=sys.stderr,
        flush=True,
    )
    if step.get("cpu"):
        print(f"    load {step['loadavg']:.1f}; {describe_cpu(step['cpu'])}", file=sys.stderr, flush=True)


def _broker_address(state_dir: Path) -> str:
    props = (state_dir / "kafka" / "server.properties").read_text()
    listeners = next(line for line in props.splitlines() if line.startswith("listeners="))
    return listeners.split("PLAINTEXT://", 1)[1].split(",", 1)[0]


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
    parser.add_argument(
        "--no-refine", action="store_true", help="no midpoint step after the first step not held"
    )
    parser.add_argument(
        "--sink-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting added to the PostgreSQL sink's config (e.g. copy_threshold_rows=1), to try one",
    )
    parser.add_argument(
        "--stream-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka property for both daemons (stream.properties, e.g. retry.backoff.ms=10)",
    )
    parser.add_argument(
        "--kafka-state",
        type=Path,
        help="use the broker of the stack with this state directory (a private one, to A/B its settings)",
    )
    args = parser.parse_args(argv)
    steps = [int(x) for x in args.steps.split(",") if x]
    stack = StackConnections.read(default_state_dir())
    tree = args.tree.resolve() if args.tree else None
    refine, settings = not args.no_refine, tuple(args.sink_setting)
    streams = tuple(args.stream_setting)
    result = run(
        stack,
        args.rate,
        args.seconds,
        steps,
        args.step_seconds,
        tree,
        refine,
        settings,
        streams,
        args.kafka_state,
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
