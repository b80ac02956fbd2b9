"""`cdc status`'s rules without services: binlog bytes behind, lag in seconds, the verdict (exit code),
and the run-state file the daemons keep (atomic, secrets redacted, failure = last exit was 2)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from cdc.core.errors import SinkAccessDenied, SourceUnavailable
from cdc.core.positions import Gtid, Position, RestartPoint
from cdc.daemon.run_state import RunRecorder, read_run_state
from cdc.daemon.status import PipelineStatus, SinkStatus, SourceView, _lag_seconds
from cdc.daemon.supervisor import Supervisor, observe
from cdc.logs import register_secrets
from cdc.sources.mariadb.server_position import ServerPosition

VIEW = SourceView(
    ServerPosition("bin.000003", 500, "0-1-9", 1, 0),
    (("bin.000002", 1000), ("bin.000003", 500)),
    ("db.t",),
)


def point(file: str, offset: int) -> RestartPoint:
    return RestartPoint(Position(Gtid(0, 1, 1), file, offset, 0), 0)


def test_bytes_behind_spans_binlog_files_and_knows_a_purged_one() -> None:
    assert VIEW.bytes_behind(point("bin.000003", 500)) == 0
    assert VIEW.bytes_behind(point("bin.000002", 400)) == 600 + 500
    assert VIEW.bytes_behind(point("bin.000001", 4)) is None


def status(*sinks: SinkStatus) -> PipelineStatus:
    return PipelineStatus("p", "embedded", "h:1", VIEW.position, None, None, None, None, (), sinks)


def sink(lag_s: float | None, error: str | None = None) -> SinkStatus:
    return SinkStatus("serving", "sql:x", None, None, 10, lag_s, error)


def test_verdict_exit_codes() -> None:
    assert status(sink(30.0)).problems(None) == (0, ())
    assert status(sink(30.0)).problems(60)[0] == 0
    code, why = status(sink(90.0)).problems(60)
    assert code == 1 and "serving is 90s behind" in why[0]
    assert status(sink(None, "refused")).problems(None)[0] == 1
    cannot = PipelineStatus("p", "embedded", "h:1", None, "refused", None, None, None, ())
    assert cannot.problems(None)[0] == 2


def test_lag_seconds_zero_when_caught_up_else_from_the_recorded_progress(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path, "run", "p")
    ts = int(time.time() * 1000) - 42_000
    recorder.progress(point("bin.000003", 100), ts, force=True)
    run = read_run_state(tmp_path, "run", "p")
    now = time.time()
    assert _lag_seconds(0, point("bin.000003", 500), run, now) == 0.0
    lag = _lag_seconds(400, point("bin.000003", 100), run, now)
    assert lag is not None and 41 <= lag <= 44
    assert _lag_seconds(900, point("bin.000002", 100), run, now) is None  # behind what was recorded


def test_the_run_state_records_errors_redacted_and_the_last_exit(tmp_path: Path) -> None:
    register_secrets({"hunter2-secret"})
    recorder = RunRecorder(tmp_path, "run", "p")
    observe(recorder)
    try:
        failures = iter(
            [SourceUnavailable("source down"), SinkAccessDenied("password hunter2-secret refused")]
        )

        def attempt() -> None:
            raise next(failures)

        assert Supervisor(0.01, 0.01).run(attempt) == 2
    finally:
        observe(None)
    state = read_run_state(tmp_path, "run", "p")
    assert state is not None and state.failed and state.last_exit is not None
    assert state.last_exit.exit_code == 2 and "hunter2" not in (state.last_exit.error or "")
    assert "refused" in (state.last_exit.error or "")
    again = RunRecorder(tmp_path, "run", "p")  # a new start: the failure is history, not the present
    assert not again.state.failed and again.state.last_exit == state.last_exit


def test_a_started_process_that_is_gone_reads_as_not_running(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path, "sink", "p")
    assert recorder.state.running is True  # this very process
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = replace(recorder.state, pid=gone.pid)
    assert dead.running is False and not dead.failed
    assert replace(recorder.state, host="elsewhere").running is None
