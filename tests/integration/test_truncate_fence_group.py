"""TRUNCATE through Kafka with the table's partitions split: two `cdc sink` processes in one group,
then one of them killed and a new process started while the dead one still holds its partitions
(the session timeout), so the new process is first assigned only some of them.

Before truncates were fenced by position, `cdc sink` held each copy until every partition it was
assigned had delivered its copy: with the partitions split over two processes the truncate was
never applied, and after the kill a process assigned partition 0 alone applied the truncate there,
then waited forever for the copies of partitions assigned later (`--until-caught-up` hung).
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

from cdc.config.models import IcebergSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from sinks.iceberg import read_history
from tests.support.kafka_pipeline import KafkaPipeline, assigned, wait_for
from tests.support.workload import Daemon


def make_pipeline(stack: StackConnections, tmp: Path) -> KafkaPipeline:
    """KafkaPipeline.create's layout under this area's names and replica server_ids."""
    suffix = uuid.uuid4().hex[:8]
    db, name = f"truncfence_{suffix}", f"truncfence-{suffix}"
    m = stack.mariadb
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, ver INT NOT NULL)")
    config = tmp / "cdc.yaml"
    config.write_text(
        f"name: {name}\n"
        f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
        f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {random.randint(69_000, 69_999)},"
        f" tables: ['{db}.*'], heartbeat_seconds: 1}}\n"
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}',"
        f" partitions: 3, flush_max_ms: 100}}\n"
        "sinks:\n"
        f"  - {{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}\n"
        f"  - {{type: iceberg, namespace: {db}, commit_rows: 1000, commit_seconds: 1,"
        f" catalog: {{type: sql, uri: 'sqlite:///{tmp / 'catalog.db'}',"
        f" warehouse: '{(tmp / 'wh').as_uri()}'}}}}\n"
        "batch: {max_events: 200, max_ms: 100, idle_flush_seconds: 1}\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return KafkaPipeline(stack, tmp, db, name, config)


def history_ops(pipeline: KafkaPipeline) -> Counter[tuple[str, str]]:
    config = next(s for s in pipeline.loaded().sinks if isinstance(s, IcebergSinkConfig))
    found = read_history(config.catalog, config.namespace, TableRef(pipeline.db, "t"))
    ops = found.rows.column("_op").to_pylist()
    positions = found.rows.column("_position").to_pylist()
    return Counter((str(o), str(p)) for o, p in zip(ops, positions, strict=True))


def test_truncate_with_partitions_split_over_processes_and_a_restart(
    stack: StackConnections, tmp_path: Path
) -> None:
    pipeline = make_pipeline(stack, tmp_path)
    a: Daemon | None = None
    b: Daemon | None = None
    try:
        capture = pipeline.daemon("run", "run.log")
        capture.catch_up(120)
        pipeline.execute_with("INSERT INTO t VALUES (%s, 1)", [(i,) for i in range(60)])
        capture.catch_up(120)

        # two processes share the table's three partitions
        a, b = pipeline.daemon("sink", "sink_a.log"), pipeline.daemon("sink", "sink_b.log")
        a.start()
        b.start()
        wait_for(
            "both processes to apply the first rows",
            lambda: assigned(a) and assigned(b) and pipeline.serving_rows() == pipeline.source_rows(),
            120,
            a,
            b,
        )
        pipeline.execute("TRUNCATE TABLE t")
        pipeline.execute_with("INSERT INTO t VALUES (%s, 2)", [(i,) for i in range(30, 90)])
        capture.catch_up(120)
        wait_for(
            "the split processes to apply the truncate and the rows after it",
            lambda: pipeline.serving_rows() == pipeline.source_rows(),
            60,
            a,
            b,
        )

        # one process dies (its partitions stay with it until the session timeout), the other
        # leaves; a new process starts with only some partitions assigned at first
        a.kill()
        assert b.proc is not None
        b.proc.send_signal(signal.SIGTERM)
        assert b.proc.wait(60) == 0, b.log.read_text()[-3000:]
        pipeline.execute("TRUNCATE TABLE t")
        pipeline.execute_with("INSERT INTO t VALUES (%s, 3)", [(i,) for i in range(70, 130)])
        capture.catch_up(120)
        started = time.monotonic()
        pipeline.daemon("sink", "sink_c.log").catch_up(120)  # returns: nothing waits for a copy
        caught_up_s = time.monotonic() - started

        assert pipeline.serving_rows() == pipeline.source_rows()
        ops = history_ops(pipeline)
        truncates = [p for (op, p), n in ops.items() if op == "t"]
        assert len(truncates) == 2 and all(ops[("t", p)] == 1 for p in truncates), truncates
        twice = {k: n for k, n in ops.items() if n > 1}
        assert not twice, twice
        assert sum(n for (op, _), n in ops.items() if op != "t") == 180
        print(f"--until-caught-up after the kill returned in {caught_up_s:.1f}s")
    finally:
        for daemon in (a, b):
            if daemon is not None and daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(30)
        pipeline.drop()
