"""The idle checkpoint in Kafka mode (issue 8, item 3): ~1 MB written to a table that is not captured
moves a running `cdc run`'s checkpoint past it with checkpoint-only Kafka transactions and no change
message, so `cdc status` shows no lag for it and a restart never needs that binlog.

Needs the MariaDB source to emit SourceProgress (after other tables' transactions and on heartbeats).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from click.testing import CliRunner

from cdc.cli import main
from cdc.core.positions import Position, RestartPoint
from cdc.devstack.connections import StackConnections
from tests.support.kafka_pipeline import KafkaPipeline
from tests.support.kafka_replay import consume_all


def status_checkpoint(pipeline: KafkaPipeline, stack: StackConnections) -> Position | None:
    env = {"CDC_SOURCE_PASSWORD": stack.mariadb.password}
    result = CliRunner().invoke(main, ["status", "-c", str(pipeline.config), "--json"], env=env)
    checkpoint = json.loads(result.stdout)["checkpoint"]
    return None if checkpoint is None else RestartPoint.parse(checkpoint["restart_point"]).transaction


def test_writes_to_other_tables_move_the_kafka_checkpoint(stack: StackConnections, tmp_path: Path) -> None:
    pipeline = KafkaPipeline.create(
        stack,
        tmp_path,
        partitions=1,
        sinks="  []\n",
        tables_sql=(
            "CREATE TABLE t (id INT PRIMARY KEY, ver INT NOT NULL)",
            "CREATE TABLE other (id INT PRIMARY KEY, blob_ MEDIUMTEXT)",
        ),
    )
    # capture only t
    text = pipeline.config.read_text().replace(f"tables: ['{pipeline.db}.*']", f"tables: ['{pipeline.db}.t']")
    pipeline.config.write_text(text)
    try:
        capture = pipeline.daemon("run", "run.log")
        capture.catch_up(120)
        pipeline.execute("INSERT INTO t VALUES (1, 1)")
        capture.catch_up(120)
        with pipeline.connect() as conn, conn.cursor() as cur:
            for i in range(100):  # ~1 MB in 100 transactions, none on a captured table
                cur.execute("INSERT INTO other VALUES (%s, REPEAT('x', 10000))", (i,))
            cur.execute("SHOW MASTER STATUS")
            after = cur.fetchone()
        assert after is not None
        # a running daemon: the source's progress after those transactions and on heartbeats
        running = capture.start()
        try:
            end = (int(str(after[0]).rsplit(".", 1)[1]), int(after[1]))
            deadline = time.monotonic() + 60
            while True:
                checkpoint = status_checkpoint(pipeline, stack)
                # the shared server gets other tests' writes too: what counts is that ours are behind it
                if checkpoint is not None and (checkpoint.file_seq, checkpoint.offset) >= end:
                    break
                assert time.monotonic() < deadline, f"checkpoint {checkpoint} still before {end}"
                time.sleep(1)
        finally:
            running.send_signal(signal.SIGTERM)
            assert running.wait(60) == 0, capture.log.read_text()[-3000:]

        topic = f"{pipeline.name}.{pipeline.db}.t"
        records = consume_all(stack.kafka.bootstrap_servers, [topic])
        assert [r.value["after"]["id"] for r in records if r.value] == [1]  # no message for the 1 MB
    finally:
        pipeline.drop()
