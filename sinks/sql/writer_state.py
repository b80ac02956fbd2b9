"""What a SQL sink checks and keeps in its positions row: the writer's claim, and the Kafka offsets."""

from __future__ import annotations

from cdc.core.errors import WriterFenced
from sinks.contract import AppliedState
from sinks.sql.positions_table import Held

__all__ = ["check_writer", "merged"]


def check_writer(sink: str, epoch: int | None, row: Held) -> None:
    """Embedded mode: this writer's claim must still be the stored one (row locked by the caller).
    ``epoch`` None: a Kafka-mode `cdc sink`, which never claims."""
    if epoch is not None and row.epoch != epoch:
        raise WriterFenced(
            f"{sink}: another writer claimed this sink (epoch {row.epoch}: {row.writer}); "
            f"this one (epoch {epoch}) must stop: run one `cdc run` per pipeline"
        )


def merged(current: AppliedState | None, batch: AppliedState) -> AppliedState:
    """Kafka mode: the batch's partitions merged into the stored offsets (other `cdc sink`
    processes own the rest). The highest offset per partition is kept: a process that lost its
    partitions (it missed the session timeout) and commits late must not move one back. The
    position kept is the highest seen, for status only."""
    if current is None:
        return batch
    offsets = dict(current.offsets)
    for partition, offset in batch.offsets.items():
        offsets[partition] = max(offset, offsets.get(partition, offset))
    return AppliedState(max(current.position, batch.position), offsets)
