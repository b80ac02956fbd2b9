"""Reports kept under state_dir/reconcile and the last result per table and copy (no services)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from cdc.core.schemas import TableRef
from reconciler.model import CopyResult, DriftKind, RepairPlan, RowDrift, Verdict
from reconciler.report import Report, last_results, save_history, summary, to_html


def _result(table: str, sink: str, drift: tuple[RowDrift, ...]) -> CopyResult:
    return CopyResult(
        TableRef("wiki", table), sink, table, Verdict.DRIFT if drift else Verdict.MATCH, 10, 10, drift, 0.5,
        "bin.000001:4", "", ("id", "note"),
    )  # fmt: skip


def test_history_keeps_every_run_and_the_last_result_per_table(tmp_path: Path) -> None:
    assert last_results(tmp_path) == ()
    drift = (
        RowDrift(DriftKind.MISSING, ("1",)),
        RowDrift(DriftKind.DIFFERENT, ("2",), ("note",), ((None, ""),)),
        RowDrift(DriftKind.EXTRA, ("9",)),
    )
    first = Report("wiki", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 1.0, (_result("page", "pg", drift),))
    save_history(tmp_path, first, RepairPlan.of(first.results))
    second = Report("wiki", dt.datetime(2026, 1, 2, tzinfo=dt.UTC), 1.0, (_result("user", "pg", ()),))
    save_history(tmp_path, second)
    assert first.exit_code == 1 and second.exit_code == 0
    kept = sorted((tmp_path / "reconcile").glob("2026*.json"))
    assert len(kept) == 2
    plan = json.loads(kept[0].read_text())["repair_plan"]
    assert plan == [{"table": "wiki.page", "sink": "pg", "upsert": [["1"], ["2"]], "delete": [["9"]]}]
    last = {(r.table, r.sink): r for r in last_results(tmp_path)}
    assert last["wiki.page", "pg"].verdict == "drift"
    assert (
        last["wiki.page", "pg"].missing,
        last["wiki.page", "pg"].extra,
        last["wiki.page", "pg"].different,
    ) == (1, 1, 1)
    assert last["wiki.user", "pg"].verdict == "match"
    assert "1 missing, 1 extra, 1 different" in summary(first)
    page = to_html(first)
    assert "<i>NULL</i>" in page and "<code></code>" in page  # NULL and '' shown apart
