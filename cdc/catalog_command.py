"""`cdc catalog -c CONFIG... [--json] [--html PATH]`: every table of every pipeline given, with owner,
description, lineage (source table -> topic -> history table -> serving tables), schema versions and
their compatibility class, freshness SLO against the current lag, row counts, the last bootstrap and
the last reconciliation.

Exit 0 when everything could be read and every table with an SLO meets it; 1 when a table misses its
SLO or a change broke a table's compatibility policy; 2 when a config is invalid or a pipeline could
not be read at all.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from cdc.catalog.model import CatalogEntry, PipelineView

__all__ = ["catalog"]


@click.command()
@click.option(
    "-c",
    "--config",
    "config_paths",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Pipeline config file (YAML); give one per pipeline, as many as the platform has.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the catalog as one static HTML page here.",
)
def catalog(config_paths: tuple[Path, ...], as_json: bool, html_path: Path | None) -> None:
    """Every table of the pipelines given: owner, lineage, schema versions, SLO and lag."""
    from cdc.catalog.collect import collect_pipeline
    from cdc.catalog.html_page import render_html
    from cdc.catalog.model import catalog_json
    from cdc.cli_options import load_or_exit

    configs = [load_or_exit(path) for path in config_paths]
    root = logging.getLogger()
    if root.level == logging.INFO:  # the sinks' "opened" lines are noise here
        root.setLevel(logging.WARNING)
    pipelines = tuple(collect_pipeline(config) for config in configs)
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(pipelines), encoding="utf-8")
    if as_json:
        click.echo(catalog_json(pipelines))
    else:
        _echo_text(pipelines)
        if html_path is not None:
            click.echo(f"\nHTML page: {html_path}")
    sys.exit(_exit_code(pipelines))


def _exit_code(pipelines: tuple[PipelineView, ...]) -> int:
    if any(not p.tables and p.problems for p in pipelines):
        return 2
    tables = [t for p in pipelines for t in p.tables]
    return 1 if any(t.slo_state == "missed" or t.compatibility_flags for t in tables) else 0


def _echo_text(pipelines: tuple[PipelineView, ...]) -> None:
    for p in pipelines:
        click.echo(f"pipeline {p.name} ({p.mode}, source {p.source}): {len(p.tables)} tables")
        for problem in p.problems:
            click.echo(f"  problem: {problem}")
        for t in p.tables:
            _echo_table(t)


def _echo_table(t: CatalogEntry) -> None:
    p = t.product
    slo = "no SLO" if p.freshness_slo_seconds is None else f"SLO {p.freshness_slo_seconds:g}s"
    lag = "unknown" if t.lag_seconds is None else f"{t.lag_seconds:.0f}s"
    click.echo(f"  {t.table}")
    click.echo(
        f"    owner      {p.owner or '-'}   domain {p.domain or '-'}"
        f"   classification {p.classification or '-'}"
    )
    if p.description:
        click.echo(f"    about      {p.description}")
    click.echo(f"    freshness  lag {lag}, {slo}: {t.slo_state}")
    if p.history_retention_days is not None:
        click.echo(f"    retention  history kept {p.history_retention_days:g} days")
    click.echo(f"    lineage    {' -> '.join(t.lineage)}")
    rows = ", ".join(f"{c.name}: {c.rows}" for c in t.copies if c.rows is not None)
    source_rows = "unknown" if t.source_rows is None else f"about {t.source_rows}"
    click.echo(f"    rows       source {source_rows}" + (f"; {rows}" if rows else ""))
    flags = len(t.compatibility_flags)
    compat = f"{p.compatibility.value}" + (f", {flags} breaking change(s)" if flags else "")
    click.echo(f"    schema     {len(t.versions)} version(s), compatibility {compat}")
    for v in t.versions[1:]:
        held = " [held]" if v.held else ""
        click.echo(f"               {v.version}: {v.change} ({v.compatibility}){held}")
    click.echo(f"    bootstrap  {t.last_bootstrap}")
    click.echo(f"    reconciled {t.last_reconciliation}")
