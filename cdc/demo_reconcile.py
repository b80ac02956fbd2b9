"""The demo's last step: drift injected into the serving copy, found by `cdc reconcile`, repaired.

Someone "fixes" the SQLite copy by hand: a page row deleted, a title changed, a row the wiki never had.
The reconciliation compares every copy with the source and finds exactly those three rows; the
repair sends the source's rows (and a delete for the extra one) through the stream, so every copy
(the Iceberg history too) receives the correction; a second comparison finds every copy equal. The
HTML report for the data owner is written under the state directory.
"""

from __future__ import annotations

import threading
from pathlib import Path

import click
import sqlalchemy as sa

from cdc.config.models import PipelineConfig, SqlSinkConfig

__all__ = ["reconcile_step"]


def _inject_drift(config: PipelineConfig) -> str:
    sqlite = next(s for s in config.sinks if isinstance(s, SqlSinkConfig) and s.url.startswith("sqlite"))
    engine = sa.create_engine(sqlite.url)
    try:
        with engine.begin() as conn:
            ids = [r[0] for r in conn.execute(sa.text("SELECT page_id FROM page ORDER BY page_id LIMIT 2"))]
            if len(ids) < 2:
                raise click.ClickException("the demo wiki has fewer than two pages to drift")
            conn.execute(sa.text("DELETE FROM page WHERE page_id = :id"), {"id": ids[0]})
            conn.execute(
                sa.text("UPDATE page SET page_title = :t WHERE page_id = :id"),
                {"t": b"Vandalised", "id": ids[1]},
            )
            extra = conn.execute(sa.text("SELECT max(page_id) FROM page")).scalar_one() + 1000
            conn.execute(
                sa.text(
                    "INSERT INTO page (page_id, page_namespace, page_title, page_is_redirect, page_touched,"
                    " page_latest, page_len) VALUES (:id, 0, :t, 0, :touched, 0, 0)"
                ),
                {"id": extra, "t": b"Never_in_the_wiki", "touched": b"20240101000000"},
            )
    finally:
        engine.dispose()
    return f"page {ids[0]} deleted, page {ids[1]}'s title changed, page {extra} added"


def reconcile_step(config: PipelineConfig, config_path: Path, step: int) -> None:
    """With `cdc run` running (here, on a thread, holding the pipeline's run lock as the real one
    does), so that the copies follow the source and the repair goes through the daemon."""
    from cdc.daemon.embedded_wiring import embedded_daemon
    from cdc.daemon.run_lock import RunLock

    lock = RunLock(config.state_dir, config.name)
    if not lock.acquire():
        raise click.ClickException(f"a `cdc run` of pipeline {config.name!r} is running: stop it first")
    daemon = embedded_daemon(config, until_caught_up=False, idle_flush_seconds=0.5)
    runner = threading.Thread(target=daemon.run, name="cdc-run", daemon=True)
    runner.start()
    try:
        _reconcile_and_repair(config, config_path, step)
    finally:
        daemon.request_stop()
        runner.join(60)
        lock.release()


def _reconcile_and_repair(config: PipelineConfig, config_path: Path, step: int) -> None:
    from cdc.reconcile_pipeline import reconcile_pipeline
    from cdc.reconcile_repair import repair_drift
    from reconciler.model import RepairPlan
    from reconciler.report import save_history, summary, to_html

    drift = _inject_drift(config)
    click.echo(f"\n{step}. drift injected straight into the SQLite copy ({drift}); `cdc reconcile`:")
    report = reconcile_pipeline(config, ("wikidb.page",))
    plan = RepairPlan.of(report.results)
    save_history(config.state_dir, report, plan)
    html_path = config.state_dir / "reconcile" / "report.html"
    html_path.write_text(to_html(report))
    for line in summary(report).splitlines():
        click.echo(f"   {line}")
    click.echo(f"   HTML report for the data owner: {html_path}")
    if not plan.tables:
        raise click.ClickException("the reconciliation did not find the injected drift")
    click.echo(f"   repairing through the stream (`cdc reconcile -c {config_path} --repair`):")
    code = repair_drift(config, report, plan)
    if code != 0:
        raise click.ClickException(f"the repair did not leave every copy equal (exit {code})")
    click.echo("   every copy matches its source again")
