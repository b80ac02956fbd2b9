"""The sink contract: apply a batch of change events atomically with the position it brings the sink to.

A sink is small (Maxwell's ``push``): it opens, says what it has already applied, applies batches,
and closes. Everything else (reading the binlog or Kafka, batching, choosing where to resume) is the
caller's. Every sink passes one behaviour suite (``tests/sinks/``).

Exactly once, per sink:
- ``apply`` stores the batch's rows *and* its ``AppliedState`` in one transaction/commit: after a
  crash either both are there or neither is.
- ``applied()`` returns what the last successful ``apply`` stored (None for a fresh sink).
- embedded mode (``state.offsets`` empty): a batch may start with events the sink already holds (the
  daemon resumes from the lowest position over all sinks); the sink skips every event whose position
  is <= its applied position, and its applied position never moves backwards (a batch wholly at or
  before it changes nothing).
- Kafka mode (``state.offsets`` not empty): events come from several partitions, so positions are not
  in one order across a batch and a position says nothing about another partition's progress. The
  sink then skips nothing by position (truncates aside, below): the consumer filters by offset
  before calling ``apply``, and the sink only stores the offsets (and the highest position, for
  status) with the data.
- within a batch, events are in position order (in Kafka mode, per partition); for a serving table
  the last change per key wins.

Truncates are fenced by position. A truncate of table T at position P removes every change of T at
a position below P. The writer sends a truncate to every partition of T's topic, so a sink in Kafka
mode gets one copy per partition, interleaved with the other partitions' rows in any order. A sink
records durably, in the same transaction/commit as its data, the position of the last truncate it
applied per table. A truncate at or below that position is a copy already applied: it changes
nothing (the batch's state and offsets are still stored). A truncate above it is applied once and
recorded. In a serving sink, a row change of T below the recorded position is older than a
truncate already applied and is skipped. Within one batch, per table: the highest truncate above
the recorded one is applied first; every row change of that table in the batch below it is dropped;
the remaining rows follow in batch order (per key, that is per-partition order, the source's order).
A history sink records every row change (rows below a truncate too: state-as-of cuts by position)
and one truncate row per truncate.

Why it holds whatever the partition assignment, across processes and restarts: each partition
carries its copy of truncate P before its own rows above P, so the first copy of P to reach a sink
precedes every row of T above P from any partition; applying P at that first copy never wipes a
newer row. Rows below P from partitions still behind arrive later and are skipped; later copies are
no-ops. Embedded mode has one copy per truncate and events in position order: the same rule gives
the same result as applying the events in order.
- a sink may buffer batches and commit them later (Iceberg commits every N rows or T seconds, so
  that snapshots and small files do not pile up): ``applied()`` reports only what is committed, and
  the caller re-delivers everything after it after a crash. ``flush()`` commits what is buffered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cdc.core.events import ChangeEvent, SchemaChange
from cdc.core.positions import Position
from cdc.core.schemas import TableRef

__all__ = [
    "AcceptsSchemaChanges",
    "AppliedState",
    "PendingSchemaChange",
    "Sink",
    "SinkBatch",
    "WriterIdentity",
]


@dataclass(frozen=True, slots=True)
class AppliedState:
    """Where a sink is: the last source position applied, and (from Kafka) the consumed offsets."""

    position: Position
    # "topic:partition" -> next offset to consume (Kafka mode); empty in embedded mode. In a batch,
    # only the partitions it advanced: the sink MERGES them into the offsets it holds (other
    # partitions may belong to another `cdc sink` process of the same consumer group), in the same
    # transaction; applied() returns the merged map.
    offsets: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SinkBatch:
    """Whole source transactions (or, from Kafka, whatever a poll returned), in position order."""

    records: Sequence[ChangeEvent | SchemaChange]
    state: AppliedState  # what the sink holds once this batch is applied


@dataclass(frozen=True, slots=True)
class WriterIdentity:
    """Who writes a sink in embedded mode, so that a fenced writer can name the one that took over."""

    host: str
    pid: int
    started_at: str  # ISO time the writer started

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started_at}"


@runtime_checkable
class Sink(Protocol):
    name: str  # for logs and status: "sql:postgresql://host/serving", "iceberg:wiki"

    def open(self) -> None:
        """Connect, create what the sink needs for its own bookkeeping (positions table, namespace)."""

    def claim_writer(self, writer: WriterIdentity) -> None:
        """Embedded mode: make ``writer`` the sink's only writer, as Kafka's producer epoch does.

        Stores a new writer epoch (one more than the stored one) with ``writer`` in the sink. From
        then on, an ``apply`` or ``flush`` by a writer that claimed earlier raises ``WriterFenced``
        naming ``writer``, and commits nothing; the check is made in the same transaction/commit as
        the data, so two writers on different hosts can never both land a batch. (Several `cdc sink`
        processes of one consumer group share a sink legitimately and never claim it.)
        """

    def applied(self) -> AppliedState | None:
        """What the last committed ``apply`` stored; None if nothing was ever applied."""

    def apply(self, batch: SinkBatch) -> None:
        """Apply the batch and store ``batch.state`` atomically; skip events at or before applied()."""

    def flush(self) -> None:
        """Commit anything buffered by ``apply`` (a no-op for sinks that commit in ``apply``)."""

    def close(self) -> None:
        """Release connections; never loses applied data (everything applied is committed)."""


@dataclass(frozen=True, slots=True)
class PendingSchemaChange:
    """A table shape change a sink under ``schema_changes: stop`` is holding back for review."""

    table: TableRef
    from_version: str
    to_version: str
    change: str  # SchemaDiff.describe(): "drop x, rename a to b"
    position: Position  # the first change event of the new version


@runtime_checkable
class AcceptsSchemaChanges(Protocol):
    """A sink under ``schema_changes: stop`` records what it stopped on; `cdc schema accept` lets it pass."""

    def pending_schema_changes(self) -> list[PendingSchemaChange]:
        """What the sink stopped on and has not been told to accept (read from the sink's own tables)."""

    def accept_schema_change(self, table: TableRef) -> PendingSchemaChange | None:
        """Mark the pending change of ``table`` accepted: the next run applies it. None if none pends."""


@runtime_checkable
class ReportsTablePositions(Protocol):
    """A sink that commits each table apart from its progress record (Iceberg: a table's snapshot,
    then the progress table) knows each table's own committed position, which may be past
    ``applied()`` after a crash between the two."""

    def table_positions(self) -> dict[TableRef, Position]:
        """Each table's committed position, as the table itself records it."""
