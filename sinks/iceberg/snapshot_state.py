"""What a history table's snapshots say about the sink: the applied state in the summary properties.

Every commit the sink makes carries ``headwater.position`` (the source position applied),
``headwater.offsets`` (Kafka offsets, JSON) and ``headwater.pipeline`` in its snapshot summary, so the
state lands atomically with the data it describes (see ``sinks.iceberg.history_sink``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow.parquet as pq
from pyiceberg.table import Table

from cdc.core.positions import Position
from sinks.contract import AppliedState
from sinks.iceberg.history_schema import POSITION

__all__ = [
    "OFFSETS_KEY",
    "PIPELINE_KEY",
    "POSITION_KEY",
    "PastOffsets",
    "expire_all_but",
    "merged_state",
    "positions_past_offsets",
    "state_properties",
    "stored_state",
]

log = logging.getLogger(__name__)

POSITION_KEY = "headwater.position"
OFFSETS_KEY = "headwater.offsets"
PIPELINE_KEY = "headwater.pipeline"


def expire_all_but(table: Table, keep: int) -> int:
    """Expire every snapshot but the current one and its ``keep`` - 1 ancestors; how many went."""
    kept: set[int] = set()
    snapshot = table.current_snapshot()
    while snapshot is not None and len(kept) < keep:
        kept.add(snapshot.snapshot_id)
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    ids = [s.snapshot_id for s in table.metadata.snapshots if s.snapshot_id not in kept]
    if ids:
        table.maintenance.expire_snapshots().by_ids(ids).commit()
        table.refresh()
    return len(ids)


def stored_state(table: Table) -> AppliedState | None:
    """The state in the latest snapshot summary carrying ``headwater.position`` (None if none)."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        summary = snapshot.summary
        text = summary[POSITION_KEY] if summary is not None else None
        if text:
            offsets = json.loads(summary[OFFSETS_KEY] or "{}") if summary is not None else {}
            return AppliedState(Position.parse(text), {str(k): int(v) for k, v in offsets.items()})
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return None


def merged_state(held: AppliedState | None, batch: AppliedState) -> AppliedState:
    """Kafka mode: the batch's partitions merged into the held offsets; the highest position.

    Each offset only moves forward: a process's view of partitions another `cdc sink` process of
    the group advanced since (read when it opened) must not take the stored offsets back.
    """
    if held is None:
        return batch
    offsets = dict(held.offsets)
    for partition, offset in batch.offsets.items():
        if offset > offsets.get(partition, -1):
            offsets[partition] = offset
    return AppliedState(max(held.position, batch.position), offsets)


def state_properties(pipeline: str, state: AppliedState) -> dict[str, str]:
    return {
        PIPELINE_KEY: pipeline,
        POSITION_KEY: state.position.to_string(),
        OFFSETS_KEY: json.dumps(dict(sorted(state.offsets.items()))),
    }


@dataclass(frozen=True, slots=True)
class PastOffsets:
    """Rows a table holds from cycles whose offsets the progress table lacks, and how far those
    cycles had read: re-deliveries are dropped until the stored offsets reach ``until``."""

    positions: frozenset[str]
    until: Mapping[str, int]

    def passed(self, applied: AppliedState) -> bool:
        """Every partition those cycles read is committed past them: no re-delivery is left."""
        return all(applied.offsets.get(p, -1) >= o for p, o in self.until.items())


def positions_past_offsets(table: Table, identifier: str, applied: AppliedState | None) -> PastOffsets | None:
    """Positions in ``table`` committed by cycles whose offsets the progress table (``applied``) lacks.

    A crash between a cycle's table commits and its progress commit leaves rows whose Kafka
    offsets were never stored: the consumer delivers them again and these positions drop them.
    The partitions do not come back together: one may be re-delivered and go on (and be committed)
    while another is still behind, so the positions are kept until every partition is past them.

    Every snapshot the table still holds is looked at, not only the newest ones: a cycle after the
    restart starts from the progress table's offsets, so its snapshot can be covered by them while
    an older one (the crashed cycle's) is not. The positions are read from every file added since
    the oldest uncovered snapshot's parent (a superset when covered cycles came after it: harmless,
    since each is a change the table holds).
    """
    snapshots = {s.snapshot_id: s for s in table.metadata.snapshots}
    oldest = None
    until: dict[str, int] = {}
    snapshot = table.current_snapshot()
    while snapshot is not None:
        summary = snapshot.summary
        offsets = json.loads(summary[OFFSETS_KEY] or "{}") if summary is not None else {}
        if any(applied is None or applied.offsets.get(str(p), -1) < int(o) for p, o in offsets.items()):
            oldest = snapshot
            for partition, offset in offsets.items():
                until[str(partition)] = max(until.get(str(partition), -1), int(offset))
        parent = snapshot.parent_snapshot_id
        snapshot = snapshots.get(parent) if parent is not None else None
    current = table.current_snapshot()
    if oldest is None or current is None:
        return None
    files = {t.file.file_path for t in table.scan(snapshot_id=current.snapshot_id).plan_files()}
    base = oldest.parent_snapshot_id
    if base is not None and base in snapshots:
        files -= {t.file.file_path for t in table.scan(snapshot_id=base).plan_files()}
    seen: set[str] = set()
    for path in sorted(files):
        with table.io.new_input(path).open() as stream:
            seen.update(
                str(p) for p in pq.read_table(stream, columns=[POSITION]).column(POSITION).to_pylist()
            )
    log.info(
        "iceberg: %s holds %d rows past the stored offsets; re-deliveries of them are dropped",
        identifier,
        len(seen),
    )
    return PastOffsets(frozenset(seen), until)
