"""Writer fencing for embedded mode: a writer epoch in the progress table, as Kafka's producer epoch.

``claim_writer`` appends an empty snapshot to ``<namespace>._headwater_progress__<pipeline>`` whose
summary carries ``headwater.writer_epoch`` (one more than the stored one) and ``headwater.writer``
(host, pid, start time). Every later progress snapshot carries them forward, so expiring old
snapshots never loses the epoch. A claimed sink reads the stored epoch before each data commit and
again before its progress commit (which is conditional: the progress table never retries on its
own); a newer epoch raises WriterFenced naming the writer that took over, and nothing more of the
cycle lands. Data commits of a claimed sink are conditional too (see ``TableWriter.commit``), which
closes the window between an old writer's epoch check and its commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyiceberg.table import Table

from cdc.core.errors import WriterFenced
from sinks.contract import WriterIdentity

__all__ = [
    "EPOCH_KEY",
    "WRITER_KEY",
    "Claim",
    "check_not_fenced",
    "claim_properties",
    "new_claim",
    "stored_claim",
]

EPOCH_KEY = "headwater.writer_epoch"
WRITER_KEY = "headwater.writer"


@dataclass(frozen=True, slots=True)
class Claim:
    epoch: int
    writer: str  # WriterIdentity.describe()


def stored_claim(progress: Table) -> Claim | None:
    """The latest claim recorded in the progress table's snapshots (None if never claimed)."""
    snapshot = progress.current_snapshot()
    while snapshot is not None:
        summary = snapshot.summary
        epoch = summary[EPOCH_KEY] if summary is not None else None
        if epoch:
            return Claim(int(epoch), str(summary[WRITER_KEY] or "unknown writer"))  # type: ignore[index]
        parent = snapshot.parent_snapshot_id
        snapshot = progress.snapshot_by_id(parent) if parent is not None else None
    return None


def claim_properties(claim: Claim | None) -> dict[str, str]:
    return {} if claim is None else {EPOCH_KEY: str(claim.epoch), WRITER_KEY: claim.writer}


def new_claim(progress: Table, writer: WriterIdentity) -> Claim:
    held = stored_claim(progress)
    return Claim((held.epoch if held else 0) + 1, writer.describe())


def check_not_fenced(sink: str, progress: Table, mine: Claim) -> Claim | None:
    """Raise WriterFenced if a newer writer claimed ``progress``; the stored claim otherwise."""
    progress.refresh()
    held = stored_claim(progress)
    if held is not None and held.epoch > mine.epoch:
        raise WriterFenced(
            f"{sink}: another writer ({held.writer}, epoch {held.epoch}) took over this sink from this "
            f"one ({mine.writer}, epoch {mine.epoch}); this process stops and commits nothing more. "
            "Run one embedded `cdc run` per config (stop the other one first if this one should write)"
        )
    return held
