"""The benchmarks keep working: a smoke-sized run writes every figure (no time is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from cdc.devstack.connections import StackConnections

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # every benchmark at smoke size: about two minutes


def test_smoke_run_reports_every_figure(stack: StackConnections, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--size", "smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "latest.json").read_text())

    for workload in ("bulk", "single"):
        figures = result["capture"][workload]
        for name in ("headwater", "mariadb_binlog", "library", "reader_only", "decode_only"):
            assert figures[name]["rows"] > 0 and figures[name]["rows_per_s"] > 0, (workload, name)
        assert figures["headwater"]["rows"] == figures["range"]["rows"]
        assert figures["headwater"]["peak_rss_mb"] > 0
    for target in ("postgresql", "mariadb", "sqlite", "iceberg"):
        for mode in ("embedded", "kafka", "reference"):
            figure = result["sinks"][target][mode]
            assert figure["rows"] > 0 and figure["rows_per_s"] > 0, (target, mode)
        assert result["sinks"][target]["embedded"]["rows"] == result["sinks"]["range"]["rows"]
        assert result["sinks"][target]["kafka"]["rows"] == result["sinks"]["range"]["rows"]
    for size in ("txn_small", "txn_large"):
        assert result["memory"][size]["peak_rss_mb"] > 0
    assert isinstance(result["memory"]["flat"], bool)
    e2e = result["e2e"]
    assert e2e["changes"] > 0 and e2e["p50_s"] >= 0 and e2e["p99_s"] >= e2e["p50_s"]
    assert e2e["steps"] and "max_sustained_rate" in e2e
    assert set(e2e["peak_rss_mb"]) == {"cdc_run", "cdc_sink"}
    p = stack.postgres
    with psycopg.connect(
        host=p.host, port=p.port, user=p.user, password=p.password, dbname=p.database
    ) as conn:
        left = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (e2e["pipeline"],)).fetchone()
    assert left is None, "the end-to-end run leaves its sink's PostgreSQL schema behind"
    assert set(result["targets"]) == {
        "capture_multi_row",
        "capture_multi_row_vs_mariadb_binlog",
        "capture_single_row_vs_mariadb_binlog",
        "postgresql_apply",
        "iceberg_apply",
        "sqlite_apply_vs_reference",
        "mariadb_apply_vs_reference",
        "e2e_p99",
        "e2e_max_rate",
        "memory_flat",
    }
    assert all(isinstance(t["met"], bool) for t in result["targets"].values())
    boot = result["bootstrap"]  # issue 9: read rate and `cdc bootstrap` into each target
    assert boot["read"]["ratio"] > 0
    for sink in ("iceberg", "postgresql", "kafka"):
        assert boot[sink]["bootstrap"]["rows"] == boot["table"]["rows"], sink
        assert boot[sink]["bootstrap"]["rows_per_cpu_s"] > 0 and boot[sink]["reference"]["rows_per_s"] > 0
    assert all(isinstance(t["met"], bool) for t in boot["targets"].values())
    markdown = (tmp_path / "latest.md").read_text()
    assert "## Targets" in markdown and "mariadb-binlog" in markdown
