"""`cdc reconcile`: compare each source table with each of its copies, report, and exit 0/1/2.

The glue between the config, the daemon's state files (where each copy would resume, idle stretch
included) and the ``reconciler`` package. ``--dry-run`` prints the RepairPlan a repair would send;
``--repair`` sends it through the stream (cdc/reconcile_repair.py) and compares those tables again.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cdc.cli_options import CONFIG_OPTION
from cdc.core.errors import HeadwaterError
from cdc.reconcile_pipeline import reconcile_pipeline

if TYPE_CHECKING:
    from reconciler.model import RepairPlan
    from reconciler.report import Report

__all__ = ["reconcile", "reconcile_pipeline"]


def _write_reports(report: Report, plan: RepairPlan, path: Path) -> tuple[Path, Path]:
    from reconciler.report import to_html, to_json

    html_path = path if path.suffix in (".html", ".htm") else path.with_suffix(".html")
    json_path = path if path.suffix == ".json" else path.with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(to_json(report, plan))
    html_path.write_text(to_html(report))
    return json_path, html_path


@click.command()
@CONFIG_OPTION
@click.argument("tables", nargs=-1)
@click.option(
    "--sink", "sink", default=None, help="Compare only this sink's copies (its name in the config)."
)
@click.option(
    "--repair",
    is_flag=True,
    help="Send the source's rows for the drifted keys (deletes for keys it lacks) through the stream, "
    "so every copy and consumer gets them; then compare those tables again.",
)
@click.option("--dry-run", is_flag=True, help="Print the repair plan: the keys a repair would re-send.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report here: PATH.json and PATH.html (both written, whichever suffix is given).",
)
@click.option("--wait", "wait_seconds", default=30.0, show_default=True,
              help="Seconds a copy may take to reach the source's position in each re-check.")  # fmt: skip
@click.option(
    "--chunk-rows",
    default=None,
    type=int,
    help="Rows per first-level chunk (default: 32 for integer keys, else 1000).",
)
@click.option("--pause", default=0.0, show_default=True,
              help="Throttle: after each step, sleep this fraction of the step's time.")  # fmt: skip
@click.option("--chunk-seconds", default=0.0, show_default=True,
              help="Throttle: time target per slice of a table (integer keys); the slice size adapts "
              "toward it (0: slices of about 250k rows).")  # fmt: skip
@click.option("--max-lag", default=0.0, show_default=True,
              help="Throttle: before each slice, pause while the copy has not reached where the source "
              "was this many seconds ago (up to --wait seconds; 0: never pause).")  # fmt: skip
def reconcile(
    config_path: Path,
    tables: tuple[str, ...],
    sink: str | None,
    repair: bool,
    dry_run: bool,
    report_path: Path | None,
    wait_seconds: float,
    chunk_rows: int | None,
    pause: float,
    chunk_seconds: float,
    max_lag: float,
) -> None:
    """Compare each source table with each of its copies (serving tables, Iceberg history).

    Differences are re-checked once the copy has passed the source's position, so lag is not
    reported as drift. Exit 0: every copy matches; 1: drift found (or a copy too far behind to
    tell); 2: an error. Reports are kept under state_dir/reconcile/ (last.json: last result per table).
    """
    from cdc.cli_options import load_or_exit
    from reconciler.model import RepairPlan
    from reconciler.report import save_history, summary

    config = load_or_exit(config_path)
    try:
        report = reconcile_pipeline(
            config, tables, sink, wait_seconds, chunk_rows, pause, chunk_seconds, max_lag
        )
    except HeadwaterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    plan = RepairPlan.of(report.results)
    kept = save_history(config.state_dir, report, plan)
    click.echo(summary(report))
    if dry_run:
        click.echo(plan.describe())
    click.echo(f"report kept in {kept}")
    if report_path is not None:
        json_path, html_path = _write_reports(report, plan, report_path)
        click.echo(f"report written to {json_path} and {html_path}")
    if repair and not dry_run and plan.tables:
        from cdc.reconcile_repair import repair_drift

        try:
            sys.exit(repair_drift(config, report, plan))
        except HeadwaterError as exc:
            click.echo(f"error: the repair failed: {exc}", err=True)
            sys.exit(2)
    sys.exit(report.exit_code)
