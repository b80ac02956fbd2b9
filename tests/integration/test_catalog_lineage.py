"""OpenLineage events of `cdc run` (embedded: SQLite serving + Iceberg history), through the file
transport, validated against the specification's JSON Schemas offline (../shared/data/openlineage):
START, RUNNING, COMPLETE of a clean run, FAIL with the error of a run stopped by the compatibility
policy; dataset facets schema, ownership, documentation, datasource, storage and column lineage."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import jsonschema
from click.testing import CliRunner
from referencing import Registry, Resource

from cdc.cli import main
from cdc.devstack.connections import StackConnections

SPEC = Path(__file__).resolve().parents[3] / "shared" / "data" / "openlineage"
if not SPEC.exists():
    SPEC = Path("/work/shared/data/openlineage")


def _spec() -> tuple[jsonschema.protocols.Validator, dict[str, jsonschema.protocols.Validator]]:
    """The run-event validator and, per facet key ("schema", "dataSource"...), its facet's validator."""
    documents = [
        json.loads(p.read_text())
        for p in [SPEC / "OpenLineage.json", *sorted((SPEC / "facets").glob("*.json"))]
    ]
    registry: Registry[Any] = Registry().with_resources(
        (d["$id"], Resource.from_contents(d)) for d in documents
    )
    event = jsonschema.Draft202012Validator(documents[0], registry=registry)
    facets = {}
    for document in documents[1:]:
        for key in document["properties"]:
            facets[key] = jsonschema.Draft202012Validator(document, registry=registry)
    return event, facets


def _check(event: dict[str, Any], validators: tuple[Any, dict[str, Any]]) -> set[str]:
    whole, facets = validators
    whole.validate(event)
    seen: set[str] = set()
    groups = [event["run"].get("facets", {}), event["job"].get("facets", {})]
    groups += [d.get("facets", {}) for d in event.get("inputs", []) + event.get("outputs", [])]
    for group in groups:
        for key, value in group.items():
            assert key in facets, f"facet {key!r} has no schema in the spec folder"
            facets[key].validate({key: value})
            seen.add(key)
    return seen


def test_run_events_validate_against_the_openlineage_spec(stack: StackConnections, tmp_path: Path) -> None:
    m = stack.mariadb
    db = f"catalog_{uuid.uuid4().hex[:8]}"
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.page (id INT PRIMARY KEY, title VARCHAR(20), len INT)")
    events_file = tmp_path / "lineage" / "events.jsonl"
    config = tmp_path / "cdc.yaml"
    config.write_text(
        f"name: {db.replace('_', '-')}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
        f" server_id: {random.randint(4800, 4899)}, tables: ['{db}.*']}}\n"
        "sinks:\n"
        f"  - {{type: sql, url: 'sqlite:///{tmp_path / 'serving.db'}'}}\n"
        f"  - {{type: iceberg, namespace: wiki, catalog: {{type: sql, uri: 'sqlite:///{tmp_path / 'cat.db'}',"
        f" warehouse: 'file://{tmp_path / 'wh'}'}}}}\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "catalog:\n"
        "  owner: {team: wiki-core}\n"
        f"  tables: {{'{db}.page': {{description: Every wiki page, compatibility: backward}}}}\n"
        f"lineage: {{transport: {{type: file, path: {events_file}}}, running_interval_seconds: 0.05}}\n"
    )
    env = {"PW": m.password}

    def run() -> int:
        return CliRunner().invoke(main, ["run", "-c", str(config), "--until-caught-up"], env=env).exit_code

    assert run() == 0
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {db}.page VALUES (%s, 'x', 1)", [(i,) for i in range(200)])
    assert run() == 0
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"ALTER TABLE {db}.page DROP COLUMN len")
        cur.execute(f"INSERT INTO {db}.page VALUES (1000, 'y')")
    assert run() == 2  # the compatibility policy stops it: a FAIL event

    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    validators = _spec()
    facets: set[str] = set()
    for event in events:
        facets |= _check(event, validators)
    types = [e["eventType"] for e in events]
    assert types.count("START") == 3 and types.count("COMPLETE") == 2 and types[-1] == "FAIL"
    assert "RUNNING" in types
    assert len({e["run"]["runId"] for e in events}) == 3
    assert {"schema", "ownership", "documentation", "dataSource", "storage", "columnLineage"} <= facets
    assert {"errorMessage", "processing_engine", "jobType"} <= facets
    fail = events[-1]
    assert "drop len" in fail["run"]["facets"]["errorMessage"]["message"]
    complete = [e for e in events if e["eventType"] == "COMPLETE"][-1]
    [source] = complete["inputs"]
    assert source["namespace"] == f"mysql://{m.host}:{m.port}" and source["name"] == f"{db}.page"
    assert [f["name"] for f in source["facets"]["schema"]["fields"]] == ["id", "title", "len"]
    assert source["facets"]["ownership"]["owners"] == [{"name": "team:wiki-core", "type": "MAINTAINER"}]
    outputs = {o["facets"]["storage"]["storageLayer"]: o for o in complete["outputs"]}
    assert set(outputs) == {"sql", "iceberg"} and outputs["iceberg"]["name"] == "wiki.page__history"
    lineage = outputs["sql"]["facets"]["columnLineage"]["fields"]["title"]["inputFields"]
    assert lineage[0]["namespace"] == source["namespace"] and lineage[0]["field"] == "title"
    assert m.password not in events_file.read_text()
