"""How a restarted `cdc bootstrap --sink` judges the fill its progress file recorded
(see :mod:`snapshotter.sink_fill`): the same tables and mode, and whether the chunk it was applying
landed in the sink."""

from __future__ import annotations

import logging
from dataclasses import replace

from cdc.core.errors import ConfigError
from cdc.core.positions import Position
from cdc.core.schemas import TableRef
from sinks.contract import AppliedState, ReportsTablePositions, Sink
from snapshotter.sink_fill_result import SinkFillInterfered
from snapshotter.sink_fill_state import FillState

__all__ = ["check_same", "reconciled", "table_position"]

log = logging.getLogger("cdc.bootstrap")


def check_same(prior: FillState, wanted: tuple[TableRef, ...], kafka: bool, sink: str, path: object) -> None:
    had = tuple(t.table for t in prior.tables)
    if set(had) != set(wanted):
        raise ConfigError(
            f"sink {sink} has an unfinished fill of {', '.join(map(str, had))} (recorded in {path}): "
            "finish it first (run `cdc bootstrap --sink` with those tables), then fill the others"
        )
    if prior.kafka != kafka:
        raise ConfigError(
            f"sink {sink}: the unfinished fill recorded in {path} was started "
            f"{'with' if prior.kafka else 'without'} a stream, and the config now has "
            f"{'one' if kafka else 'none'}: restore the config, or empty the sink and delete the file"
        )


def table_position(sink: Sink, state: FillState) -> Position | None:
    """Where the pending chunk's table itself has committed, for a sink that commits tables apart
    from its progress record (Iceberg); None for one that commits both at once (SQL)."""
    if state.pending is None or not isinstance(sink, ReportsTablePositions):
        return None
    return sink.table_positions().get(state.pending.table)


def reconciled(
    state: FillState, applied: AppliedState | None, table_at: Position | None, sink: str, path: object
) -> FillState:
    """The recorded fill, with its pending chunk judged landed or not by the sink's position.

    ``table_at`` is the pending chunk's table's own committed position, when the sink keeps one:
    a crash between an Iceberg table's commit and the progress table's leaves the chunk in the
    table while ``applied()`` is still below it. It must count as landed: read again in a new
    view, the chunk holds other rows at the same positions (rows deleted meanwhile make it reach
    further), and the sink, skipping the positions it holds, would drop keys never copied.
    """
    pending = state.pending
    at = None if applied is None else applied.position
    if pending is not None:
        first, last = state.position(pending.first), state.position(pending.last)
        if table_at is not None and table_at >= first and (at is None or table_at > at):
            at = table_at
        if at is not None and at >= last:
            if at > last:
                raise _interfered(sink, at, last, path)
            log.info(
                "sink %s: the chunk of %s up to index %d landed before the stop",
                sink,
                pending.table,
                pending.last,
            )
            return state.landed()
        if at is not None and at >= first:
            raise _interfered(sink, at, last, path)  # a chunk is one atomic batch: never half there
        log.info(
            "sink %s: the chunk of %s from index %d did not land; reading it again",
            sink,
            pending.table,
            pending.first,
        )
        return replace(state, pending=None)
    if state.next_index and at is not None and at > state.position(state.next_index - 1):
        raise _interfered(sink, at, state.position(state.next_index - 1), path)
    return state


def _interfered(sink: str, at: Position, expected: Position, path: object) -> SinkFillInterfered:
    return SinkFillInterfered(
        f"sink {sink} has applied up to {at}, past this fill's own rows (up to {expected}): something "
        f"else wrote it since the fill started (`cdc run` or `cdc sink` while it was unfinished?). "
        f"Empty the sink, delete {path}, and fill it again (with --replace)"
    )
