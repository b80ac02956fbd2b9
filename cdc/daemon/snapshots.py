"""The daemon's side of bootstraps: what to bootstrap at a start, and the merging pump around the stream.

Both daemons (Kafka and embedded) call the same three things:
- ``binlog_gone(point)``: the restart point's binlog file was purged (under ``when_needed`` the
  daemon then starts at the source's current position and bootstraps every table afresh);
- ``prepare(...)``: the state at this start, with the decisions of the bootstrap mode taken (every
  table at the first start, tables captured since the last start, every table after a gap), which
  the daemon stores before reading anything, so a crash cannot forget them;
- ``wrap(pump, start, state)``: the ReaderPump, with snapshot chunks merged into it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

from cdc.config.models import BootstrapMode, PipelineConfig
from cdc.core.positions import RestartPoint
from cdc.core.schemas import TableRef
from cdc.daemon.embedded_resume import write_atomically
from cdc.daemon.pump import ReaderPump
from snapshotter.chunk_feed import ChunkFeed, ChunkReader
from snapshotter.chunk_log import ChunkLog, LoggedChunk
from snapshotter.chunk_sizer import ChunkSizer
from snapshotter.merge import MergingPump
from snapshotter.requests import RequestBox
from snapshotter.state import SnapshotState

log = logging.getLogger("cdc.bootstrap")

__all__ = ["Snapshots", "StateFile"]


def _table_ref(name: str) -> TableRef:
    db, _, table = name.partition(".")
    return TableRef(db, table)


class StateFile:
    """Embedded mode: the snapshot state, written once the sinks hold the rows it covers."""

    def __init__(self, state_dir: Path, pipeline: str) -> None:
        self.path = Path(state_dir) / f"snapshot-state-{pipeline}.json"

    def read(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None

    def write(self, text: str) -> None:
        write_atomically(self.path, text)


class Snapshots:
    def __init__(
        self,
        config: PipelineConfig,
        open_reader: Callable[[], ChunkReader],
        *,
        binlog_files: Callable[[], tuple[tuple[str, ...], int]] | None = None,
        when_done: Callable[[], None] | None = None,
        first_start_by_source: bool = False,
    ) -> None:
        """``first_start_by_source``: the source reads every table itself at the first start (a
        PostgreSQL slot's exported snapshot, cdc/sources/postgresql/snapshot.py), and after a lost
        slot; only tables captured later and `cdc bootstrap` requests go through chunks here."""
        self._config = config
        self._first_start_by_source = first_start_by_source
        self._open_reader = open_reader
        self._binlog_files = binlog_files
        self._when_done = when_done
        self.requests = RequestBox(config.state_dir, config.name)
        self.chunk_log = ChunkLog(config.state_dir, config.name)  # embedded mode's write-ahead log
        self.pump: MergingPump | None = None  # the current attempt's (tests, status)

    @property
    def mode(self) -> BootstrapMode:
        return self._config.bootstrap.mode

    def binlog_gone(self, point: RestartPoint) -> bool:
        """The point's binlog file is no longer on the server it was read from. On another server (a
        promoted replica) file names say nothing: the failover resume (by GTID) decides there."""
        if self._binlog_files is None:
            return False
        files, server_id = self._binlog_files()
        context = point.context
        if context is not None and context.server_id != server_id:
            return False
        return bool(files) and point.transaction.file not in files

    def prepare(
        self, state_text: str | None, *, first_start: bool, tables: tuple[str, ...], after_gap: bool = False
    ) -> SnapshotState:
        state = SnapshotState.parse(state_text)
        captured = [_table_ref(t) for t in tables]
        bootstrapping = self.mode is not BootstrapMode.NEVER
        pending = {job.table for job in state.jobs}
        if after_gap and self.mode is BootstrapMode.WHEN_NEEDED:
            log.warning(
                "the checkpoint's binlog was purged: bootstrapping every captured table afresh "
                "(bootstrap.mode when_needed); their copies are truncated first"
            )
            fresh = [t for t in captured if t not in pending]
            state = state.queued("after-gap", fresh, replace=True)
        elif not state.initialized:
            if first_start and bootstrapping and not self._first_start_by_source:
                state = state.queued("initial", captured)
            else:
                # a pipeline that ran before it kept snapshot state: its tables count as known
                state = dataclasses.replace(state, known=state.known | frozenset(captured))
        elif bootstrapping:
            new = [t for t in captured if t not in state.known and t not in pending]
            if new:
                log.info("tables captured since the last start: %s", ", ".join(str(t) for t in new))
                state = state.queued("new-tables", new)
        else:
            state = dataclasses.replace(state, known=state.known | frozenset(captured))
        return dataclasses.replace(state, initialized=True)

    def wrap(
        self, pump: ReaderPump, start: RestartPoint, state: SnapshotState, replay: LoggedChunk | None = None
    ) -> MergingPump:
        cfg = self._config.bootstrap
        sizer = ChunkSizer(
            target_s=cfg.chunk_seconds,
            min_rows=cfg.min_chunk_rows,
            max_rows=cfg.max_chunk_rows,
            initial_rows=min(max(cfg.min_chunk_rows, 5_000), cfg.max_chunk_rows),
        )
        merged = MergingPump(
            pump,
            ChunkFeed(self._open_reader),
            state,
            start,
            requests=self.requests,
            sizer=sizer,
            when_done=self._when_done,
            replay=replay,
        )
        # 1M-row A/B, 3 rounds each (benchmarks/results/latest.md): the chunk's columns and Arrow
        # arrays made on the reader's thread cut an Iceberg bootstrap's CPU by ~12%, but raised a
        # PostgreSQL-only one's by ~12% (its many short waits for the server contend with that thread)
        merged.prepare_ahead = any(s.type == "iceberg" for s in self._config.sinks)
        if state.jobs:
            log.info(
                "bootstrapping %d tables (pid %d): %s",
                len(state.jobs),
                os.getpid(),
                ", ".join(str(j.table) for j in state.jobs[:10]),
            )
        self.pump = merged
        return merged


def snapshots_for(config: PipelineConfig, *, when_done: Callable[[], None] | None = None) -> Snapshots:
    """The bootstrap side of a daemon, wired from its config (the source's connection settings)."""
    if config.any_source.type == "postgresql":
        return _postgresql_snapshots(config, when_done)
    from cdc.daemon.mariadb_source import connection_settings
    from cdc.sources.mariadb import ZeroDatePolicy
    from cdc.sources.mariadb.connection import control
    from cdc.sources.mariadb.server_position import binlog_files
    from snapshotter.reader import SnapshotReader

    settings = connection_settings(config.source)
    zero_dates = ZeroDatePolicy(config.source.zero_dates.value)

    def open_reader() -> ChunkReader:
        return SnapshotReader(settings, zero_dates)

    def files() -> tuple[tuple[str, ...], int]:
        """The server's binlog files, and its @@server_id."""
        with control(settings, "listing the binlog files (SHOW BINARY LOGS)") as cur:
            names = tuple(name for name, _size in binlog_files(cur))
            cur.execute("SELECT @@server_id")
            row = cur.fetchone()
            return names, int(row[0]) if row else 0

    return Snapshots(config, open_reader, binlog_files=files, when_done=when_done)


def _postgresql_snapshots(config: PipelineConfig, when_done: Callable[[], None] | None) -> Snapshots:
    from cdc.config.models import PostgresSourceConfig
    from cdc.sources.postgresql.source_config import pg_settings
    from snapshotter.pg_reader import PgChunkReader

    source = config.any_source
    assert isinstance(source, PostgresSourceConfig)
    settings = pg_settings(source)

    def open_reader() -> ChunkReader:
        return PgChunkReader(settings)

    return Snapshots(config, open_reader, when_done=when_done, first_start_by_source=True)
