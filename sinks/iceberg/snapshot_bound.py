"""A history table's commit cost kept flat whatever the commit rate: manifests merged, snapshots capped.

Two things made every commit to a history table dearer than the one before
(``benchmarks/iceberg_snapshot_cost.py``):

- **Manifests.** pyiceberg's fast append adds a manifest per commit to the snapshot's manifest list,
  which the next commit reads and rewrites whole: a day of 30 s commits (2,880 manifests until the
  day is compacted) cost ~85 ms of CPU per commit by midnight. History tables are given Iceberg's
  manifest merge (:data:`~sinks.iceberg.history_schema.MANIFEST_MERGE_PROPERTIES`, implemented by
  pyiceberg 0.12's merge append): once a table's small manifests reach the minimum count, the
  commit writes them into one, so the list never holds more than ~that count plus one manifest per
  1 MiB of entries. New tables get the properties at creation; :func:`ensure_commit_properties` sets
  them on tables from before (the sink when it opens one, maintenance on every run).
- **Snapshots.** Each commit costs ~0.17 ms more CPU per snapshot the table holds (pyiceberg copies,
  parses and rewrites the snapshot list). Maintenance expires them by age, once an hour: under
  commits by ``commit_rows`` (about one a second when busy) a table held ~7,200 at peak, ~1 s of CPU
  a commit. :class:`SnapshotBound` caps the count from the sink itself: after a commit, a table
  holding more than ``max_snapshots`` plus a slack has its oldest snapshots expired down to
  ``max_snapshots`` (their files removed from storage as maintenance does), so the cost stays flat.

Nothing Headwater reads needs the snapshots a cap expires: the sink's state (position, offsets, writer
claim) rides in every snapshot it makes, ``cdc history --at`` reads rows. A cap only shortens Iceberg
time travel on a table committed faster than ``max_snapshots`` per expiry age.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from sinks.iceberg.history_schema import COMMIT_PROPERTIES
from sinks.iceberg.retention import RemovedFiles, expire_removing_files

__all__ = ["SnapshotBound", "ensure_commit_properties", "past_the_cap"]

log = logging.getLogger(__name__)


def ensure_commit_properties(table: Table, identifier: str) -> bool:
    """Give ``table`` the history tables' commit properties (manifest merge, old metadata files
    deleted) if it lacks them; whether it did.

    A table property commit adds no snapshot: a sink appending meanwhile retries on top of it (no
    rows of another writer landed). Losing a race here is harmless: the next open or maintenance
    run sets them.
    """
    missing = {k: v for k, v in COMMIT_PROPERTIES.items() if table.properties.get(k) != v}
    if not missing:
        return False
    try:
        table.transaction().set_properties(missing).commit_transaction()
    except CommitFailedException as exc:
        log.info("iceberg: %s: manifest merge not enabled yet (a concurrent commit won): %s", identifier, exc)
        table.refresh()
        return False
    log.info("iceberg: %s: manifest merge enabled (%s)", identifier, ", ".join(sorted(missing)))
    return True


def past_the_cap(table: Table, max_snapshots: int) -> list[int]:
    """The snapshots to expire so that ``table`` holds ``max_snapshots``: the oldest, never the
    current snapshot's ``max_snapshots`` - 1 newest ancestors nor a branch or tag head."""
    if len(table.metadata.snapshots) <= max_snapshots:
        return []
    keep = {ref.snapshot_id for ref in table.metadata.refs.values()}  # pyiceberg refuses to expire them
    snapshot = table.current_snapshot()
    ancestors = 0
    while snapshot is not None and ancestors < max_snapshots:
        keep.add(snapshot.snapshot_id)
        ancestors += 1
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return [s.snapshot_id for s in table.metadata.snapshots if s.snapshot_id not in keep]


class SnapshotBound:
    """The sink's cap on its history tables' snapshot counts (module docstring).

    ``after_commit`` runs on the committer thread after a cycle's progress commit; it expires only
    when a table holds ``slack`` snapshots more than the cap, so the expiry (a commit and a read of
    the new manifest lists and manifests) comes once every ``slack`` commits, not on each. It never
    raises: the cycle has landed, and a failed expiry is retried after a later commit.
    """

    def __init__(self, max_snapshots: int, slack: int | None = None, most: int | None = None) -> None:
        if max_snapshots < 1:
            raise ValueError("max_snapshots must be at least 1 (the current snapshot)")
        self.max_snapshots = max_snapshots
        self.slack = slack if slack is not None else max(10, max_snapshots // 10)
        # the most expired after one commit (the oldest first): a table from before the cap (thousands
        # of snapshots) is brought down over many commits, not in one stall of the committer thread
        self.most = most if most is not None else max(100, 4 * self.slack)
        self.expired = 0  # snapshots expired so far (for tests and logs)

    def after_commit(self, tables: Iterable[tuple[str, Table]]) -> None:
        for identifier, table in tables:
            if len(table.metadata.snapshots) <= self.max_snapshots + self.slack:
                continue
            try:
                self._expire(identifier, table)
            except CommitFailedException as exc:  # maintenance or another sink process won: next time
                log.info("iceberg: %s: snapshots over the cap not expired yet: %s", identifier, exc)
                table.refresh()
            except Exception:  # housekeeping after a cycle that landed: never fail the cycle for it
                log.warning("iceberg: %s: expiring snapshots over the cap failed", identifier, exc_info=True)
                with contextlib.suppress(Exception):
                    table.refresh()

    def _expire(self, identifier: str, table: Table) -> RemovedFiles:
        by_id = {s.snapshot_id: s.timestamp_ms for s in table.metadata.snapshots}
        ids = sorted(past_the_cap(table, self.max_snapshots), key=by_id.__getitem__)[: self.most]
        removed = expire_removing_files(table, ids)
        self.expired += len(ids)
        log.info(
            "iceberg: %s: %d snapshots over the cap of %d expired, %d files (%d bytes) removed",
            identifier,
            len(ids),
            self.max_snapshots,
            removed.files,
            removed.bytes,
        )
        return removed
