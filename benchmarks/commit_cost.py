"""What one Kafka transaction of `cdc run`'s writer costs in CPU: the writer process (Python and
librdkafka's threads apart) and the broker, per commit, at the end-to-end benchmark's shape.

Each transaction writes ``--changes`` changes in ``--pieces`` pieces ``--piece-ms`` apart (the
changes of ~25 ms at 10k changes/s arrive spread over the transaction, and librdkafka sends what
lingered meanwhile), then commits with its checkpoint, as KafkaStreamWriter does in `cdc run`.
Arms differ by producer properties (``name=key=value,key=value``; ``name=`` the defaults), run
alternated in child processes, each pinned with ``--cpu`` if given:

    python -m benchmarks.commit_cost --rounds 5 base= linger100=linger.ms=100
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from benchmarks.e2e_cpu import by_thread, kafka_pid
from benchmarks.e2e_cpu import sample as cpu_sample
from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, SourceRecord, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.stream import KafkaStreamWriter
from cdc.stream.topics import TopicNames

SCHEMA = TableSchema.build(
    TableRef("commitcost", "edit"),
    (
        Column("id", "bigint", ArrowType(ArrowKind.INT64), False),
        Column("comment", "text", ArrowType(ArrowKind.STRING)),
    ),
    ("id",),
)


def _child(properties: dict[str, str], transactions: int, changes: int, pieces: int, piece_s: float) -> None:
    stack = StackConnections.read(default_state_dir())
    pipeline = f"commitcost{uuid.uuid4().hex[:8]}"
    config = KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers, properties=properties)
    writer = KafkaStreamWriter(config, pipeline, random.randrange(9100, 9200))
    broker = kafka_pid(default_state_dir())
    try:
        writer.start()
        seq = 0
        commits: list[float] = []

        def one() -> None:
            nonlocal seq
            seq += 1
            start = Position(Gtid(0, 1, seq), "mysql-bin.000001", 1000 * seq)
            writer.begin()
            row = 0
            for piece in range(pieces):
                records: list[SourceRecord] = []
                for _ in range(changes // pieces):
                    key = seq * 100_000 + row
                    records.append(
                        ChangeEvent(Op.CREATE, SCHEMA, (key,), None, (key, f"edit {key} " + "x" * 200),
                                    start.at_row(row), 1, f"0-1-{seq}")
                    )  # fmt: skip
                    row += 1
                if piece == pieces - 1:
                    records.append(TransactionEnd(f"0-1-{seq}", start.at_row(row - 1), row, 1))
                # as `cdc run` writes a chunk: a run at a time (one packed produce call)
                i = 0
                while i < len(records):
                    i = writer.write_transactions(records, i, 1_000_000).stop
                if piece < pieces - 1:
                    time.sleep(piece_s)
            end = records[-1]
            assert isinstance(end, TransactionEnd)
            called = time.perf_counter()
            writer.commit(end.restart)
            commits.append(time.perf_counter() - called)

        for _ in range(20):  # warm: the topic, the first commits
            one()
        me_before, threads_before = cpu_sample(os.getpid()), by_thread(os.getpid())
        broker_before = cpu_sample(broker)
        began = time.monotonic()
        commits.clear()
        for _ in range(transactions):
            one()
        wall = time.monotonic() - began
        me_after, threads_after = cpu_sample(os.getpid()), by_thread(os.getpid())
        broker_after = cpu_sample(broker)
        assert me_before and me_after
        out = {
            "writer_us_per_commit": (me_after.cpu_s - me_before.cpu_s) / transactions * 1e6,
            "broker_us_per_commit": (broker_after.cpu_s - broker_before.cpu_s) / transactions * 1e6
            if broker_before and broker_after
            else float("nan"),
            "txn_ms": wall / transactions * 1000,
            "commit_p50_ms": statistics.median(commits) * 1000,
            "commit_p90_ms": sorted(commits)[int(0.9 * len(commits))] * 1000,
            "load": os.getloadavg()[0],
        }
        for name, cpu in threads_after.items():
            out[f"thread {name}"] = (cpu - threads_before.get(name, 0.0)) / transactions * 1e6
        print(json.dumps(out))
    finally:
        writer.close()
        names = TopicNames(pipeline)
        topics = [names.table(SCHEMA.ref), names.schema, names.checkpoints, names.transactions]
        admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap_servers})
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(KafkaException, TimeoutError):  # cleanup: a topic never made
                future.result(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--transactions", type=int, default=300)
    parser.add_argument("--changes", type=int, default=250)
    parser.add_argument("--pieces", type=int, default=5)
    parser.add_argument("--piece-ms", type=float, default=5.0)
    parser.add_argument("--cpu", help="taskset CPU list for the children")
    parser.add_argument("--out", type=Path, default=Path("/tmp/commit_cost.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("arms", nargs="*", metavar="NAME=PROPS")
    args = parser.parse_args(argv)
    if args.child is not None:
        props = dict(kv.split("=", 1) for kv in args.child.split(",") if kv)
        _child(props, args.transactions, args.changes, args.pieces, args.piece_ms / 1000)
        return 0
    arms = [(a.split("=", 1)[0], a.split("=", 1)[1]) for a in args.arms]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, _ in arms}
    for round_ in range(args.rounds):
        order = arms[round_ % len(arms) :] + arms[: round_ % len(arms)]
        for name, props in order:
            cmd = [sys.executable, "-m", "benchmarks.commit_cost", "--child", props]
            cmd += ["--transactions", str(args.transactions), "--changes", str(args.changes)]
            cmd += ["--pieces", str(args.pieces), "--piece-ms", str(args.piece_ms)]
            if args.cpu:
                cmd = ["taskset", "-c", args.cpu, *cmd]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
            if done.returncode != 0:
                print(f"round {round_} {name} failed: {done.stderr[-500:]}", file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows[name].append(row)
            print(f"round {round_} {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
            args.out.write_text(json.dumps(rows, indent=1))
    for name, runs in rows.items():
        if runs:
            keys = [k for k in runs[0] if all(k in r for r in runs)]
            print(
                f"{name} ({len(runs)}) median [min-max]: "
                + ", ".join(
                    f"{k} {statistics.median(r[k] for r in runs):.1f}"
                    f" [{min(r[k] for r in runs):.1f}-{max(r[k] for r in runs):.1f}]"
                    for k in keys
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
