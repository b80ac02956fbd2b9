"""A sink's own `tables` / `exclude_tables`: the changes of other tables never reach it.

The wrapper still hands the sink every batch's state (position, Kafka offsets), with the records it
does not take left out, so that its resume point moves on through tables it does not hold.
"""

from __future__ import annotations

from cdc.core.schemas import TableRef
from cdc.core.table_filter import TableFilter
from sinks.contract import AppliedState, Sink, SinkBatch, WriterIdentity

__all__ = ["TableSelectedSink", "unwrap"]


class TableSelectedSink:
    def __init__(self, inner: Sink, table_filter: TableFilter) -> None:
        self.inner = inner
        self.name = inner.name
        self._filter = table_filter
        self._verdicts: dict[TableRef, bool] = {}

    def _takes(self, table: TableRef) -> bool:
        verdict = self._verdicts.get(table)
        if verdict is None:
            verdict = self._verdicts[table] = self._filter.accepts(table.db, table.table)
        return verdict

    def open(self) -> None:
        self.inner.open()

    def claim_writer(self, writer: WriterIdentity) -> None:
        self.inner.claim_writer(writer)

    def applied(self) -> AppliedState | None:
        return self.inner.applied()

    def apply(self, batch: SinkBatch) -> None:
        records = [r for r in batch.records if self._takes(r.table)]
        if len(records) == len(batch.records):
            self.inner.apply(batch)
        else:
            self.inner.apply(SinkBatch(tuple(records), batch.state))

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


def unwrap(sink: Sink) -> Sink:
    """The sink itself under its table selection, for its optional protocols (AcceptsSchemaChanges)."""
    return sink.inner if isinstance(sink, TableSelectedSink) else sink
