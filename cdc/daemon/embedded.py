"""`cdc run` without a stream: the binlog applied straight to the sinks (embedded mode).

Each sink stores the position it has applied together with its data, so there is no checkpoint of
our own to keep in step: a start resumes from the lowest applied position over all sinks, and each
sink skips what it already holds. Only a pipeline's very first start writes a small file in the state
directory: the source position it started from, for sinks that have applied nothing yet.

Batches are cut by size and time, not only at transaction ends, so a transaction of millions of rows
needs no memory proportional to its size; a serving database may then show such a transaction in
parts until its last batch is applied (Kafka mode keeps transactions whole).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cdc.config.models import PipelineConfig
from cdc.core.errors import HeadwaterError, PositionFormatError
from cdc.core.events import ChangeEvent, SchemaChange, SourceProgress, TransactionEnd
from cdc.core.positions import RestartPoint
from cdc.daemon.capture import Source
from cdc.daemon.pump import EndOfStream, ReaderPump
from cdc.daemon.supervisor import Supervisor
from sinks.contract import AppliedState, Sink, SinkBatch

log = logging.getLogger("cdc.run")

START_FILE = "embedded-start.json"


@dataclass(frozen=True)
class EmbeddedOptions:
    max_events: int = 10_000
    max_ms: int = 500
    idle_flush_seconds: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0


def _order(point: RestartPoint) -> tuple[object, int]:
    return (point.transaction, point.skip_rows)


class StartFile:
    """The position a pipeline first started from; read for sinks that have applied nothing."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / START_FILE

    def read(self) -> RestartPoint | None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise PositionFormatError(
                f"{self.path} is not valid JSON: {exc}; delete it to start at the source's current position"
            ) from exc
        return RestartPoint.parse(str(raw.get("restart_point")))

    def write(self, point: RestartPoint) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"restart_point": point.to_string()}) + "\n")
        tmp.replace(self.path)


class EmbeddedDaemon:
    def __init__(
        self,
        open_sinks: Callable[[], Sequence[Sink]],
        open_source: Callable[[], Source],
        state_dir: Path,
        options: EmbeddedOptions,
    ) -> None:
        self._open_sinks = open_sinks
        self._open_source = open_source
        self._start_file = StartFile(state_dir)
        self._options = options
        self._supervisor = Supervisor(options.backoff_initial_s, options.backoff_max_s)
        self._stop = self._supervisor.stop_requested
        self.rows_applied = 0

    def run(self) -> int:
        return self._supervisor.run(self._run_once)

    def request_stop(self) -> None:
        """Finish the batch in progress and return from :meth:`run` (what SIGTERM does)."""
        self._supervisor.request_stop()

    def _resume_point(self, sinks: Sequence[Sink], source: Source) -> RestartPoint:
        candidates: list[RestartPoint] = []
        fresh = []
        for sink in sinks:
            applied = sink.applied()
            if applied is None:
                fresh.append(sink.name)
            else:
                candidates.append(RestartPoint.after(applied.position))
                log.info("sink %s has applied up to %s", sink.name, applied.position.to_string())
        if fresh or not candidates:
            start = self._start_file.read()
            if start is None:
                start = source.current_restart_point()
                self._start_file.write(start)  # before reading: a crash must come back here
                log.info("first start: beginning at the source's current position %s", start.to_string())
            if fresh:
                log.info(
                    "sinks with nothing applied yet (%s) start at %s", ", ".join(fresh), start.to_string()
                )
            candidates.append(start)
        return min(candidates, key=_order)

    def _run_once(self) -> None:
        sinks = list(self._open_sinks())
        pump: ReaderPump | None = None
        try:
            for sink in sinks:
                sink.open()
            source = self._open_source()
            start = self._resume_point(sinks, source)
            tables = source.tables()
            log.info("applying %d tables to %d sinks, from %s", len(tables), len(sinks), start.to_string())
            pump = ReaderPump(lambda: source.records(start), source.close)
            pump.start()
            self._apply_loop(pump, sinks)
            for sink in sinks:
                sink.flush()
        finally:
            if pump is not None:
                pump.stop()
            for sink in sinks:
                try:
                    sink.close()
                except HeadwaterError as exc:
                    log.warning("closing sink %s: %s", sink.name, exc)

    def _apply_loop(self, pump: ReaderPump, sinks: Sequence[Sink]) -> None:
        opts = self._options
        batch: list[ChangeEvent | SchemaChange] = []
        deadline = 0.0
        last_flush = time.monotonic()
        dirty = False  # applied since the sinks' last flush
        window_rows, window_start = 0, time.monotonic()

        def apply() -> None:
            nonlocal batch, dirty, window_rows
            if not batch:
                return
            state = AppliedState(batch[-1].position)
            sink_batch = SinkBatch(tuple(batch), state)
            for sink in sinks:
                sink.apply(sink_batch)
            self.rows_applied += len(batch)
            window_rows += len(batch)
            batch = []
            dirty = True

        while True:
            now = time.monotonic()
            if now - window_start >= 10.0:
                log.info(
                    "applied %d changes (%.0f/s) to %d sinks",
                    self.rows_applied,
                    window_rows / (now - window_start),
                    len(sinks),
                )
                window_rows, window_start = 0, now
            chunk = pump.get(max(deadline - now, 0.0) if batch else 0.5)
            if chunk is None:
                if batch and time.monotonic() >= deadline:
                    apply()
                if dirty and time.monotonic() - last_flush >= opts.idle_flush_seconds:
                    for sink in sinks:
                        sink.flush()
                    dirty, last_flush = False, time.monotonic()
                if self._stop.is_set():
                    apply()
                    return
                continue
            if isinstance(chunk, EndOfStream):
                if chunk.error is not None:
                    raise chunk.error
                apply()
                log.info("caught up with the source: %d changes applied", self.rows_applied)
                return
            for record in chunk:
                if record.__class__ is TransactionEnd:
                    # a transaction end is the best place to cut a batch that is due
                    if batch and (len(batch) >= opts.max_events or time.monotonic() >= deadline):
                        apply()
                    if self._stop.is_set():
                        apply()
                        return
                    continue
                if record.__class__ is SourceProgress:
                    continue  # TODO(issue 8.3): advance the sinks' resume point through idle stretches
                # a SourceRecord that is not a TransactionEnd: no per-row isinstance on the hot path
                record = cast(ChangeEvent | SchemaChange, record)
                if not batch:
                    deadline = time.monotonic() + opts.max_ms / 1000
                batch.append(record)
                if len(batch) >= 4 * opts.max_events:  # a huge transaction: cut inside it
                    apply()


def sink_factory(config: PipelineConfig) -> Callable[[], list[Sink]]:
    """Opens the config's sinks for each daemon attempt. The first set is built at once, so that a
    missing driver or a bad sink setting is reported (ConfigError) before anything starts."""
    from sinks.registry import open_sink

    first: list[list[Sink]] = [[open_sink(sink, config.name) for sink in config.sinks]]

    def open_sinks() -> list[Sink]:
        if first:
            return first.pop()
        return [open_sink(sink, config.name) for sink in config.sinks]

    return open_sinks


def embedded_daemon(
    config: PipelineConfig, *, until_caught_up: bool, idle_flush_seconds: float | None = None
) -> EmbeddedDaemon:
    """`cdc run` without a stream, wired from its config (raises ConfigError for a bad sink)."""
    from cdc.daemon.mariadb_source import MariaDbSource

    batch = config.batch
    idle = batch.idle_flush_seconds if idle_flush_seconds is None else idle_flush_seconds
    return EmbeddedDaemon(
        sink_factory(config),
        lambda: MariaDbSource(config.source, blocking=not until_caught_up),
        config.state_dir,
        EmbeddedOptions(batch.max_events, batch.max_ms, idle),
    )
