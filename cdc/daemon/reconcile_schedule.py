"""Reconciliation on a schedule inside `cdc run` (APScheduler), besides `cdc reconcile` on demand.

``reconcile: {schedule: "0 3 * * *", tables: [...], repair: false}`` in the config. Each run compares
the tables with every copy exactly as `cdc reconcile` does (lag is not drift: differences are
re-checked once the copy has passed the source's position), keeps the report in
``state_dir/reconcile/`` (the history `cdc status` reads the last result from), logs the summary,
and, with ``repair: true``, sends the corrective changes through the stream, which this very daemon
then carries to every sink and consumer. A failed run is logged and the next one tries again; the
daemon goes on.
"""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from cdc.config.models import PipelineConfig

log = logging.getLogger("cdc.reconcile")

__all__ = ["run_scheduled_reconcile", "start_reconcile_schedule"]


def run_scheduled_reconcile(config: PipelineConfig) -> int:
    """One scheduled run; returns its exit code as `cdc reconcile` would (0, 1 or 2)."""
    from cdc.reconcile_pipeline import reconcile_pipeline
    from cdc.reconcile_repair import repair_drift
    from reconciler.model import RepairPlan
    from reconciler.report import save_history, summary

    schedule = config.reconcile
    assert schedule is not None
    try:
        report = reconcile_pipeline(config, tuple(schedule.tables))
    except Exception:  # the next scheduled run tries again; the daemon goes on
        log.exception("scheduled reconciliation of pipeline %s failed", config.name)
        return 2
    plan = RepairPlan.of(report.results)
    kept = save_history(config.state_dir, report, plan)
    for line in summary(report).splitlines():
        log.info("scheduled reconciliation: %s", line)
    log.info("scheduled reconciliation: report kept in %s", kept)
    if schedule.repair and plan.tables:
        return repair_drift(config, report, plan)
    return report.exit_code


def start_reconcile_schedule(config: PipelineConfig) -> BackgroundScheduler | None:
    """Schedule reconciliation when the config has a ``reconcile`` section; None otherwise."""
    schedule = config.reconcile
    if schedule is None:
        return None
    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(
        run_scheduled_reconcile,
        CronTrigger.from_crontab(schedule.schedule),
        args=[config],
        id=f"reconcile-{config.name}",
        max_instances=1,  # a run still going when the next is due: the next is skipped
        coalesce=True,
    )
    scheduler.start()
    log.info(
        "reconciliation scheduled: %s (%s)",
        schedule.schedule,
        "with repair" if schedule.repair else "report only",
    )
    return scheduler
