"""What a source emits: row changes, schema changes and transaction ends, all immutable.

Row images are tuples aligned with ``schema.columns`` (not dicts): the schema object travels with the
event, so any layer can name the values without a lookup, and building a tuple is cheap on the hot path.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from cdc.core.positions import Position, RestartPoint
from cdc.core.schemas import TableRef, TableSchema

__all__ = [
    "ChangeEvent",
    "ColumnValue",
    "Op",
    "RowImage",
    "SchemaChange",
    "SchemaChangeKind",
    "SnapshotProgress",
    "SourceProgress",
    "SourceRecord",
    "TransactionEnd",
]

ColumnValue = None | bool | int | float | decimal.Decimal | str | bytes | dt.date | dt.datetime | dt.timedelta
RowImage = tuple[ColumnValue, ...]


class Op(enum.Enum):
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # snapshot read
    TRUNCATE = "t"


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One row change (or a whole-table truncate, which has no key and no images)."""

    op: Op
    schema: TableSchema  # the table's shape these images follow
    key: RowImage | None  # primary-key values, in primary_key order; None for truncate/keyless
    before: RowImage | None  # None for c, r, t
    after: RowImage | None  # None for d, t
    position: Position
    source_ts_ms: int  # commit time on the source (binlog event timestamp), ms since epoch
    transaction_id: str  # the source transaction's GTID, "domain-server-seq"

    @property
    def table(self) -> TableRef:
        return self.schema.ref

    @property
    def schema_version(self) -> str:
        return self.schema.version


class SchemaChangeKind(enum.Enum):
    CREATE = "create"
    ALTER = "alter"
    DROP = "drop"
    RENAME = "rename"


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """A DDL statement that changed a table's shape.

    Sources do not parse DDL: the table's new schema (and version) is the one carried by the next row
    events of that table, which come with full column metadata. ``previous_version`` is the version
    the source last saw for the table, if any.
    """

    kind: SchemaChangeKind
    table: TableRef
    ddl: str
    position: Position
    source_ts_ms: int
    transaction_id: str
    previous_version: str | None = None
    renamed_to: TableRef | None = None


@dataclass(frozen=True, slots=True)
class TransactionEnd:
    """The source transaction ``transaction_id`` is complete; ``restart`` resumes just after it."""

    transaction_id: str
    last_position: Position  # position of the transaction's last record (row or DDL)
    row_count: int
    source_ts_ms: int
    # where the next transaction starts in ``last_position.file`` (the end of this one); 0 when
    # unknown (snapshot rows, which are in no binlog). Lets the snapshotter tell that the stream has
    # passed a snapshot's binlog boundary without waiting for the next transaction.
    next_offset: int = 0

    @property
    def restart(self) -> RestartPoint:
        return RestartPoint.after(self.last_position)


@dataclass(frozen=True, slots=True)
class SourceProgress:
    """No change of a captured table lies between the last record emitted and ``restart``.

    Sent on the server's heartbeats and after transactions that touch no captured table, so that a
    checkpoint keeps moving while the captured tables are idle: an idle stream is told apart from a
    broken one, and the binlog it would resume from is not one that has long expired.
    ``restart`` is a transaction boundary (``skip_rows == 0``).
    """

    restart: RestartPoint
    source_ts_ms: int


@dataclass(frozen=True, slots=True)
class SnapshotProgress:
    """The snapshot rows (op ``r``) emitted before this record moved a bootstrap on.

    ``state`` is the snapshotter's whole durable state (its own text form, opaque here). The daemon
    stores it with the commit that holds those rows, in the same Kafka transaction or after the
    sinks have flushed them, and hands it back to the snapshotter at the next start, so that a
    bootstrap resumes after its last committed chunk.
    """

    state: str
    rows: int  # snapshot rows of this chunk
    # The chunk's records (op r, and a truncate first when the copies are replaced), which follow
    # this record in the stream. Embedded mode logs them before applying them, so that after a crash
    # the very same rows go out again at the very same positions: a sink that holds them skips them,
    # a sink that does not gets them, and no history holds a snapshot row twice.
    chunk: Sequence[ChangeEvent] = ()  # a tuple, or the sinks' columnar ReadBatch


SourceRecord = ChangeEvent | SchemaChange | TransactionEnd | SourceProgress | SnapshotProgress
