"""The history sink's progress table: its shape, and the commit that records a cycle's state.

Split from :mod:`sinks.iceberg.history_sink` (which describes the protocol) to keep that module
readable; nothing here changed in behaviour.
"""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import NestedField, StringType

from sinks.contract import AppliedState
from sinks.iceberg.fencing import Claim, check_not_fenced, claim_properties, stored_claim
from sinks.iceberg.history_schema import METADATA_FILES_PROPERTIES, PIPELINE_PROPERTY
from sinks.iceberg.snapshot_state import merged_state, state_properties, stored_state

__all__ = [
    "EMPTY_PROGRESS",
    "NO_RETRY",
    "PROGRESS_SCHEMA",
    "progress_properties",
    "record_progress",
]

PROGRESS_SCHEMA = Schema(NestedField(1, "pipeline", StringType(), required=False))
EMPTY_PROGRESS = pa.table({"pipeline": pa.array([], pa.string())})
# the progress commit merges offsets itself and retries itself (pyiceberg's retry would re-apply a
# merge made before another process's commit)
NO_RETRY = ("commit.retry.num-retries", "0")


def progress_properties(pipeline: str) -> dict[str, str]:
    """The progress table's properties: it commits as often as the history tables, so it keeps only
    the newest metadata files too (:data:`METADATA_FILES_PROPERTIES`)."""
    return {PIPELINE_PROPERTY: pipeline, NO_RETRY[0]: NO_RETRY[1], **METADATA_FILES_PROPERTIES}


def record_progress(
    name: str,
    progress: Table | None,
    claim: Claim | None,
    pipeline: str,
    state: AppliedState,
    attempts: int = 10,
) -> AppliedState:
    """Append the progress snapshot; in Kafka mode merged with what other processes stored.

    Several `cdc sink` processes of one consumer group share the progress table, each owning
    some partitions: the offsets are re-read and merged on every attempt (pyiceberg's own retry
    is off for this table, since it would re-apply a merge made before the other commit).
    """
    assert progress is not None
    for attempt in range(1, attempts + 1):
        final = state
        if claim is not None:
            held = check_not_fenced(name, progress, claim)
        else:  # the claim of a writer that shares this progress table is carried forward
            progress.refresh()
            held = stored_claim(progress)
        if state.offsets:
            final = merged_state(stored_state(progress), state)
        properties = {**state_properties(pipeline, final), **claim_properties(held)}
        try:
            progress.append(EMPTY_PROGRESS, snapshot_properties=properties)
            return final
        except CommitFailedException:
            if attempt == attempts:
                raise
            progress.refresh()
    raise AssertionError("unreachable")
