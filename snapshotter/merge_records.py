"""The records the merging pump emits for a --replace truncate and for a repair's batch of keys, with
the snapshot state that follows them (merge.py places them in the stream and keeps the state)."""

from __future__ import annotations

import dataclasses
import time

from cdc.core.events import ChangeEvent, Op, RowImage, SnapshotProgress, SourceRecord, TransactionEnd
from cdc.core.positions import Position, RestartPoint, snapshot_row_position
from snapshotter.chunk_feed import ReadChunk
from snapshotter.repair_events import repair_events
from snapshotter.state import SnapshotState, TableJob
from snapshotter.tracking import NOWHERE, Place, Tracked

__all__ = ["repair_records", "truncate_records"]


def truncate_records(
    state: SnapshotState, job: TableJob, chunk: ReadChunk, point: RestartPoint
) -> tuple[list[SourceRecord], SnapshotState, Position]:
    """The TRUNCATE of ``job``'s table at ``point``: its records, the state after it, its position."""
    ts_ms = int(time.time() * 1000)
    txn = f"snapshot-{job.request}-truncate"
    position = snapshot_row_position(point, 0)
    event = ChangeEvent(Op.TRUNCATE, chunk.schema, None, None, None, position, ts_ms, txn)
    state = dataclasses.replace(
        state.advanced(dataclasses.replace(job, replace=False)), last_position=position.to_string()
    )
    records: list[SourceRecord] = [
        SnapshotProgress(state.to_text(), 0, (event,)),
        event,
        TransactionEnd(txn, position, 1, ts_ms),
    ]
    return records, state, position


def repair_records(
    state: SnapshotState,
    job: TableJob,
    chunk: ReadChunk,
    keys: tuple[RowImage, ...],
    tracked: Tracked,
    at: Place,
    point: RestartPoint,
) -> tuple[list[SourceRecord], SnapshotState, TableJob, Position | None]:
    """A repair's batch (see repair_events.py) at ``point``; keys the stream changed after the view
    ``at`` are left to the stream, whose value is newer. Returns the records, the state after them,
    the job advanced, and the last record's position (None: no change to send)."""
    pending = tuple(k for k in keys if tracked.truncated_at < at and tracked.changed.get(k, NOWHERE) < at)
    txn = f"{job.request}-{job.chunks}"  # the request id starts with "repair-"
    events = repair_events(chunk, pending, point, txn)
    advanced = job.advanced(None, len(events), keys_done=len(keys))
    state = state.finished_current(advanced) if not advanced.keys else state.advanced(advanced)
    if events:
        state = dataclasses.replace(state, last_position=events[-1].position.to_string())
    out: list[SourceRecord] = [SnapshotProgress(state.to_text(), len(events), events), *events]
    last = events[-1].position if events else None
    if last is not None:
        out.append(TransactionEnd(txn, last, len(events), events[-1].source_ts_ms))
    return out, state, advanced, last
