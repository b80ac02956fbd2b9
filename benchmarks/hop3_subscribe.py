"""`cdc sink`'s subscription, base tree against this one (``--base``): the reader's and the broker's
CPU per second while idle, and how long after a table's first commit its changes reach the reader.

    python -m benchmarks.hop3_subscribe idle --bootstrap 127.0.0.1:19192 --broker-pid PID --base /tmp/b
    python -m benchmarks.hop3_subscribe start --bootstrap 127.0.0.1:9092 --base /tmp/b

``idle``: one pipeline with one table (3 partitions) is written once; each round runs a reader
(:class:`KafkaChangeReader`, as `cdc sink` configures it) from each tree in turn, alternated, and
measures its CPU and the broker's over ``--seconds`` after ``--warm`` seconds (use a private broker
holding many topics: ``--filler N`` creates them, ``filler-N`` names). ``start``: a brand-new
pipeline whose reader starts first; ``--delay`` s later the writer commits a first table, then a
second one once the first is read: the delay from each commit to its first change polled.
The reader runs in a child process from the tree under test (PYTHONPATH), pinned with ``--cpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

_CLK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _schemas():  # type: ignore[no-untyped-def]
    from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema

    columns = (
        Column("id", "int", ArrowType(ArrowKind.INT32), False),
        Column("name", "varchar", ArrowType(ArrowKind.STRING)),
    )
    return [TableSchema.build(TableRef("hop3", name), columns, ("id",)) for name in ("first", "second")]


def _write(bootstrap: str, pipeline: str, table: int, partitions: int = 3) -> float:
    """One transaction of 10 changes into table ``table`` (0 or 1); the wall clock of its commit."""
    from cdc.config.models import KafkaStreamConfig
    from cdc.core.events import ChangeEvent, Op, TransactionEnd
    from cdc.core.positions import Gtid, Position
    from cdc.stream import KafkaStreamWriter

    schema = _schemas()[table]
    config = KafkaStreamConfig(bootstrap_servers=bootstrap, partitions=partitions)
    writer = KafkaStreamWriter(config, pipeline, random.randrange(9100, 9900))
    try:
        writer.start()
        seq = table + 1
        start = Position(Gtid(0, 1, seq), "mysql-bin.000001", 1000 * seq)
        writer.begin()
        for i in range(10):
            key = seq * 1000 + i
            writer.write(
                ChangeEvent(Op.CREATE, schema, (key,), None, (key, "x"), start.at_row(i), 1, f"0-1-{seq}")
            )
        end = TransactionEnd(f"0-1-{seq}", start.at_row(9), 10, 1)
        writer.write(end)
        writer.commit(end.restart)
        return time.time()
    finally:
        writer.close()


def child(args: argparse.Namespace) -> int:
    """The reader, from whichever tree is first on sys.path; prints one JSON line per event."""
    from cdc.config.models import KafkaStreamConfig
    from cdc.stream.kafka_reader import KafkaChangeReader

    config = KafkaStreamConfig(bootstrap_servers=args.bootstrap)
    reader = KafkaChangeReader(config, args.pipeline, lambda parts: {})
    started = time.time()
    reader.start()
    out: dict[str, object] = {"started": started}
    seen: set[str] = set()
    mark = None
    try:
        while time.time() - started < args.run:
            for change in reader.poll(10_000, 0.2):
                table = change.event.schema.table
                if table not in seen:
                    seen.add(table)
                    print(json.dumps({"first": table, "at": time.time()}), flush=True)
            now = time.time()
            if mark is None and now - started >= args.warm:
                mark = (now, _own_cpu())
                print(json.dumps({"measure_from": now}), flush=True)
        if mark is not None:
            out.update(cpu_s=_own_cpu() - mark[1], wall_s=time.time() - mark[0])
    finally:
        reader.close()
    print(json.dumps(out), flush=True)
    return 0


def _spawn(
    tree: Path, bootstrap: str, pipeline: str, run: float, warm: float, cpu: str
) -> subprocess.Popen[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "child", "--bootstrap", bootstrap]
    argv += ["--pipeline", pipeline, "--run", str(run), "--warm", str(warm)]
    if cpu:
        argv = ["taskset", "-c", cpu, *argv]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.PIPE, text=True)


def _lines(proc: subprocess.Popen[str]) -> list[dict[str, float | str]]:
    out, _ = proc.communicate(timeout=600)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def filler(bootstrap: str, count: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    have = set(admin.list_topics(timeout=30).topics)
    wanted = [f"filler-{i}" for i in range(count) if f"filler-{i}" not in have]
    for i in range(0, len(wanted), 200):
        futures = admin.create_topics([NewTopic(t, 1, 1) for t in wanted[i : i + 200]])
        for future in futures.values():
            future.result(60)


def idle(args: argparse.Namespace, arms: dict[str, Path]) -> dict[str, object]:
    if args.filler:
        filler(args.bootstrap, args.filler)
    pipeline = f"hop3idle{uuid.uuid4().hex[:8]}"
    _write(args.bootstrap, pipeline, 0)
    rows: list[dict[str, object]] = []
    for r in range(args.rounds):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        for arm in order:
            proc = _spawn(arms[arm], args.bootstrap, pipeline, args.warm + args.seconds, args.warm, args.cpu)
            time.sleep(args.warm)
            broker0, t0 = _proc_cpu(args.broker_pid), time.time()
            lines = _lines(proc)
            broker1, t1 = _proc_cpu(args.broker_pid), time.time()
            last = lines[-1]
            row = {
                "round": r,
                "arm": arm,
                "reader_ms_per_s": 1000 * float(last["cpu_s"]) / float(last["wall_s"]),
                "broker_ms_per_s": 1000 * (broker1 - broker0) / (t1 - t0),
                "load": os.getloadavg()[0],
            }
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    return {"rows": rows, "summary": _summary(rows, ("reader_ms_per_s", "broker_ms_per_s"))}


def start(args: argparse.Namespace, arms: dict[str, Path]) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    for r in range(args.rounds):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        for arm in order:
            pipeline = f"hop3start{uuid.uuid4().hex[:8]}"
            proc = _spawn(arms[arm], args.bootstrap, pipeline, args.run, args.run, args.cpu)
            assert proc.stdout is not None
            time.sleep(args.delay)
            first = _write(args.bootstrap, pipeline, 0)
            got: dict[str, float] = {}
            second = 0.0
            for line in proc.stdout:
                item = json.loads(line)
                if "first" in item:
                    got[str(item["first"])] = float(item["at"])
                    if len(got) == 1:
                        second = _write(args.bootstrap, pipeline, 1)
                    else:
                        break
            proc.kill()
            proc.wait()
            row = {
                "round": r,
                "arm": arm,
                "first_table_s": got.get("first", float("nan")) - first,
                "second_table_s": got.get("second", float("nan")) - second,
                "load": os.getloadavg()[0],
            }
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
            _delete(args.bootstrap, pipeline)
    return {"rows": rows, "summary": _summary(rows, ("first_table_s", "second_table_s"))}


def _delete(bootstrap: str, pipeline: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(f"{pipeline}.")]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result()


def _summary(rows: list[dict[str, object]], keys: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for arm in sorted({str(row["arm"]) for row in rows}):
        for key in keys:
            values = [float(row[key]) for row in rows if row["arm"] == arm]  # type: ignore[arg-type]
            out[f"{arm}.{key}"] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("mode", choices=("idle", "start", "child"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--base", type=Path, help="the base checkout (a git worktree)")
    parser.add_argument("--broker-pid", type=int, default=0)
    parser.add_argument("--filler", type=int, default=0, help="filler topics to create first (idle)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warm", type=float, default=8.0)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--run", type=float, default=60.0)
    parser.add_argument("--cpu", default="", help="taskset -c for the reader")
    parser.add_argument("--pipeline", default="")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.mode == "child":
        return child(args)
    arms = {"new": Path(__file__).resolve().parents[1]}
    if args.base is not None:
        arms = {"base": args.base.resolve(), **arms}
    result = idle(args, arms) if args.mode == "idle" else start(args, arms)
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
