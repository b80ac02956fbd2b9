"""`cdc reconcile`: compare each source table with each of its copies, report, and exit 0/1/2.

The glue between the config, the daemon's state files (where each copy would resume, idle stretch
included) and the ``reconciler`` package. ``--dry-run`` prints the RepairPlan a repair would send;
``--repair`` sends it through the stream (cdc/reconcile_repair.py) and compares those tables again.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cdc.cli_options import CONFIG_OPTION
from cdc.config.models import IcebergSinkConfig, PipelineConfig, SqlSinkConfig
from cdc.core.errors import HeadwaterError
from cdc.core.positions import RestartPoint
from cdc.core.schemas import TableRef
from cdc.core.table_filter import TableFilter

if TYPE_CHECKING:
    from reconciler.model import RepairPlan
    from reconciler.report import Report
    from reconciler.targets import Copy
    from sinks.contract import AppliedState

__all__ = ["reconcile", "reconcile_pipeline"]

Resume = Callable[["AppliedState | None"], RestartPoint | None]


def _progress_reader(config: PipelineConfig, server_id: int) -> Resume:
    """A function giving where a copy would resume, from its applied state (and the idle stretch)."""
    from cdc.daemon.embedded_resume import PipelineIdentity, ProgressFile, StartFile, sink_resume_point

    identity = PipelineIdentity(config.name, f"{config.source.host}:{config.source.port}", server_id)

    def resume(applied: AppliedState | None) -> RestartPoint | None:
        if config.stream is not None:
            return RestartPoint.after(applied.position) if applied is not None else None
        try:
            start = StartFile(config.state_dir).read(identity)
        except HeadwaterError:
            start = None
        stretch = ProgressFile(config.state_dir).read(
            tuple(config.source.tables), tuple(config.source.exclude_tables), identity
        )
        return sink_resume_point(applied, start, stretch)

    return resume


def reconcile_pipeline(
    config: PipelineConfig,
    tables: tuple[str, ...] = (),
    sink: str | None = None,
    wait_seconds: float = 30.0,
    chunk_rows: int | None = None,
    pause: float = 0.0,
) -> Report:
    """Run the comparison; returns the reconciler's Report."""
    from reconciler.compare import CompareSettings
    from reconciler.model import CopyResult
    from reconciler.report import Report
    from reconciler.run import ReconcileOptions, reconcile_copy
    from reconciler.targets import iceberg_copy, open_source, source_runner, sql_copy

    started_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    names = config.sink_names
    if sink is not None and sink not in names:
        raise click.UsageError(
            f"--sink {sink}: the config has no sink of that name (it has {', '.join(names)})"
        )
    settings = CompareSettings(pause=pause)
    if chunk_rows is not None:
        settings = CompareSettings(chunk_rows=chunk_rows, key_chunk_rows=chunk_rows, pause=pause)
    options = ReconcileOptions(settings, wait_seconds)
    runner = source_runner(config.source)
    results: list[CopyResult] = []
    errors: list[str] = []
    try:
        server_id = int(runner.query("SELECT @@server_id", ())[0][0])
        resume = _progress_reader(config, server_id)
        captured = TableFilter(tuple(config.source.tables), tuple(config.source.exclude_tables))
        if tables:
            refs = []
            for t in tables:
                db, _, name = t.partition(".")
                if not name or not captured.accepts(db, name):
                    raise click.UsageError(f"table {t!r} is not one the pipeline captures (db.table)")
                refs.append(TableRef(db, name))
        else:
            rows = runner.query(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' "
                "AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') "
                "ORDER BY 1, 2",
                (),
            )
            refs = [TableRef(str(d), str(t)) for d, t in rows if captured.accepts(str(d), str(t))]
        for ref in refs:
            try:
                source = open_source(runner, ref)
            except HeadwaterError as exc:
                errors.append(f"{ref}: {exc}")
                continue
            for name, sink_config in zip(names, config.sinks, strict=True):
                if sink is not None and name != sink:
                    continue
                if not TableFilter(tuple(sink_config.tables), tuple(sink_config.exclude_tables)).accepts(
                    ref.db, ref.table
                ):
                    continue
                copy: Copy | None = None
                try:
                    if isinstance(sink_config, SqlSinkConfig):
                        copy = sql_copy(name, sink_config, config.name, source)
                    elif isinstance(sink_config, IcebergSinkConfig):
                        copy = iceberg_copy(name, sink_config, source)
                    else:  # pragma: no cover - the config models allow no other type
                        continue
                    results.append(reconcile_copy(source, copy, _progress(resume, copy), options))
                except HeadwaterError as exc:
                    errors.append(f"{ref} -> sink {name}: {exc}")
                finally:
                    if copy is not None:
                        copy.close()
    finally:
        runner.close()
    return Report(config.name, started_at, time.monotonic() - started, tuple(results), tuple(errors))


def _progress(resume: Resume, copy: Copy) -> Callable[[], RestartPoint | None]:
    return lambda: resume(copy.applied())


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
        report = reconcile_pipeline(config, tables, sink, wait_seconds, chunk_rows, pause)
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
