"""The column policies around a daemon's pump: every chunk leaves it with the policies applied.

It wraps the outermost pump (the bootstrap's merging pump, when there is one), so streamed rows,
snapshot rows (op r), repairs and a replayed snapshot chunk all pass through it, and nothing the
daemon writes (Kafka, sinks, the snapshot-chunk log of embedded mode) holds a raw value.

SnapshotProgress.chunk holds the very events that follow it in the stream; they are transformed
once, with the progress record, and the followers are swapped for the transformed objects, so the
chunk embedded mode logs to disk and the rows the sinks receive are the same (policy-applied) ones.

A chunk embedded mode logged before a crash was logged policy-applied: when the merging pump sends
it out again (the very objects read back from the log, ``replayed``), it passes as it is, not
hashed a second time.
"""

from __future__ import annotations

from typing import Any, Protocol

from cdc.core.events import ChangeEvent, SnapshotProgress, SourceRecord
from cdc.core.handover import Chunk, EndOfStream
from cdc.policy.columns import ColumnPolicies

__all__ = ["PolicyPump", "with_policies"]


class _Pump(Protocol):
    def start(self) -> None: ...
    def get(self, timeout: float) -> Chunk | None: ...
    def stop(self) -> None: ...


class PolicyPump:
    def __init__(
        self, inner: _Pump, policies: ColumnPolicies, replayed: tuple[ChangeEvent, ...] = ()
    ) -> None:
        self._inner = inner
        self._policies = policies
        self._replayed = replayed  # held, so that the ids below stay theirs
        self._replayed_ids = {id(e) for e in replayed}
        self._pending: dict[int, ChangeEvent] = {}  # id(source event) -> its transformed form

    def start(self) -> None:
        self._inner.start()

    def stop(self) -> None:
        self._inner.stop()

    def __getattr__(self, name: str) -> Any:
        # committed(), stop_when_done(), state...: the wrapped pump's own
        return getattr(self._inner, name)

    def get(self, timeout: float) -> Chunk | None:
        chunk = self._inner.get(timeout)
        if chunk is None or isinstance(chunk, EndOfStream):
            return chunk
        return [self._record(r) for r in chunk]

    def _record(self, record: SourceRecord) -> SourceRecord:
        cls = record.__class__
        if cls is ChangeEvent:
            assert isinstance(record, ChangeEvent)
            if self._replayed_ids and id(record) in self._replayed_ids:
                return record
            done = self._pending.pop(id(record), None) if self._pending else None
            return done if done is not None else self._policies.event(record)
        if cls is SnapshotProgress:
            assert isinstance(record, SnapshotProgress)
            if not record.chunk or id(record.chunk[0]) in self._replayed_ids:
                return record
            out = self._policies.events(record.chunk)
            for source, shaped in zip(record.chunk, out, strict=True):
                self._pending[id(source)] = shaped
            return SnapshotProgress(record.state, record.rows, out)
        return record  # SchemaChange, TransactionEnd, SourceProgress: no row values in them


def with_policies(
    pump: _Pump, policies: ColumnPolicies | None, replayed: tuple[ChangeEvent, ...] = ()
) -> Any:
    """``pump`` wrapped in the policies, or as it is when the config has none."""
    return pump if policies is None else PolicyPump(pump, policies, replayed)
