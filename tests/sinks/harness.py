"""What the sink behaviour suite needs from each sink: the sink, its current state, its history."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cdc.core.schemas import TableRef
from sinks.contract import Sink

__all__ = ["SinkUnderTest"]


@dataclass(frozen=True)
class SinkUnderTest:
    sink: Sink  # not yet opened
    # primary-key tuple -> {column: value}, values as the source's Python values
    current_rows: Callable[[TableRef], dict[tuple[object, ...], dict[str, object]]]
    # every history row (Iceberg); None for serving sinks, which keep only current state
    history: Callable[[TableRef], list[dict[str, object]]] | None
    cleanup: Callable[[], None]
    # optional: a new sink object on the same target (a restart after a crash), not yet opened;
    # without it the suite closes and reopens ``sink``
    reopen: Callable[[], Sink] | None = None
