"""Failover to a promoted replica, Kafka mode (issue 8, item 16): `cdc run` captures from a primary
under a workload, stops (SIGTERM, or SIGKILL mid-stream), the replica catches up and is promoted,
the config is pointed at it, and `cdc run` resumes there by GTID while the workload goes on. Every
change reaches the history exactly once, in order per key (era 0 positions, then era 1), and the
serving table equals the promoted server. Before GTID resume, the restart stopped on the replica
(binlog coordinates of the primary mean nothing there)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from cdc.devstack.connections import StackConnections
from tests.support.failover_rig import FailoverRig, Workload, check_exactly_once, server_pair
from tests.support.kafka_pipeline import assigned, wait_for


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_failover_kafka_resumes_on_the_promoted_replica(
    stack: StackConnections, tmp_path: Path, stop: str
) -> None:
    primary, replica = server_pair(tmp_path)
    with (
        primary,
        replica,
        FailoverRig.create(tmp_path, primary, replica, stack.kafka.bootstrap_servers) as rig,
    ):
        run, sink = rig.daemon("run", "run.log"), rig.daemon("sink", "sink.log")
        workload = Workload(primary, rig.db)
        run.start()
        wait_for(
            "the first start", lambda: "starting at the source's current" in run.log.read_text(), 60, run
        )
        workload.start()
        time.sleep(2)  # the table's topic exists once the first change is captured
        sink.start()
        wait_for("the sink's assignment", lambda: assigned(sink), 60, sink, run)
        time.sleep(1)
        assert run.proc is not None and run.proc.poll() is None, run.log.read_text()[-3000:]
        if stop == "sigkill":
            run.kill()  # mid-stream: the workload is still writing
        else:
            run.proc.send_signal(signal.SIGTERM)
            # -SIGTERM: seen now and then, the process ended by the signal itself (as in
            # test_trust_pipeline); either way a stop the restart must resume from
            assert run.proc.wait(60) in (0, -signal.SIGTERM), run.log.read_text()[-3000:]
        time.sleep(1)  # changes the daemon never saw, on the primary only
        workload.stop()
        on_primary = len(workload.changes)

        replica.wait_for_gtids(primary)
        replica.promote()
        rig.point_at(replica)
        run.start()
        workload.start(replica)
        time.sleep(3)
        workload.stop()
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(60) in (0, -signal.SIGTERM), run.log.read_text()[-3000:]
        run.catch_up(120)
        sink.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        sink.proc.wait(60)  # type: ignore[union-attr]
        sink.catch_up(120)

        assert len(workload.changes) > on_primary > 0
        assert rig.serving_rows() == rig.source_rows(replica)
        for sink in (1, 2):  # two histories, which stood at different places after a SIGKILL
            history = rig.history(sink)
            check_exactly_once(history, workload.changes)
            eras = [p[:4] for p, _ in history]
            assert "mdb1" in eras and "mdb2" in eras
            assert eras == sorted(eras), "era 1 rows sort after every era 0 row"
        assert "resuming by GTID state" in run.log.read_text()
