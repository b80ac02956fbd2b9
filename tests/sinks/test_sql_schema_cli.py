"""`cdc schema pending|accept` over every sink that keeps schema changes (SQL and Iceberg here):
each sink of a config stopped on a change (schema_changes: stop), the command lists and accepts them,
and the next apply goes through. No services needed (SQLite, and Iceberg on a SQLite catalog)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc.cli import main
from cdc.config import load_config
from cdc.core.errors import SinkSchemaError
from cdc.core.schemas import ArrowKind
from sinks.contract import Sink
from sinks.registry import open_sink
from tests.sinks.builders import ITEMS, REF, Writer, col, schema


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "cdc.yaml"
    path.write_text(
        "name: schemacli\n"
        "source: {host: 127.0.0.1, port: 9, user: cdc, password: x, server_id: 64001}\n"
        "sinks:\n"
        f"  - {{type: sql, url: 'sqlite:///{tmp_path / 'serving.db'}', schema_changes: stop}}\n"
        f"  - {{type: iceberg, namespace: wiki, schema_changes: stop, commit_rows: 1,"
        f" catalog: {{type: sql, uri: 'sqlite:///{tmp_path / 'catalog.db'}',"
        f" warehouse: '{(tmp_path / 'wh').as_uri()}'}}}}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    return path


def sinks_of(config_path: Path) -> list[Sink]:
    config = load_config(config_path)
    return [open_sink(s, config.name) for s in config.sinks]


def test_pending_and_accept_work_over_sql_and_iceberg_sinks(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    w = Writer()
    first = w.insert(1, "a", 1).batch()
    wider = schema(*ITEMS.columns, col("note", "text", ArrowKind.STRING))
    held = w.insert(2, "b", 2, "hello", table=wider).batch()
    for sink in sinks_of(config):
        sink.open()
        try:
            sink.apply(first)
            with pytest.raises(SinkSchemaError):
                sink.apply(held)
                sink.flush()
        finally:
            sink.close()

    runner = CliRunner()
    listed = runner.invoke(main, ["schema", "pending", "-c", str(config), "--json"])
    assert listed.exit_code == 1, listed.output
    found = json.loads(listed.stdout)
    assert sorted(item["sink"] for item in found) == [0, 1]
    assert all(item["table"] == str(REF) and "note" in item["change"] for item in found)

    only_sql = runner.invoke(main, ["schema", "accept", "-c", str(config), str(REF), "--sink", "0"])
    assert only_sql.exit_code == 0 and "sink 0" in only_sql.output, only_sql.output
    rest = runner.invoke(main, ["schema", "accept", "-c", str(config), str(REF)])
    assert rest.exit_code == 0 and "sink 1" in rest.output and "sink 0" not in rest.output, rest.output
    assert runner.invoke(main, ["schema", "accept", "-c", str(config), str(REF)]).exit_code == 1
    assert runner.invoke(main, ["schema", "pending", "-c", str(config)]).exit_code == 0

    for sink in sinks_of(config):
        sink.open()
        try:
            sink.apply(held)
            sink.flush()
            applied = sink.applied()
            assert applied is not None and applied.position == held.state.position, sink.name
        finally:
            sink.close()


def test_accept_names_a_bad_table_or_sink(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["schema", "accept", "-c", str(config), "nodot"]).exit_code == 2
    bad_sink = runner.invoke(main, ["schema", "accept", "-c", str(config), str(REF), "--sink", "7"])
    assert bad_sink.exit_code == 2 and "--sink" in bad_sink.output
