"""`cdc catalog` over an embedded pipeline (SQLite serving + Iceberg history) and a Kafka pipeline
(topic + PostgreSQL-free SQLite serving), against the real MariaDB and Kafka: every table with owner,
lineage, SLO and lag, schema versions read from the state file and from the `__schema` topic with their
changes classified; the HTML page rendered by headless Chromium shows each table with its owner,
lineage and lag."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cdc.cli import main
from cdc.devstack.connections import StackConnections


def _sql(stack: StackConnections, *statements: str) -> None:
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _pipeline(stack: StackConnections, tmp_path: Path, kafka: bool) -> tuple[str, str, Path]:
    m = stack.mariadb
    db = f"catalog_{uuid.uuid4().hex[:8]}"
    name = db.replace("_", "-")
    _sql(
        stack,
        f"CREATE DATABASE {db}",
        f"CREATE TABLE {db}.page (id INT PRIMARY KEY, title VARCHAR(20))",
        f"CREATE TABLE {db}.revision (id INT PRIMARY KEY, page INT)",
    )
    home = tmp_path / name
    home.mkdir()
    sinks = f"  - {{type: sql, name: serving, url: 'sqlite:///{home / 'serving.db'}'}}\n"
    if not kafka:
        sinks += (
            f"  - {{type: iceberg, name: history, namespace: wiki, catalog: {{type: sql,"
            f" uri: 'sqlite:///{home / 'catalog.db'}', warehouse: 'file://{home / 'warehouse'}'}}}}\n"
        )
    stream = f"stream: {{bootstrap_servers: '{stack.kafka.bootstrap_servers}'}}\n" if kafka else ""
    config = home / "cdc.yaml"
    config.write_text(
        f"name: {name}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
        f" server_id: {random.randint(4800, 4899)}, tables: ['{db}.*']}}\n"
        + stream
        + "sinks:\n"
        + sinks
        + f"state_dir: {home / 'state'}\n"
        "catalog:\n"
        "  domain: knowledge\n"
        "  owner: {team: wiki-core, contact: core@example.org}\n"
        "  freshness_slo_seconds: 600\n"
        "  tables:\n"
        f"    '{db}.page': {{owner: {{team: pages-team}}, description: Every wiki page,"
        " compatibility: backward, on_incompatible: flag, classification: public}\n"
    )
    return db, name, config


def _ok(args: list[str], env: dict[str, str]) -> str:
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output + str(result.exception)
    return result.output


def _by_table(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["table"]: t for p in doc["pipelines"] for t in p["tables"]}


def test_catalog_over_embedded_and_kafka_pipelines(stack: StackConnections, tmp_path: Path) -> None:
    env = {"PW": stack.mariadb.password}
    edb, ename, econfig = _pipeline(stack, tmp_path, kafka=False)
    kdb, kname, kconfig = _pipeline(stack, tmp_path, kafka=True)
    _ok(["run", "-c", str(econfig), "--until-caught-up"], env)
    _ok(["run", "-c", str(kconfig), "--until-caught-up"], env)
    for db in (edb, kdb):
        _sql(
            stack,
            f"INSERT INTO {db}.page VALUES (1, 'a'), (2, 'b')",
            f"INSERT INTO {db}.revision VALUES (1, 1)",
            f"ALTER TABLE {db}.page DROP COLUMN title",  # breaking, flagged
            f"INSERT INTO {db}.page VALUES (3)",
        )
    _ok(["run", "-c", str(econfig), "--until-caught-up"], env)
    _ok(["run", "-c", str(kconfig), "--until-caught-up"], env)
    _ok(["sink", "-c", str(kconfig), "--until-caught-up"], env)

    page = tmp_path / "catalog" / "index.html"
    result = CliRunner().invoke(
        main, ["catalog", "-c", str(econfig), "-c", str(kconfig), "--json", "--html", str(page)], env=env
    )
    assert result.exit_code == 1, result.output  # 1: a flagged breaking change
    assert stack.mariadb.password not in result.output
    tables = _by_table(json.loads(result.stdout))
    assert set(tables) == {f"{edb}.page", f"{edb}.revision", f"{kdb}.page", f"{kdb}.revision"}
    for db, kafka in ((edb, False), (kdb, True)):
        p, r = tables[f"{db}.page"], tables[f"{db}.revision"]
        assert p["owner"] == {"team": "pages-team", "contact": None} and p["description"] == "Every wiki page"
        assert (
            r["owner"] == {"team": "wiki-core", "contact": "core@example.org"} and r["domain"] == "knowledge"
        )
        assert p["freshness_slo_seconds"] == 600 and p["lag_seconds"] is not None and p["slo"] == "met"
        kinds = [c["kind"] for c in p["lineage"]["copies"]]
        assert kinds == (["topic", "serving"] if kafka else ["history", "serving"])
        assert p["lineage"]["source"].endswith(f"/{db}.page")
        serving = next(c for c in p["lineage"]["copies"] if c["kind"] == "serving")
        assert serving["rows"] == 3 and r["lineage"]["copies"][-1]["rows"] is not None
        if kafka:
            assert p["lineage"]["copies"][0]["name"] == f"{kname}.{db}.page"
        else:
            history = p["lineage"]["copies"][0]
            assert history["name"] == "wiki.page__history" and history["rows"] == 3
        versions = p["schema_versions"]
        assert len(versions) == 2, versions
        if not kafka:
            versions_of_e = versions
        assert versions[1]["change"] == "drop title" and versions[1]["compatibility"] == "breaking"
        assert versions[1]["json_schema"]["$schema"].startswith("https://json-schema.org/")
        assert p["last_reconciliation"] == "never" and p["last_bootstrap"] == "never"
    assert ename != kname

    # an embedded pipeline without a versions file (it ran before this release): its sinks' latest
    (econfig.parent / "state" / f"{ename}.schema-versions.jsonl").unlink()
    result = CliRunner().invoke(main, ["catalog", "-c", str(econfig), "--json"], env=env)
    again = _by_table(json.loads(result.stdout))
    [latest] = again[f"{edb}.page"]["schema_versions"]
    assert [c["name"] for c in latest["columns"]] == ["id"] and latest["version"] == versions_of_e[1][
        "version"
    ]

    html = page.read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: scripts/setup.sh installs it (apt-get install -y chromium)")
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert dom.count('class="table-row"') == 4
    for db in (edb, kdb):
        assert f'id="{ename if db == edb else kname}--{db}.page"' in dom
    assert dom.count("pages-team") >= 4 and dom.count("wiki-core &lt;core@example.org&gt;") >= 4
    assert "wiki.page__history" in dom and f"{kname}.{kdb}.page" in dom  # lineage nodes
    assert "(SLO met)" in dom and "drop title" in dom and "breaking" in dom
    shot = tmp_path / "catalog.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,1600", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000
    keep = Path("/tmp/catalog-screenshot.png")
    shutil.copy(shot, keep)  # for a person to look at
