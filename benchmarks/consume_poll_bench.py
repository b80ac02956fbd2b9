"""`cdc sink`'s polling thread alone: a captured pipeline's topics consumed and decoded to columns.

    taskset -c 1 .venv/bin/python -m benchmarks.consume_poll_bench --pipeline NAME [--rounds 3]
        [--large-prefetch] [--limit 5000] [--events]

What `cdc sink`'s loop (cdc/daemon/sink_runner.py) does on its polling thread, without the sink
thread: ``reader.poll_chunks(room, wait)`` then ``chunk.columns()`` (``--events``: the per-change
decode instead), batches of ``--limit`` changes. Per round, from the first poll that returned data
to the last: wall seconds, the thread's CPU (time.thread_time) and its split: consume() (CPU, and
its wall beyond its CPU: the wait for the fetcher), the chunking, the decode. Run pinned to one core
(taskset) to see what `cdc sink` sees in the benchmarks. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from typing import Any

from cdc.config.models import KafkaStreamConfig
from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.stream import message_chunks
from cdc.stream.kafka_reader import KafkaChangeReader


class _Clock:
    """Wall and thread CPU summed over the calls of one kind."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.calls = 0

    def add(self, wall: float, cpu: float) -> None:
        self.wall += wall
        self.cpu += cpu
        self.calls += 1


def _round(stream: KafkaStreamConfig, pipeline: str, args: argparse.Namespace) -> dict[str, Any]:
    reader = KafkaChangeReader(
        stream, pipeline, lambda parts: {}, group_id=f"consume-bench-{uuid.uuid4().hex}"
    )
    reader.start(large_prefetch=args.large_prefetch)
    consumer = reader._consumer
    assert consumer is not None
    clocks = {name: _Clock() for name in ("consume", "chunk", "decode")}
    real_consume = consumer.consume

    class _Timed:
        # confluent_kafka's Consumer cannot take attributes: the reader's handle is swapped instead
        def __getattr__(self, name: str) -> Any:
            return getattr(consumer, name)

        def consume(self, n: int = 1, timeout: float = -1) -> Any:
            w, c = time.perf_counter(), time.thread_time()
            out = real_consume(n, timeout=timeout)
            clocks["consume"].add(time.perf_counter() - w, time.thread_time() - c)
            return out

    reader._consumer = _Timed()  # type: ignore[assignment]
    raw: Any = getattr(reader, "_raw", None)
    if raw is not None:  # the direct path (cdc/stream/consume_direct.py): its reads count as consume

        class _TimedRaw:
            def __getattr__(self, name: str) -> Any:
                return getattr(raw, name)

            def consume(self, n: int, timeout_s: float) -> Any:
                w, c = time.perf_counter(), time.thread_time()
                out = raw.consume(n, timeout_s)
                clocks["consume"].add(time.perf_counter() - w, time.thread_time() - c)
                return out

        reader._raw = _TimedRaw()  # type: ignore[assignment]
    real_chunks = reader.chunk_messages

    def timed_chunks(messages: Any, state: Any) -> Any:
        w, c = time.perf_counter(), time.thread_time()
        out = real_chunks(messages, state)
        clocks["chunk"].add(time.perf_counter() - w, time.thread_time() - c)
        return out

    reader.chunk_messages = timed_chunks
    changes = chunks = polls = 0
    first: tuple[float, float] | None = None
    last = (0.0, 0.0)
    first_process = last_process = 0.0
    at_last: dict[str, tuple[float, float, int]] = {}
    idle_since = time.monotonic()
    pending = 0
    try:
        while True:
            room = max(args.limit - pending, 1)
            got = reader.poll_chunks(room, 0.2)
            if got:
                if first is None:
                    first = (time.perf_counter(), time.thread_time())
                    first_process = time.process_time()
                    # the clocks start with the first data (the group's join left out)
                    for clock in clocks.values():
                        clock.__init__()  # type: ignore[misc]
                polls += 1
                w, c = time.perf_counter(), time.thread_time()
                for chunk in got:
                    if args.events:
                        chunk.decode_now()
                    elif chunk.columns() is None:
                        raise RuntimeError("a chunk the columns refused")
                clocks["decode"].add(time.perf_counter() - w, time.thread_time() - c)
                n = sum(len(chunk) for chunk in got)
                changes += n
                chunks += len(got)
                pending += n
                if pending >= args.limit or not reader.backlog:
                    pending = 0
                last = (time.perf_counter(), time.thread_time())
                last_process = time.process_time()
                # the idle polls after the last data are no part of the figures
                at_last = {name: (c.wall, c.cpu, c.calls) for name, c in clocks.items()}
                idle_since = time.monotonic()
            elif first is not None and time.monotonic() - idle_since > 1.0:
                break
            elif first is None and time.monotonic() - idle_since > 30:
                raise RuntimeError("no data within 30 s")
    finally:
        reader.close()
    assert first is not None
    wall, cpu = last[0] - first[0], last[1] - first[1]
    out: dict[str, Any] = {
        "changes": changes,
        "polls": polls,
        "chunks": chunks,
        "wall_s": wall,
        "changes_per_s": changes / wall,
        "cpu_us_per_change": 1e6 * cpu / changes,
        # the process: librdkafka's own threads (fetch, decompression) beside the polling thread
        "process_cpu_us_per_change": 1e6 * (last_process - first_process) / changes,
        "load_1m": os.getloadavg()[0],
    }
    for name, (clock_wall, clock_cpu, calls) in at_last.items():
        out[f"{name}_cpu_us"] = 1e6 * clock_cpu / changes
        out[f"{name}_wait_us"] = 1e6 * (clock_wall - clock_cpu) / changes
        out[f"{name}_calls"] = calls
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=5_000, help="changes per batch (max_events // 2)")
    parser.add_argument("--large-prefetch", action="store_true")
    parser.add_argument("--events", action="store_true", help="the per-change decode, not columns")
    args = parser.parse_args(argv)
    stack = StackConnections.read(default_state_dir())
    stream = KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers)
    rounds = [_round(stream, args.pipeline, args) for _ in range(args.rounds)]
    for r in rounds:
        print(
            f"[consume] {r['changes']} changes {r['changes_per_s']:,.0f}/s"
            f" cpu {r['cpu_us_per_change']:.2f} us process {r['process_cpu_us_per_change']:.2f}"
            f" consume {r['consume_cpu_us']:.2f}+wait {r['consume_wait_us']:.2f}"
            f" chunk {r['chunk_cpu_us']:.2f} decode {r['decode_cpu_us']:.2f} (wait {r['decode_wait_us']:.2f})"
            f" chunks {r['chunks']} polls {r['polls']} load {r['load_1m']:.1f}",
            file=sys.stderr,
        )
    median = statistics.median(r["cpu_us_per_change"] for r in rounds)
    print(
        json.dumps({"rounds": rounds, "median_cpu_us_per_change": median, "module": message_chunks.__file__})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
