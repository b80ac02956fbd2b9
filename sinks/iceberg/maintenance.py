"""Iceberg upkeep for one pipeline's tables (``cdc maintain``): compact closed days, expire snapshots.

pyiceberg 0.12 has no compaction, so it is done here with what it has: for every *closed* partition
(a ``_source_ts`` day before today, UTC) holding more than one data file, the partition's rows are read
(in position order) and written back as one file by ``overwrite`` with a filter on exactly that day,
in one transaction: readers see either the old files or the new one. The row count is checked after
the commit. The snapshots it makes carry the table's ``headwater.*`` summary properties forward, so
the sink's stored position (and ``applied()``) is unchanged.

Snapshot expiry keeps the current snapshot and its ``retain_last`` - 1 ancestors, and expires the others
older than ``older_than`` (``table.maintenance.expire_snapshots()``), and whatever their age the oldest
past ``max_snapshots`` (the cap the sink applies after its commits: ``snapshot_bound``). The age
defaults (1 hour, run every hour by the daemon) are short on purpose: the sink commits every
``commit_seconds`` and each commit costs ~0.17 ms more CPU per snapshot the table holds (pyiceberg
copies, parses and rewrites the whole snapshot list; ``benchmarks/iceberg_snapshot_cost.py``), so 7 days
of snapshots (~20k) made every commit cost seconds. Nothing Headwater reads needs an old snapshot: ``cdc
history --at`` reads the rows' ``_position``/``_source_ts``, and the sink's state (position, offsets,
writer claim) is carried in every snapshot it makes and by compaction's, so the newest one holds it.
pyiceberg 0.12 removes them from the metadata only, so the data and manifest files that only they
referenced are then deleted here (``sinks.iceberg.retention.expire_removing_files``: never a file a live
snapshot uses).

Retention (``history_retention_days``, resolved per source table by the caller) runs first, so that
days about to be deleted are not compacted: see :mod:`sinks.iceberg.retention`.

A commit that races the running sink fails (optimistic concurrency) and leaves the table untouched; it
is reported and the next run retries.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from cdc.config.models import IcebergSinkConfig
from sinks.iceberg.catalogs import open_catalog
from sinks.iceberg.history_schema import PIPELINE_PROPERTY, POSITION, SOURCE_TS, arrow_schema_of
from sinks.iceberg.retention import (
    ORPHAN_MIN_AGE,
    RetentionOf,
    RetentionResult,
    apply_retention,
    expire_removing_files,
    source_of,
)
from sinks.iceberg.snapshot_bound import ensure_commit_properties, past_the_cap
from sinks.iceberg.snapshot_state import PIPELINE_KEY, state_properties, stored_state
from sinks.iceberg.table_writer import align_to

__all__ = ["MaintenanceReport", "TableMaintenance", "maintain"]

log = logging.getLogger(__name__)
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class TableMaintenance:
    identifier: str
    files_before: int
    files_after: int
    snapshots_before: int
    snapshots_after: int
    partitions_rewritten: tuple[str, ...]  # ISO days
    rows_rewritten: int
    snapshots_expired: int
    failed: tuple[str, ...] = ()  # what was skipped because a concurrent commit won
    files_removed: int = 0  # files of expired snapshots deleted from storage (retention's included)
    bytes_removed: int = 0
    retention: RetentionResult | None = None  # None: the table has no retention period


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    tables: tuple[TableMaintenance, ...]

    @property
    def files_before(self) -> int:
        return sum(t.files_before for t in self.tables)

    @property
    def files_after(self) -> int:
        return sum(t.files_after for t in self.tables)

    @property
    def snapshots_expired(self) -> int:
        return sum(t.snapshots_expired for t in self.tables)

    @property
    def rows_deleted(self) -> int:
        """Rows deleted by retention."""
        return sum(t.retention.rows_deleted for t in self.tables if t.retention is not None)

    @property
    def files_removed(self) -> int:
        return sum(t.files_removed for t in self.tables)

    @property
    def bytes_removed(self) -> int:
        return sum(t.bytes_removed for t in self.tables)


def maintain(
    config: IcebergSinkConfig,
    pipeline: str,
    older_than: dt.timedelta | None = None,
    retain_last: int | None = None,
    now: dt.datetime | None = None,
    base_dir: Path | None = None,
    retention: RetentionOf | None = None,
    orphan_min_age: dt.timedelta = ORPHAN_MIN_AGE,
    max_snapshots: int | None = None,
) -> MaintenanceReport:
    """Apply retention, compact closed partitions, then expire snapshots, of every table the pipeline writes.

    ``older_than`` and ``retain_last`` default to the config's ``maintenance_older_than_days`` (1/24:
    one hour) and ``maintenance_retain_last`` (5). ``retention`` gives each source table's retention period
    (None: kept for ever); ``orphan_min_age``: how old an unreferenced file must be before
    retention deletes it (younger ones may belong to a commit in flight). ``max_snapshots`` (the
    config's, 250) caps a history table's snapshots whatever their age, as the sink does after its
    commits (:mod:`sinks.iceberg.snapshot_bound`). History tables from before manifest merging get
    its table properties here.
    """
    if older_than is None:
        older_than = dt.timedelta(days=config.maintenance_older_than_days)
    if retain_last is None:
        retain_last = config.maintenance_retain_last
    if retain_last < 1:
        raise ValueError("retain_last must be at least 1 (the current snapshot)")
    cap = max(config.max_snapshots if max_snapshots is None else max_snapshots, retain_last)
    now = now or dt.datetime.now(dt.UTC)
    catalog = open_catalog(config.catalog, base_dir)
    reports = []
    for identifier in sorted(catalog.list_tables(config.namespace)):
        table = catalog.load_table(identifier)
        if table.properties.get(PIPELINE_PROPERTY) != pipeline:
            continue
        name = ".".join(identifier)
        kept = None
        failed: tuple[str, ...] = ()
        source = source_of(table)
        if source is not None:  # a history table (not the progress table)
            ensure_commit_properties(table, name)
        if retention is not None and source is not None:
            period = retention(source)
            if period is not None:
                try:
                    kept = apply_retention(table, name, pipeline, period, now, orphan_min_age)
                except CommitFailedException as exc:
                    log.warning(
                        "iceberg maintain: %s retention not applied (next run retries): %s", name, exc
                    )
                    table.refresh()
                    failed = ("retention",)
        reports.append(
            _maintain_table(name, table, pipeline, older_than, (retain_last, cap), now, kept, failed)
        )
    return MaintenanceReport(tuple(reports))


def _files(table: Table) -> list[tuple[object, str]]:
    return [(task.file.partition, task.file.file_path) for task in table.scan().plan_files()]


def _maintain_table(
    identifier: str,
    table: Table,
    pipeline: str,
    older_than: dt.timedelta,
    keep: tuple[int, int],  # (retain_last, max_snapshots)
    now: dt.datetime,
    retention: RetentionResult | None,
    retention_failed: tuple[str, ...],
) -> TableMaintenance:
    files_before = len(_files(table))  # after retention: its own counts are in `retention`
    snapshots_before = len(table.metadata.snapshots)
    rewritten: list[str] = []
    failed: list[str] = list(retention_failed)
    rows_rewritten = 0
    if table.spec().fields and table.schema().find_field(SOURCE_TS) is not None:
        for day in _closed_days_to_compact(table, now):
            try:
                rows_rewritten += _compact_day(table, day, pipeline)
                rewritten.append(day.isoformat())
            except CommitFailedException as exc:
                log.warning("iceberg maintain: %s day %s not compacted: %s", identifier, day, exc)
                failed.append(f"compact {day.isoformat()}")
    expired = files_removed = bytes_removed = 0
    if retention is not None:
        expired = retention.snapshots_expired
        files_removed, bytes_removed = retention.files_removed, retention.bytes_removed
    try:
        ids = _expirable(table, now - older_than, *keep)
        removed = expire_removing_files(table, ids)
        expired += len(ids)
        files_removed += removed.files
        bytes_removed += removed.bytes
    except CommitFailedException as exc:
        log.warning("iceberg maintain: %s snapshots not expired: %s", identifier, exc)
        failed.append("expire")
    report = TableMaintenance(
        identifier=identifier,
        files_before=files_before,
        files_after=len(_files(table)),
        snapshots_before=snapshots_before,
        snapshots_after=len(table.metadata.snapshots),
        partitions_rewritten=tuple(rewritten),
        rows_rewritten=rows_rewritten,
        snapshots_expired=expired,
        failed=tuple(failed),
        files_removed=files_removed,
        bytes_removed=bytes_removed,
        retention=retention,
    )
    log.info(
        "iceberg maintain: %s files %d -> %d, snapshots %d -> %d, days rewritten %s, "
        "%d files (%d bytes) removed from storage",
        identifier,
        report.files_before,
        report.files_after,
        report.snapshots_before,
        report.snapshots_after,
        ",".join(rewritten) or "none",
        files_removed,
        bytes_removed,
    )
    return report


def _closed_days_to_compact(table: Table, now: dt.datetime) -> list[dt.date]:
    today = (now.astimezone(dt.UTC).date() - _EPOCH).days
    per_day: dict[int, int] = defaultdict(int)
    for partition, _path in _files(table):
        day = partition[0]  # type: ignore[index]  # the day(_source_ts) field, days since epoch
        if day is not None:
            per_day[int(day)] += 1
    return [_EPOCH + dt.timedelta(days=d) for d, n in sorted(per_day.items()) if d < today and n > 1]


def _compact_day(table: Table, day: dt.date, pipeline: str) -> int:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    where = f"{SOURCE_TS} >= '{start.isoformat()}' and {SOURCE_TS} < '{end.isoformat()}'"
    rows = table.scan(row_filter=where).to_arrow().sort_by(POSITION)
    state = stored_state(table)
    properties = state_properties(pipeline, state) if state is not None else {PIPELINE_KEY: pipeline}
    data = align_to(rows, arrow_schema_of(table.schema()))
    with table.transaction() as txn:
        txn.overwrite(data, overwrite_filter=where, snapshot_properties=properties)
    after: int = table.scan(row_filter=where).count()
    if after != rows.num_rows:  # cannot happen short of a pyiceberg bug; stop loudly if it does
        raise RuntimeError(f"compaction of {day} changed the row count: {rows.num_rows} -> {after}")
    return int(rows.num_rows)


def _expirable(
    table: Table, cutoff: dt.datetime, retain_last: int, max_snapshots: int | None = None
) -> list[int]:
    """Snapshots older than ``cutoff`` but the ``retain_last`` newest; the oldest past ``max_snapshots``."""
    over = set(past_the_cap(table, max_snapshots)) if max_snapshots is not None else set()
    keep: set[int] = set()
    snapshot = table.current_snapshot()
    while snapshot is not None and len(keep) < retain_last:
        keep.add(snapshot.snapshot_id)
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    keep |= {ref.snapshot_id for ref in table.metadata.refs.values()}  # heads and tags: pyiceberg refuses
    cutoff_ms = int(cutoff.timestamp() * 1000)
    return [
        s.snapshot_id
        for s in table.metadata.snapshots
        if (s.timestamp_ms < cutoff_ms and s.snapshot_id not in keep) or s.snapshot_id in over
    ]
