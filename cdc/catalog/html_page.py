"""The catalog as one static HTML page: no server, no script, no external resource.

A table of contents (every table with owner, SLO state and lag), then one section per table:
metadata, lineage as a row of boxes (source -> topic -> history -> serving), the schema versions
with what changed and its compatibility class, and each version's JSON Schema in a <details>.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from cdc.catalog.model import CatalogEntry, PipelineView

__all__ = ["render_html"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:80em}
h1{margin-bottom:0}.muted{color:#666}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.met{color:#1a7f37}.missed{color:#c62828;font-weight:bold}.unknown,.none{color:#666}
.lineage{display:flex;flex-wrap:wrap;align-items:center;gap:.4em;margin:.5em 0}
.node{border:1px solid #888;border-radius:4px;padding:.3em .6em;background:#f8fbff}
.node small{display:block;color:#666}.arrow{color:#888}
.breaking{color:#c62828;font-weight:bold}.backward{color:#1a7f37}
section{border-top:2px solid #ddd;margin-top:1.5em}pre{background:#f6f6f6;padding:.5em;overflow:auto}
.problem{color:#c62828}
"""


def _lag(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds:.0f}s"


def _lag_and_slo(t: CatalogEntry) -> str:
    if t.lag_seconds is None or t.slo_state == "none":
        return _lag(t.lag_seconds)
    return f"{_lag(t.lag_seconds)} (SLO {t.slo_state})"


def _anchor(entry: CatalogEntry) -> str:
    return escape(f"{entry.pipeline}--{entry.table}", quote=True)


def render_html(pipelines: tuple[PipelineView, ...], now: dt.datetime | None = None) -> str:
    at = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Headwater catalog</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Headwater catalog</h1>",
        f"<p class='muted'>{sum(len(p.tables) for p in pipelines)} tables in {len(pipelines)} pipeline(s),"
        f" as of {escape(at)}</p>",
        "<table id='tables'><tr><th>Pipeline</th><th>Table</th><th>Owner</th><th>Domain</th>"
        "<th>Freshness SLO</th><th>Lag</th><th>Versions</th><th>Compatibility</th></tr>",
    ]
    for p in pipelines:
        for t in p.tables:
            slo = t.product.freshness_slo_seconds
            flags = len(t.compatibility_flags)
            compat = t.product.compatibility.value + (
                f" <span class='breaking'>({flags} breaking)</span>" if flags else ""
            )
            parts.append(
                f"<tr class='table-row'><td>{escape(p.name)}</td>"
                f"<td><a href='#{_anchor(t)}'>{escape(t.table)}</a></td>"
                f"<td class='owner'>{escape(t.product.owner or '-')}</td>"
                f"<td>{escape(t.product.domain or '-')}</td>"
                f"<td>{'-' if slo is None else f'{slo:g}s'}</td>"
                f"<td class='lag {t.slo_state}'>{_lag_and_slo(t)}</td>"
                f"<td>{len(t.versions)}</td><td>{compat}</td></tr>"
            )
    parts.append("</table>")
    for p in pipelines:
        parts.append(
            f"<h2>Pipeline {escape(p.name)} "
            f"<span class='muted'>({p.mode}, source {escape(p.source)})</span></h2>"
        )
        parts += [f"<p class='problem'>{escape(problem)}</p>" for problem in p.problems]
        parts += [_section(t) for t in p.tables]
    parts.append("</body></html>")
    return "\n".join(parts)


def _section(t: CatalogEntry) -> str:
    p = t.product
    meta = [
        ("Owner", p.owner or "-"),
        ("Domain", p.domain or "-"),
        ("Description", p.description or "-"),
        ("Tags", ", ".join(p.tags) or "-"),
        ("Classification", p.classification or "-"),
        ("Freshness SLO", "-" if p.freshness_slo_seconds is None else f"{p.freshness_slo_seconds:g}s"),
        ("Lag", _lag_and_slo(t)),
        (
            "History retention",
            "kept for ever" if p.history_retention_days is None else f"{p.history_retention_days:g} days",
        ),
        ("Compatibility", f"{p.compatibility.value} (on a breaking change: {p.on_incompatible.value})"),
        ("Rows at the source", "unknown" if t.source_rows is None else f"about {t.source_rows}"),
        ("Last bootstrap", t.last_bootstrap),
        ("Last reconciliation", t.last_reconciliation),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in meta)
    nodes = [f"<span class='node source'>{escape(t.source)}<small>source table</small></span>"]
    for c in t.copies:
        detail = f"{c.kind}" + ("" if not c.sink else f", sink {c.sink}")
        detail += "" if c.rows is None else f", {c.rows} rows"
        detail += f", lag {_lag(c.lag_seconds)}"
        detail += "" if c.error is None else f", unreadable: {c.error}"
        nodes.append(
            f"<span class='arrow'>&rarr;</span><span class='node {c.kind}'>{escape(c.name)}"
            f"<small>{escape(detail)}</small></span>"
        )
    versions = [
        "<table><tr><th>#</th><th>Version</th><th>First position</th><th>Change</th><th>Class</th>"
        "<th>Columns</th></tr>"
    ]
    for n, v in enumerate(t.versions, 1):
        cls = v.compatibility or "first"
        why = f"<br><small>{escape(v.breaking)}</small>" if v.breaking else ""
        held = " (held: not let through)" if v.held else ""
        cols = ", ".join(f"{c.name} {c.source_type}" for c in v.schema.columns)
        versions.append(
            f"<tr><td>{n}</td><td><code>{escape(v.version)}</code></td><td><code>{escape(v.position)}</code></td>"
            f"<td>{escape(v.change or 'first version')}{escape(held)}</td><td class='{cls}'>{cls}{why}</td>"
            f"<td>{escape(cols)}</td></tr>"
        )
    versions.append("</table>")
    schemas = "".join(
        f"<details><summary>JSON Schema of version {n} ({escape(v.version)})</summary>"
        f"<pre>{escape(v.value_schema)}</pre></details>"
        for n, v in enumerate(t.versions, 1)
    )
    if not t.versions:
        versions = ["<p class='muted'>No schema version recorded yet (no change of this table read).</p>"]
    return (
        f"<section class='table' id='{_anchor(t)}'><h3>{escape(t.table)}</h3>"
        f"<table>{rows}</table><h4>Lineage</h4><div class='lineage'>{''.join(nodes)}</div>"
        f"<h4>Schema versions</h4>{''.join(versions)}{schemas}</section>"
    )
