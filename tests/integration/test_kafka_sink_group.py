"""Two `cdc sink` processes in one consumer group (the documented way to scale): when one is killed
with SIGKILL, the survivor takes its partitions over from what the sinks hold, so every change is
applied exactly once (one Iceberg history row per position) and the serving table equals the source.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from pathlib import Path

from cdc.config.models import IcebergSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from sinks.iceberg import read_history
from tests.support.kafka_pipeline import KafkaPipeline, assigned, wait_for
from tests.support.workload import Daemon

ROWS = 120


def history_positions(pipeline: KafkaPipeline) -> Counter[str]:
    config = next(s for s in pipeline.loaded().sinks if isinstance(s, IcebergSinkConfig))
    found = read_history(config.catalog, config.namespace, TableRef(pipeline.db, "t"))
    return Counter(str(p) for p in found.rows.column("_position").to_pylist())


def update_all(pipeline: KafkaPipeline, ver: int) -> None:
    pipeline.execute_with("UPDATE t SET ver = %s WHERE id = %s", [(ver, i) for i in range(ROWS)])


def partitions_taken(daemon: Daemon) -> int:
    """Table partitions the process was handed (incremental assignments add up)."""
    return sum(int(n) for n in re.findall(r"assigned (\d+) table partitions", daemon.log.read_text()))


def test_survivor_of_a_killed_sink_process_applies_each_change_once(
    stack: StackConnections, tmp_path: Path
) -> None:
    pipeline = KafkaPipeline.create(stack, tmp_path)
    try:
        capture = pipeline.daemon("run", "run.log")
        capture.catch_up(120)
        pipeline.execute_with("INSERT INTO t VALUES (%s, 1)", [(i,) for i in range(ROWS)])
        capture.catch_up(120)
        # one process first: every sink then holds offsets for every partition, so each process
        # of the group opens with (soon stale) offsets for partitions the other one will advance
        pipeline.daemon("sink", "sink0.log").catch_up(180)
        update_all(pipeline, 2)
        capture.catch_up(120)

        a, b = pipeline.daemon("sink", "sink_a.log"), pipeline.daemon("sink", "sink_b.log")
        a.start()
        b.start()
        changes = ROWS * 2
        wait_for(
            "both processes to apply the second round",
            lambda: sum(history_positions(pipeline).values()) >= changes and assigned(a) and assigned(b),
            120,
            a,
            b,
        )
        time.sleep(3)  # both have committed since (Iceberg commits every second)
        # the group shares the table's partitions (the pipeline's own topics must not count in the
        # balance, or one process gets them and the other every table partition)
        assert partitions_taken(a) > 0 and partitions_taken(b) > 0, (
            f"partitions: a {partitions_taken(a)}, b {partitions_taken(b)}"
        )
        a.kill()
        update_all(pipeline, 3)
        capture.catch_up(120)
        changes += ROWS
        # the survivor gets the dead one's partitions after the session timeout (10 s)
        wait_for(
            "the survivor to apply the third round",
            lambda: (
                pipeline.serving_rows() == pipeline.source_rows()
                and sum(history_positions(pipeline).values()) >= changes
            ),
            120,
            b,
        )
        time.sleep(4)  # anything applied twice would be committed by now
        assert b.proc is not None
        b.proc.send_signal(signal.SIGTERM)
        assert b.proc.wait(60) == 0, b.log.read_text()[-3000:]

        counts = history_positions(pipeline)
        twice = {p: n for p, n in counts.items() if n > 1}
        assert not twice, f"{len(twice)} changes applied more than once, e.g. {sorted(twice.items())[:3]}"
        assert sum(counts.values()) == changes
        assert pipeline.serving_rows() == pipeline.source_rows()
    finally:
        pipeline.drop()
