"""A stand-in for the binlog/WAL stream pump in merge tests (no services): hands out scripted
batches of records, one per ``get``, then nothing."""

from __future__ import annotations

import time

from cdc.core.events import SourceRecord
from cdc.core.handover import Chunk

__all__ = ["ScriptedStream"]


class ScriptedStream:
    def __init__(self, batches: list[list[SourceRecord]]) -> None:
        self._batches = batches

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def get(self, timeout: float) -> Chunk | None:
        if self._batches:
            return self._batches.pop(0)
        time.sleep(min(timeout, 0.01))
        return None
