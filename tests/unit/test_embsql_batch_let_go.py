"""Embedded mode frees an applied batch on the daemon's thread, not on the apply thread.

The apply thread applies batches one after another; freeing a batch's events (~0.3 us per change
of CPU, embpg2's profile) after its apply put that on the chain. The daemon's thread holds the
batch it handed and lets it go once the apply has returned (cdc/daemon/embedded.py, _apply_all).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from cdc.core.events import ChangeEvent, Op, SourceRecord, TransactionEnd
from cdc.core.positions import Gtid, Position, RestartPoint
from cdc.daemon.embedded import EmbeddedDaemon, EmbeddedOptions
from tests.unit.test_daemon_capture import SCHEMA, FakeSource
from tests.unit.test_embedded_apply_thread import WatchedSink

_FREED: list[str] = []


class _Tracked(str):
    """A transaction id that notes the thread it was freed on (one per event)."""

    __slots__ = ()

    def __del__(self) -> None:
        _FREED.append(threading.current_thread().name)


class _LazySource(FakeSource):
    """FakeSource's stream, each event made as it is read and held by nothing here."""

    def __init__(self, count: int, rows: int) -> None:
        super().__init__([])
        self.count, self.rows = count, rows

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        for t in range(self.count):
            first = Position(Gtid(0, 1, t + 1), "bin.000001", 100 + t * 1000, 0)
            for r in range(self.rows):
                key = t * self.rows + r
                yield ChangeEvent(
                    Op.CREATE, SCHEMA, (key,), None, (key,), first.at_row(r), 0, _Tracked(first.gtid)
                )
            yield TransactionEnd(str(first.gtid), first.at_row(self.rows - 1), self.rows, 0)


def test_applied_batches_are_freed_on_the_daemons_thread(tmp_path: Path) -> None:
    _FREED.clear()
    sink = WatchedSink("a")
    options = EmbeddedOptions(max_events=3, max_ms=1, backoff_initial_s=0.01)
    daemon = EmbeddedDaemon(lambda: [sink], lambda: _LazySource(8, 4), tmp_path, options)
    assert daemon.run() == 0
    assert sink.keys == list(range(32))
    assert len(_FREED) == 32
    assert "embedded-apply" not in _FREED, ",".join(_FREED)
