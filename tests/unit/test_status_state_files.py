"""Two pipelines run from one directory (state_dir defaults to ./state): `cdc status` of one must
not report the other's runs."""

from __future__ import annotations

from pathlib import Path

from cdc.daemon.run_state import RunRecorder, read_run_state


def test_each_pipeline_has_its_own_run_state(tmp_path: Path) -> None:
    failed = RunRecorder(tmp_path, "run", "wiki-a")
    failed.exited(2, "wiki-a's source refused the login")
    assert (state := read_run_state(tmp_path, "run", "wiki-a")) is not None and state.failed
    assert read_run_state(tmp_path, "run", "wiki-b") is None  # B never ran: nothing to report
    RunRecorder(tmp_path, "run", "wiki-b").exited(0, None)
    a, b = read_run_state(tmp_path, "run", "wiki-a"), read_run_state(tmp_path, "run", "wiki-b")
    assert a is not None and a.failed and b is not None and not b.failed
