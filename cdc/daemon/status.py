"""`cdc status`: the source's position, where each sink stands and how far behind, the daemons' last
runs, and a verdict a monitoring check can use.

Cheap by design: one connection to the source (binlog position, binlog files, captured tables), one
read of each sink's applied state, the run-state files in the state directory, and in Kafka mode one
read of the checkpoint topic.

Lag per sink, in both modes: binlog bytes between where the sink would resume and the source's end,
and seconds: 0 when no byte is left; otherwise now minus the source time of the last change (or idle
point) the daemon recorded as durably applied, when the sink holds it (unknown otherwise). In embedded
mode the resume point follows the idle checkpoint, so a pipeline whose captured tables are idle shows
no lag however much the source writes elsewhere.

Verdict (the exit code): 0 healthy; 1 a sink is more than ``max_lag_seconds`` behind, a sink cannot
be read, or the last run of `cdc run` / `cdc sink` stopped on a terminal error; 2 status itself
could not run (a bad config, the source or, in Kafka mode, the checkpoint unreadable).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, replace

import pymysql

from cdc.config.models import BootstrapMode, PipelineConfig, PostgresSourceConfig
from cdc.core.errors import HeadwaterError
from cdc.core.positions import RestartPoint
from cdc.daemon.embedded_resume import (
    PipelineIdentity,
    ProgressFile,
    StartFile,
    order,
    sink_resume_point,
)
from cdc.daemon.mariadb_source import connection_settings
from cdc.daemon.run_state import RunState, read_run_state
from cdc.daemon.status_pg import PgSourceView, pg_source_address, read_pg_source
from cdc.sources.mariadb.connection import ConnectionSettings, control
from cdc.sources.mariadb.server_position import (
    ServerPosition,
    binlog_files,
    read_captured_tables,
    read_server_position,
)
from reconciler.report import LastResult, last_results
from sinks.contract import AppliedState
from snapshotter.state import SnapshotState

HEALTHY, UNHEALTHY, CANNOT_RUN = 0, 1, 2


@dataclass(frozen=True)
class CheckpointStatus:
    restart: str
    gtid: str
    committed_at: str | None


@dataclass(frozen=True)
class SourceView:
    """What one connection to the source tells: its position, its binlog files, the captured tables."""

    position: ServerPosition
    binlogs: tuple[tuple[str, int], ...]  # (file, size), oldest first
    tables: tuple[str, ...]

    def bytes_behind(self, point: RestartPoint) -> int | None:
        """Binlog bytes from ``point`` to the end; None if its file is gone (purged)."""
        file, offset = point.transaction.file, point.binlog_offset
        names = [name for name, _ in self.binlogs]
        if file not in names:
            return None
        index = names.index(file)
        behind = self.binlogs[index][1] - offset + sum(size for _, size in self.binlogs[index + 1 :])
        return max(behind, 0)


def read_source(
    settings: ConnectionSettings, include: tuple[str, ...], exclude: tuple[str, ...]
) -> SourceView:
    # one connection for all three reads; errors name the source and the account, as the daemon's do
    with control(settings, "reading the binlog position, binlog files and tables for `cdc status`") as cur:
        position = read_server_position(cur, settings)
        binlogs = binlog_files(cur)
        tables = read_captured_tables(cur, include, exclude)
    return SourceView(position, binlogs, tables)


@dataclass(frozen=True)
class SinkStatus:
    name: str  # the config's name for it (`sinks[].name`, else its type)
    target: str  # what it writes: "sql:sqlite:///...", "iceberg:wiki"
    applied: str | None  # the last position applied (Kafka mode: the highest one)
    resume_point: str | None  # where it would resume (embedded: after the idle checkpoint too)
    lag_bytes: int | None
    lag_seconds: float | None
    error: str | None  # the sink could not be read
    offsets_lag: int | None = None  # Kafka mode: messages between its stored offsets and the ends

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "target": self.target,
            "applied_position": self.applied,
            "resume_point": self.resume_point,
            "lag_bytes": self.lag_bytes,
            "lag_seconds": self.lag_seconds,
            "offsets_lag": self.offsets_lag,
            "error": self.error,
        }


@dataclass(frozen=True)
class PipelineStatus:
    name: str
    mode: str
    source: str
    source_position: ServerPosition | None
    source_error: str | None
    checkpoint: CheckpointStatus | None
    checkpoint_error: str | None
    lag_bytes: int | None  # Kafka mode: the capture checkpoint's
    tables: tuple[str, ...]
    sinks: tuple[SinkStatus, ...] = ()
    runs: tuple[RunState, ...] = ()  # the recorded runs of `cdc run` (and `cdc sink`)
    # bootstraps: the committed snapshot state (in progress first, then the last finished), and
    # requests handed to the daemon that it has not taken up yet
    bootstraps: SnapshotState | None = None
    bootstrap_requests: tuple[str, ...] = ()
    reconciliations: tuple[LastResult, ...] = ()  # the last `cdc reconcile` result per table and copy
    pg: PgSourceView | None = None  # a PostgreSQL source: its WAL position and the slot
    when_needed: bool = False  # bootstrap.mode when_needed: a lost slot is bootstrapped afresh

    @property
    def source_lsn(self) -> str | None:
        from cdc.daemon.status_pg import format_lsn

        return format_lsn(self.pg.current_lsn) if self.pg is not None else None

    def problems(self, max_lag_seconds: float | None) -> tuple[int, tuple[str, ...]]:
        """The exit code and what earned it."""
        if self.source_error is not None:
            return CANNOT_RUN, (f"source: {self.source_error}",)
        if self.mode == "kafka" and self.checkpoint_error is not None:
            return CANNOT_RUN, (f"checkpoint: {self.checkpoint_error}",)
        found: list[str] = []
        started = self.checkpoint is not None or any(s.applied for s in self.sinks)
        slot_problem = self.pg.slot.problem(started, self.when_needed) if self.pg is not None else None
        if slot_problem is not None:
            found.append(slot_problem)
        for run in self.runs:
            if run.failed and run.last_exit is not None:
                found.append(
                    f"the last `cdc {run.command}` stopped at {run.last_exit.at} with exit "
                    f"{run.last_exit.exit_code}: {run.last_exit.error or 'no message'}"
                )
        for sink in self.sinks:
            if sink.error is not None:
                found.append(f"sink {sink.name} cannot be read: {sink.error}")
            elif max_lag_seconds is not None and (sink.lag_seconds or 0.0) > max_lag_seconds:
                found.append(
                    f"sink {sink.name} is {sink.lag_seconds:.0f}s behind (more than {max_lag_seconds:g}s)"
                )
        return (UNHEALTHY if found else HEALTHY), tuple(found)

    def to_json(self, max_lag_seconds: float | None = None) -> dict[str, object]:
        pos = self.source_position
        code, problems = self.problems(max_lag_seconds)
        return {
            "name": self.name,
            "mode": self.mode,
            "source": {
                "address": self.source,
                "file": pos.file if pos else None,
                "offset": pos.offset if pos else None,
                "gtid_state": pos.gtid_state if pos else None,
                "error": self.source_error,
                **(self.pg.to_json() if self.pg is not None else {}),
            },
            "checkpoint": (
                {
                    "restart_point": self.checkpoint.restart,
                    "gtid": self.checkpoint.gtid,
                    "committed_at": self.checkpoint.committed_at,
                }
                if self.checkpoint
                else None
            ),
            "checkpoint_error": self.checkpoint_error,
            "lag_bytes": self.lag_bytes,
            "sinks": [s.to_json() for s in self.sinks],
            "runs": {run.command: run.to_json() for run in self.runs},
            "tables": list(self.tables),
            "bootstraps": _bootstraps_json(self.bootstraps, self.bootstrap_requests),
            "reconciliations": [dataclasses.asdict(r) for r in self.reconciliations],
            "exit_code": code,
            "problems": list(problems),
        }


def _bootstraps_json(state: SnapshotState | None, requests: tuple[str, ...]) -> dict[str, object]:
    jobs = state.jobs if state is not None else ()
    finished = state.finished[-10:] if state is not None else ()
    return {
        "in_progress": [
            {
                "request": j.request,
                "table": str(j.table),
                "rows": j.rows,
                "chunks": j.chunks,
                "started_at": j.started_at,
                "state": "reading" if index == 0 else "queued",
            }
            for index, j in enumerate(jobs)
        ],
        "finished": [{"refused": None, **f.to_json()} for f in finished],
        "requests_waiting": list(requests),
    }


def _read_bootstraps(
    config: PipelineConfig, snapshot_text: str | None
) -> tuple[SnapshotState | None, tuple[str, ...]]:
    """The committed snapshot state (Kafka: from the checkpoint; embedded: its file) and waiting requests."""
    from cdc.daemon.snapshots import StateFile
    from snapshotter.requests import RequestBox

    try:
        text = snapshot_text if config.stream is not None else StateFile(config.state_dir, config.name).read()
        state = SnapshotState.parse(text) if text else None
    except HeadwaterError:
        state = None
    accepted = {j.request for j in state.jobs} | {f.request for f in state.finished} if state else set()
    waiting = tuple(r.id for r in RequestBox(config.state_dir, config.name).pending() if r.id not in accepted)
    return state, waiting


def _lag_seconds(
    lag_bytes: int | None, resume: RestartPoint | None, run: RunState | None, now_s: float
) -> float | None:
    if lag_bytes == 0:
        return 0.0
    progress = run.last_progress if run is not None else None
    if resume is None or progress is None:
        return None
    if order(RestartPoint.parse(progress.resume_point)) > order(resume):
        return None  # the recorded progress is past this sink: its own time is not known
    return max(0.0, now_s - progress.source_ts_ms / 1000)


def _sink_statuses(
    config: PipelineConfig, view: SourceView | PgSourceView | None, run: RunState | None
) -> tuple[SinkStatus, ...]:
    from sinks.registry import open_sink

    embedded = config.stream is None
    start: RestartPoint | None = None
    source = config.any_source
    # whose the state files must be; unknown when the source cannot be read (status exits 2 then)
    identity: PipelineIdentity | None = None
    if isinstance(view, PgSourceView) and isinstance(source, PostgresSourceConfig):
        identity = PipelineIdentity(config.name, pg_source_address(source), 0)  # as the daemon records it
    elif isinstance(view, SourceView):
        identity = PipelineIdentity(config.name, f"{source.host}:{source.port}", view.position.server_id)
    if embedded:
        try:
            start = StartFile(config.state_dir).read(identity)
        except HeadwaterError as exc:  # the daemon stops on it too; status says why
            return tuple(SinkStatus(name, "", None, None, None, None, str(exc)) for name in config.sink_names)
    stretch = (
        ProgressFile(config.state_dir).read(tuple(source.tables), tuple(source.exclude_tables), identity)
        if embedded
        else None
    )
    now_s = time.time()
    out: list[SinkStatus] = []
    held: dict[int, dict[str, int]] = {}  # Kafka mode: index in `out` -> the sink's stored offsets
    for name, sink_config in zip(config.sink_names, config.sinks, strict=True):
        target = ""
        applied: AppliedState | None = None
        try:
            sink = open_sink(sink_config, config.name)
            target = sink.name
            sink.open()
            try:
                applied = sink.applied()
            finally:
                sink.close()
        except Exception as exc:  # noqa: BLE001 - a sink that cannot be read is reported; the rest goes on
            out.append(SinkStatus(name, target, None, None, None, None, str(exc) or type(exc).__name__))
            continue
        if embedded:
            resume = sink_resume_point(applied, start, stretch)
        else:
            resume = RestartPoint.after(applied.position) if applied is not None else None
        lag = view.bytes_behind(resume) if view is not None and resume is not None else None
        if not embedded:
            held[len(out)] = dict(applied.offsets) if applied is not None else {}
        out.append(
            SinkStatus(
                name,
                target,
                applied.position.to_string() if applied is not None else None,
                resume.to_string() if resume is not None else None,
                lag,
                _lag_seconds(lag, resume, run if embedded else None, now_s),
                None,
            )
        )
    if config.stream is not None and held and view is not None:
        from cdc.daemon.status_kafka import offsets_lag

        lags: list[int | None]
        try:
            lags = list(offsets_lag(config.stream, config.name, view.tables, list(held.values())))
        except HeadwaterError:  # Kafka is not answering: the position lag above still stands
            lags = [None] * len(held)
        for index, messages in zip(held, lags, strict=True):
            out[index] = replace(out[index], offsets_lag=messages)
    return tuple(out)


def pipeline_status(config: PipelineConfig) -> PipelineStatus:
    source = config.any_source
    view: SourceView | PgSourceView | None = None
    source_error: str | None = None
    address = f"{source.host}:{source.port}"
    try:
        if isinstance(source, PostgresSourceConfig):
            address = pg_source_address(source)
            view = read_pg_source(source, config.name)
        else:
            view = read_source(
                connection_settings(source), tuple(source.tables), tuple(source.exclude_tables)
            )
    except (HeadwaterError, pymysql.Error) as exc:
        source_error = str(exc)

    checkpoint: CheckpointStatus | None = None
    checkpoint_error: str | None = None
    lag: int | None = None
    snapshot_text: str | None = None
    if config.stream is not None:
        from cdc.stream import read_checkpoint  # the Kafka client only when there is a stream

        try:
            found = read_checkpoint(config.stream, config.name)
        except HeadwaterError as exc:
            found, checkpoint_error = None, str(exc)
        if found is not None:
            snapshot_text = found.snapshot
            restart: RestartPoint = found.restart
            committed = found.committed_at
            checkpoint = CheckpointStatus(
                restart.to_string(),
                str(restart.transaction.gtid),
                committed.isoformat() if isinstance(committed, dt.datetime) else committed,
            )
            if view is not None:
                lag = view.bytes_behind(restart)
    runs = tuple(
        r
        for r in (read_run_state(config.state_dir, c, config.name) for c in ("run", "sink"))
        if r is not None
    )
    run = next((r for r in runs if r.command == "run"), None)
    bootstraps, waiting = _read_bootstraps(config, snapshot_text)
    return PipelineStatus(
        name=config.name,
        mode="embedded" if config.stream is None else "kafka",
        source=address,
        source_position=view.position if isinstance(view, SourceView) else None,
        source_error=source_error,
        checkpoint=checkpoint,
        checkpoint_error=checkpoint_error,
        lag_bytes=lag,
        tables=view.tables if view else (),
        sinks=_sink_statuses(config, view, run),
        runs=runs,
        bootstraps=bootstraps,
        bootstrap_requests=waiting,
        reconciliations=_last_reconciliations(config),
        pg=view if isinstance(view, PgSourceView) else None,
        when_needed=config.bootstrap.mode is BootstrapMode.WHEN_NEEDED,
    )


def _last_reconciliations(config: PipelineConfig) -> tuple[LastResult, ...]:
    try:
        return last_results(config.state_dir)
    except (OSError, ValueError, KeyError, TypeError):  # an unreadable history is not status's failure
        return ()
