"""The daemon's MariaDB source, held to one binlog range: the same reader, a fixed start and stop.

``cdc run --until-caught-up`` starts at the checkpoint (or the server's current end) and stops at the
end of the binlog; a benchmark wants a range it wrote itself, whatever else the server is doing. The
range's start is offered as the "current" restart point (a fresh pipeline starts there) and records
stop at the range's end, so decoding, filtering and the daemon loops are those of production.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from benchmarks.decode_bench import DB, Range
from cdc.config.models import MariaDbSourceConfig
from cdc.core.events import SourceProgress, SourceRecord, TransactionEnd
from cdc.core.positions import Gtid, Position, RestartPoint
from cdc.daemon.mariadb_source import MariaDbSource


class RangeSource(MariaDbSource):
    def __init__(self, config: MariaDbSourceConfig, binlog_range: Range) -> None:
        super().__init__(config, blocking=False)
        self.range = binlog_range
        self.started: float | None = None  # perf_counter when reading began

    def current_restart_point(self) -> RestartPoint:
        return RestartPoint(Position(Gtid(0, 0, 0), self.range.file, self.range.start, 0), 0)

    def tables(self) -> tuple[str, ...]:
        return (f"{DB}.*",)

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        self.started = time.perf_counter()
        inner = super().records(start)
        return self._bounded(inner)

    def _bounded(self, inner: Iterator[SourceRecord]) -> Iterator[SourceRecord]:
        file, stop = self.range.file, self.range.stop
        try:
            for record in inner:
                if record.__class__ is SourceProgress:  # other tables' transactions, heartbeats
                    where = record.restart.transaction  # type: ignore[union-attr]
                else:
                    where = record.last_position if record.__class__ is TransactionEnd else record.position  # type: ignore[union-attr]
                if where.offset >= stop or where.file != file:
                    return
                yield record
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()


def source_config(host: str, port: int, user: str, password: str, server_id: int) -> MariaDbSourceConfig:
    return MariaDbSourceConfig(
        host=host, port=port, user=user, password=password, server_id=server_id, tables=[f"{DB}.*"]
    )


class TimedRangeSource(RangeSource):
    """Notes the process's CPU time when reading begins (the sinks are open and claimed by then)."""

    started_cpu = 0.0

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        self.started_cpu = time.process_time()
        return super().records(start)
