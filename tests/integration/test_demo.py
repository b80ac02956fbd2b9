"""The README's main job: `cdc dev demo` runs the embedded default end to end on the local stack.

Every demo test is in this file: each recreates the source database `wikidb` and reads it as replica
server_id 5401, so two of them must never run at once (the test runner hands a file to one worker).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc.cli import main
from cdc.devstack.connections import StackConnections, default_state_dir

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_the_embedded_default_end_to_end(
    stack: StackConnections, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devstack = default_state_dir()  # before leaving the repo: it is relative to the working directory
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))
    result = CliRunner().invoke(main, ["dev", "demo", "--seconds", "4", "--dir", str(devstack)])
    out = result.output
    assert result.exit_code == 0, out
    assert "equal to the source, row by row" in out
    assert "most edited pages" in out and "the wiki as of" in out
    assert "rows bootstrapped into each sink" in out and " 0 rows bootstrapped" not in out
    # the drift injected into the serving copy: found (1 missing, 1 extra, 1 different), repaired
    assert "DRIFT    wikidb.page -> sql" in out and "1 missing, 1 extra, 1 different" in out, out
    assert "every copy matches its source again" in out
    assert (tmp_path / "state" / "reconcile" / "report.html").exists()
    assert (tmp_path / "state" / "serving.db").exists()
    assert (tmp_path / "state" / "warehouse").is_dir()
    assert stack.mariadb.password not in out and stack.mariadb.root_password not in out

    # the same config, by the commands a user would type next
    env = {"CDC_SOURCE_PASSWORD": stack.mariadb.password}
    config = ["-c", "configs/embedded.yaml"]
    now = dt.datetime.now(dt.UTC).isoformat()
    result = CliRunner().invoke(
        main, ["history", *config, "wikidb.page", "--at", now, "--format", "jsonl"], env=env
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("page_title") >= 1
    result = CliRunner().invoke(main, ["maintain", *config], env=env)
    assert result.exit_code == 0, result.output
    assert "page__history" in result.output
    result = CliRunner().invoke(main, ["history", *config, "wikidb.nope", "--at", now], env=env)
    assert result.exit_code == 2


def test_demo_writes_lineage_events_and_the_catalog_page(
    stack: StackConnections, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devstack = default_state_dir()
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))
    result = CliRunner().invoke(main, ["dev", "demo", "--seconds", "4", "--dir", str(devstack)])
    assert result.exit_code == 0, result.output
    assert "4. OpenLineage run events (START 1, " in result.output and "COMPLETE 1)" in result.output
    events = [json.loads(line) for line in (tmp_path / "state" / "lineage.jsonl").read_text().splitlines()]
    assert events[0]["eventType"] == "START" and events[-1]["eventType"] == "COMPLETE"
    names = {d["name"] for d in events[-1]["inputs"]}
    assert {"wikidb.page", "wikidb.revision"} <= names
    page = (tmp_path / "state" / "catalog.html").read_text()
    assert "wiki-platform &lt;wiki-platform@example.org&gt;" in page and "wiki.page__history" in page
    assert stack.mariadb.password not in result.output
