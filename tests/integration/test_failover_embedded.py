"""Failover to a promoted replica, embedded mode (issue 8, item 16): `cdc run` without a stream
applies a primary's changes to a SQL sink and an Iceberg history under a workload, stops (SIGTERM,
or SIGKILL mid-stream, when the SQL sink is ahead of the Iceberg one, which commits every second),
the replica catches up and is promoted, the config is pointed at it, and `cdc run` resumes there by
GTID while the workload goes on. Every change is in the history exactly once, in order per key (era
0 positions, then era 1), and the serving table equals the promoted server. Before GTID resume, the
restart stopped: the state directory belonged to another server."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.support.failover_rig import FailoverRig, Workload, check_exactly_once, server_pair
from tests.support.kafka_pipeline import wait_for


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_failover_embedded_resumes_on_the_promoted_replica(tmp_path: Path, stop: str) -> None:
    primary, replica = server_pair(tmp_path)
    with primary, replica, FailoverRig.create(tmp_path, primary, replica, None) as rig:
        run = rig.daemon("run", "run.log")
        workload = Workload(primary, rig.db)
        run.start()
        wait_for("the first start", lambda: "first start" in run.log.read_text(), 60, run)
        workload.start()
        time.sleep(3)
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

        assert len(workload.changes) > on_primary > 0
        assert rig.serving_rows() == rig.source_rows(replica)
        for sink in (1, 2):  # two histories, which stood at different places after a SIGKILL
            history = rig.history(sink)
            check_exactly_once(history, workload.changes)
            eras = [p[:4] for p, _ in history]
            assert "mdb1" in eras and "mdb2" in eras
            assert eras == sorted(eras), "era 1 rows sort after every era 0 row"
        assert "resuming by GTID state" in run.log.read_text()


def test_failover_to_a_replica_that_is_behind_stops_naming_the_gtid(tmp_path: Path) -> None:
    primary, replica = server_pair(tmp_path)
    with primary, replica, FailoverRig.create(tmp_path, primary, replica, None) as rig:
        replica.wait_for_gtids(primary)
        with replica.connection().connect_root() as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE")  # the replica falls behind from here
        run = rig.daemon("run", "run.log")
        run.catch_up(120)  # first start
        workload = Workload(primary, rig.db)
        workload.start()
        time.sleep(1)
        workload.stop()
        run.catch_up(120)  # has applied changes the replica lacks
        last = primary.gtid_binlog_pos()

        rig.point_at(replica)
        proc = run.start("--until-caught-up")
        assert proc.wait(120) == 2
        log = run.log.read_text()
        assert f"does not have transaction {last}" in log, log[-3000:]
        assert f"127.0.0.1:{replica.port}" in log and "Wait until it has replicated" in log
        serving = rig.serving_rows()
        assert serving == rig.source_rows(primary) != rig.source_rows(replica)  # nothing moved
