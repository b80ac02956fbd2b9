"""Reports: JSON for machines, a static HTML page for data owners, a short summary for stdout, and the
history kept under ``state_dir/reconcile/`` (one JSON per run, plus ``last.json``: the last result per
table and copy, which ``cdc status`` reads through :func:`last_results`)."""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass
from pathlib import Path

from reconciler.model import CopyResult, DriftKind, RepairPlan, Verdict

__all__ = ["LastResult", "Report", "last_results", "save_history", "summary", "to_html", "to_json"]

SAMPLE_ROWS = 50  # drift rows listed per copy in a report (counts are always complete)


@dataclass(frozen=True, slots=True)
class Report:
    pipeline: str
    started_at: dt.datetime
    seconds: float
    results: tuple[CopyResult, ...]
    errors: tuple[str, ...] = ()  # tables or copies that could not be compared, and why
    # tables found by the scan (not named) that cannot be compared by design (no primary key): told,
    # not failed, or a schema with a keyless table (MediaWiki has four) could never reconcile clean
    not_compared: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        if self.errors or any(r.verdict is Verdict.ERROR for r in self.results):
            return 2
        return 1 if any(r.verdict is not Verdict.MATCH for r in self.results) else 0


@dataclass(frozen=True, slots=True)
class LastResult:
    """The last reconciliation of one table in one copy (for `cdc status` and `cdc catalog`)."""

    table: str
    sink: str
    verdict: str
    at: str  # ISO time the run started
    missing: int
    extra: int
    different: int
    report: str  # the JSON report's path


def _result_json(r: CopyResult) -> dict[str, object]:
    return {
        "table": str(r.table),
        "sink": r.sink,
        "target": r.target,
        "verdict": r.verdict.value,
        "rows_source": r.rows_source,
        "rows_copy": r.rows_copy,
        "drift": {k.value: r.count(k) for k in DriftKind},
        "samples": [
            {
                "kind": d.kind.value,
                "key": list(d.key),
                "columns": list(d.columns),
                "values": [
                    {"column": c, "source": v[0], "copy": v[1]}
                    for c, v in zip(d.columns, d.values, strict=True)
                ],
            }
            for d in r.drift[:SAMPLE_ROWS]
        ],
        "seconds": round(r.seconds, 3),
        "source_position": r.source_position,
        "copy_position": r.copy_position,
        "columns_compared": list(r.columns_compared),
        "columns_not_in_copy": list(r.columns_not_in_copy),
        "message": r.message,
    }


def to_json(report: Report, plan: RepairPlan | None = None) -> str:
    out: dict[str, object] = {
        "pipeline": report.pipeline,
        "started_at": report.started_at.isoformat(),
        "seconds": round(report.seconds, 3),
        "exit_code": report.exit_code,
        "results": [_result_json(r) for r in report.results],
        "errors": list(report.errors),
        "not_compared": list(report.not_compared),
    }
    if plan is not None:
        out["repair_plan"] = [
            {"table": str(p.table), "sink": p.sink, "upsert": [list(k) for k in p.upsert_keys],
             "delete": [list(k) for k in p.delete_keys]}
            for p in plan.tables
        ]  # fmt: skip
    return json.dumps(out, indent=2)


def summary(report: Report) -> str:
    lines = []
    for r in report.results:
        counts = ", ".join(f"{r.count(k)} {k.value}" for k in DriftKind if r.count(k))
        lines.append(
            f"{r.verdict.value.upper():8} {r.table} -> {r.sink} ({r.target}): {r.rows_source} source rows, "
            f"{r.rows_copy} copy rows" + (f"; {counts}" if counts else "") + f" [{r.seconds:.2f}s]"
        )
        if r.message:
            lines.append(f"         {r.message}")
    for n in report.not_compared:
        lines.append(f"SKIPPED  {n}")
    for e in report.errors:
        lines.append(f"ERROR    {e}")
    verdict = {0: "every copy matches its source", 1: "drift found", 2: "errors"}[report.exit_code]
    lines.append(f"reconcile {report.pipeline}: {verdict} ({report.seconds:.1f}s)")
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.match{color:#176317}.drift,.error{color:#a31515;font-weight:bold}.behind{color:#a36b00;font-weight:bold}
code{background:#f4f4f4;padding:0 3px}
"""


def to_html(report: Report) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Reconciliation of {e(report.pipeline)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Reconciliation of pipeline {e(report.pipeline)}</h1>",
        f"<p id='summary'>Started {e(report.started_at.isoformat(timespec='seconds'))}, took "
        f"{report.seconds:.1f}s. Verdict: <b>{e(summary(report).splitlines()[-1])}</b></p>",
        "<table id='overview'><tr><th>table</th><th>copy</th><th>verdict</th><th>rows (source / copy)</th>"
        "<th>missing</th><th>extra</th><th>different</th><th>duration</th><th>positions compared</th></tr>",
    ]
    for r in report.results:
        parts.append(
            f"<tr><td>{e(str(r.table))}</td><td>{e(r.sink)} ({e(r.target)})</td>"
            f"<td class='{r.verdict.value}'>{e(r.verdict.value)}</td><td>{r.rows_source} / {r.rows_copy}</td>"
            f"<td>{r.count(DriftKind.MISSING)}</td><td>{r.count(DriftKind.EXTRA)}</td>"
            f"<td>{r.count(DriftKind.DIFFERENT)}</td><td>{r.seconds:.2f}s</td>"
            f"<td>source <code>{e(r.source_position)}</code><br>"
            f"copy <code>{e(r.copy_position)}</code></td></tr>"
        )
    parts.append("</table>")
    for r in report.results:
        if not r.drift and not r.message:
            continue
        parts.append(f"<h2>{e(str(r.table))} in {e(r.sink)}</h2>")
        if r.message:
            parts.append(f"<p>{e(r.message)}</p>")
        if r.columns_not_in_copy:
            parts.append(f"<p>Columns not in the copy: {e(', '.join(r.columns_not_in_copy))}</p>")
        parts.append("<table class='samples'><tr><th>kind</th><th>key</th><th>column</th><th>source</th>"
                     "<th>copy</th></tr>")  # fmt: skip
        for d in r.drift[:SAMPLE_ROWS]:
            key = e(", ".join(d.key))
            if not d.columns:
                parts.append(f"<tr><td>{d.kind.value}</td><td>{key}</td><td></td><td></td><td></td></tr>")
            for c, (a, b) in zip(d.columns, d.values, strict=True):
                parts.append(
                    f"<tr><td>{d.kind.value}</td><td>{key}</td><td>{e(c)}</td><td>{_shown(a)}</td>"
                    f"<td>{_shown(b)}</td></tr>"
                )
        if len(r.drift) > SAMPLE_ROWS:
            parts.append(f"<p>... and {len(r.drift) - SAMPLE_ROWS} more (see the JSON report)</p>")
        parts.append("</table>")
    for skipped in report.not_compared:
        parts.append(f"<p>Not compared: {e(skipped)}</p>")
    for err in report.errors:
        parts.append(f"<p class='error'>{e(err)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _shown(value: str | None) -> str:
    return "<i>NULL</i>" if value is None else f"<code>{html.escape(repr(value)[1:-1])}</code>"


def save_history(state_dir: Path, report: Report, plan: RepairPlan | None = None) -> Path:
    """Keep the report under ``state_dir/reconcile/`` and update the last result per table and copy."""
    folder = state_dir / "reconcile"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = report.started_at.strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stamp}.json"
    path.write_text(to_json(report, plan))
    last_path = folder / "last.json"
    last = json.loads(last_path.read_text()) if last_path.exists() else {}
    for r in report.results:
        last[f"{r.table}|{r.sink}"] = {
            "table": str(r.table), "sink": r.sink, "verdict": r.verdict.value,
            "at": report.started_at.isoformat(), "missing": r.count(DriftKind.MISSING),
            "extra": r.count(DriftKind.EXTRA), "different": r.count(DriftKind.DIFFERENT), "report": str(path),
        }  # fmt: skip
    tmp = last_path.with_name("last.json.tmp")
    tmp.write_text(json.dumps(last, indent=2, sort_keys=True))
    tmp.replace(last_path)
    return path


def last_results(state_dir: Path) -> tuple[LastResult, ...]:
    """The last reconciliation result per table and copy (empty if none ran)."""
    path = state_dir / "reconcile" / "last.json"
    if not path.exists():
        return ()
    raw = json.loads(path.read_text())
    return tuple(
        LastResult(
            str(v["table"]),
            str(v["sink"]),
            str(v["verdict"]),
            str(v["at"]),
            int(v["missing"]),
            int(v["extra"]),
            int(v["different"]),
            str(v["report"]),
        )
        for _, v in sorted(raw.items())
    )
