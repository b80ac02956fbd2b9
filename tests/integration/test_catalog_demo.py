"""`cdc dev demo` writes OpenLineage events through a file transport and the catalog page, and says so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc.cli import main
from cdc.devstack.connections import StackConnections, default_state_dir

REPO = Path(__file__).resolve().parents[2]


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
