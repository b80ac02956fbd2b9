"""Iceberg upkeep on a schedule inside the daemon (APScheduler), besides `cdc maintain` on demand.

Maintenance commits to the same tables the sink appends to: when both race, Iceberg's optimistic
concurrency lets one win; a losing sink commit is retried from its applied position (nothing lost),
a losing maintenance step is reported and tried again at the next run. Retention
(``history_retention_days`` in ``catalog:``) runs as part of each maintenance run.

The first run comes ``FIRST_RUN_AFTER`` (5 min) after start, then every
``maintenance_interval_hours`` (default 1): snapshot expiry is what keeps a history table's commit
cheap (see ``sinks.iceberg.maintenance``), so it must not wait for a daemon that stays up a full
interval.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

from apscheduler.schedulers.background import BackgroundScheduler

from cdc.catalog.metadata import table_product
from cdc.config.models import CatalogConfig, IcebergSinkConfig, SinkConfig
from cdc.core.schemas import TableRef

log = logging.getLogger("cdc.maintain")

# the first run after the daemon starts (or one interval, if shorter): soon, but not in the start-up
FIRST_RUN_AFTER = dt.timedelta(minutes=5)


def retention_of(catalog: CatalogConfig | None) -> Callable[[TableRef], dt.timedelta | None]:
    """Each source table's ``history_retention_days`` (pipeline value, then matching patterns)."""

    def period(ref: TableRef) -> dt.timedelta | None:
        return table_product(catalog, ref.db, ref.table).retention

    return period


def run_maintenance(config: IcebergSinkConfig, pipeline: str, catalog: CatalogConfig | None = None) -> None:
    from sinks.iceberg import maintain

    try:
        report = maintain(config, pipeline, retention=retention_of(catalog))
    except Exception:  # the next scheduled run tries again; the daemon goes on
        log.exception("iceberg maintenance of %s failed", config.namespace)
        return
    failed = [f for t in report.tables for f in t.failed]
    log.info(
        "iceberg maintenance of %s: %d tables, files %d -> %d, %d snapshots expired, %d rows deleted "
        "by retention, %d files (%d bytes) removed from storage%s",
        config.namespace,
        len(report.tables),
        report.files_before,
        report.files_after,
        report.snapshots_expired,
        report.rows_deleted,
        report.files_removed,
        report.bytes_removed,
        f"; skipped (a concurrent commit won): {failed}" if failed else "",
    )


def start_maintenance(
    sinks: Sequence[SinkConfig], pipeline: str, catalog: CatalogConfig | None = None
) -> BackgroundScheduler | None:
    """Schedule maintenance for every Iceberg sink whose ``maintenance_interval_hours`` is set."""
    jobs = [s for s in sinks if isinstance(s, IcebergSinkConfig) and s.maintenance_interval_hours > 0]
    if not jobs:
        return None
    scheduler = BackgroundScheduler(daemon=True)
    for sink in jobs:
        interval = dt.timedelta(hours=sink.maintenance_interval_hours)
        scheduler.add_job(
            run_maintenance,
            "interval",
            hours=sink.maintenance_interval_hours,
            args=(sink, pipeline, catalog),
            id=f"maintain-{sink.namespace}",
            max_instances=1,
            coalesce=True,
            # an interval job first fires one interval after start: a daemon restarted more often
            # than that never expired a snapshot, and each commit grew dearer with the snapshot count
            next_run_time=dt.datetime.now(dt.UTC) + min(interval, FIRST_RUN_AFTER),
        )
        log.info("iceberg maintenance of %s every %gh", sink.namespace, sink.maintenance_interval_hours)
    scheduler.start()
    return scheduler
