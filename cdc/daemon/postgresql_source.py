"""The daemon's view of a PostgreSQL source (the same shape as MariaDbSource), and the writer wrapper
that acknowledges the slot once Kafka committed a checkpoint.

The slot is acknowledged only up to a checkpoint that Kafka (or every sink) holds: a crash between a
commit and its acknowledgement makes the slot send those transactions again, and the decoder drops
what precedes the checkpoint. Nothing is lost and nothing is written twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

from cdc.config.models import BootstrapMode, PipelineConfig, PostgresSourceConfig
from cdc.core.errors import ConfigError, StreamGap
from cdc.core.events import SourceRecord
from cdc.core.positions import RestartPoint, lsn_position
from cdc.core.table_filter import TableFilter
from cdc.daemon.capture import StreamWriter
from cdc.sources.postgresql.reader import Acks, PgLogicalReader, ReaderOptions, is_snapshot_pending
from cdc.sources.postgresql.server import (
    RECOVER,
    captured_tables,
    check_server,
    connect,
    current_lsn,
    ensure_publication,
    ensure_slot,
    parse_lsn,
)
from cdc.sources.postgresql.source_config import pg_settings, slot_name

if TYPE_CHECKING:
    import psycopg

    from cdc.daemon.capture import CaptureDaemon
    from cdc.daemon.embedded import EmbeddedDaemon, ProgressRecorder
    from cdc.daemon.embedded_resume import PipelineIdentity, ProgressFile
    from cdc.daemon.snapshots import Snapshots
    from cdc.policy import ColumnPolicies

log = logging.getLogger("cdc.source.postgresql")

__all__ = [
    "AckingRecorder",
    "AckingWriter",
    "PostgresSource",
    "postgresql_capture",
    "postgresql_embedded",
]


class PostgresSource:
    def __init__(
        self,
        config: PostgresSourceConfig,
        pipeline: str,
        *,
        blocking: bool,
        acks: Acks,
        bootstrap: bool = False,
        when_needed: bool = False,
        embedded: bool = False,
        acknowledged: Callable[[], RestartPoint | None] | None = None,
    ) -> None:
        self._config = config
        # embedded: the end of the idle stretch the pipeline itself acknowledged to the slot
        self._acknowledged = acknowledged
        self._settings = pg_settings(config)
        self._slot = slot_name(config, pipeline)
        self._filter = TableFilter(tuple(config.tables), tuple(config.exclude_tables))
        self._acks = acks
        self._blocking = blocking
        self._bootstrap = bootstrap  # the first start reads every captured table (snapshot.py)
        # a lost slot (dropped, invalidated, advanced past the checkpoint): bootstrap afresh
        self._when_needed = when_needed
        # embedded mode applies a snapshot in batches: sinks may hold part of it (see records)
        self._embedded = embedded
        self._reader = self._new_reader()

    def _new_reader(self) -> PgLogicalReader:
        options = ReaderOptions(
            self._settings,
            self._slot,
            self._config.publication,
            self._filter,
            heartbeat_s=self._config.heartbeat_seconds,
            blocking=self._blocking,
        )
        return PgLogicalReader(options, self._acks)

    @property
    def slot(self) -> str:
        return self._slot

    @property
    def blocking(self) -> bool:
        return self._blocking

    def read_until_stopped(self) -> None:
        if not self._blocking:
            self._blocking = True
            self._reader = self._new_reader()

    def current_restart_point(self) -> RestartPoint:
        """The first start: the slot (created now if allowed), from its consistent point; with a
        bootstrap, "snapshot pending" (the slot is created with its snapshot when reading starts)."""
        with connect(self._settings) as conn:
            check_server(conn, self._settings)
            ensure_publication(conn, self._config.publication, self._config.create_publication)
            if self._bootstrap:
                return RestartPoint(lsn_position(current_lsn(conn) - 1, 0, 0, anchor=True))
            state = ensure_slot(conn, self._slot, self._config.create_slot, first_start=True)
        return RestartPoint(lsn_position(state.confirmed_flush_lsn, 0, 0))

    def tables(self) -> tuple[str, ...]:
        with connect(self._settings) as conn:
            return tuple(f"{ns}.{t}" for ns, t in captured_tables(conn) if self._filter.accepts(ns, t))

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        start_lsn = start.transaction.lsn
        if start_lsn is None:
            raise StreamGap(
                f"the checkpoint {start.to_string()} is a MariaDB position; this pipeline's source is "
                f"PostgreSQL: give it a new pipeline name (or delete its checkpoints) and bootstrap"
            )
        with connect(self._settings) as conn:
            check_server(conn, self._settings)
            ensure_publication(conn, self._config.publication, self._config.create_publication)
            if is_snapshot_pending(start):
                # the reader creates the slot with its snapshot; embedded, each table's rows follow
                # a truncate: a sink that holds part of an earlier attempt's rows loses them
                return self._reader.records(start, afresh=self._embedded)
            if (
                self._embedded
                and self._bootstrap
                and start.transaction.is_snapshot_anchor
                and self._inside_first_snapshot(conn, start_lsn)
            ):
                # The sinks resume inside the snapshot's rows: they hold part of it (or all of it
                # and nothing since). Its exported snapshot is gone with the session that read it,
                # so the rest cannot be read as of the same moment: read every table again, afresh.
                log.warning(
                    "the sinks resume inside the bootstrap's snapshot (%s): reading every captured "
                    "table again in a new slot's snapshot, each copy truncated first",
                    start.to_string(),
                )
                return self._reader.records(start, afresh=True)
            try:
                self._check_slot(conn, start_lsn, start)
            except StreamGap as gap:
                if not self._when_needed:
                    raise
                log.warning(
                    "%s; bootstrap.mode when_needed: bootstrapping every captured table afresh in a new "
                    "slot's snapshot (each copy is truncated first, so rows deleted meanwhile go too)",
                    str(gap).split("; to recover", 1)[0],
                )
                return self._reader.records(start, afresh=True)
        return self._reader.records(start)

    def _inside_first_snapshot(self, conn: psycopg.Connection[tuple[object, ...]], anchor_lsn: int) -> bool:
        """An anchor is where snapshot rows sit: the first start's (one byte before the new slot's
        consistent point, which the slot still confirms: its acknowledgements, one byte below the
        sinks' LSN, cannot pass it while the sinks resume there) or an incremental chunk's, later in
        the stream (cdc bootstrap), after which the slot confirms no more than the anchor itself."""
        row = conn.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (self._slot,)
        ).fetchone()
        if row is None or row[0] is None:
            return True  # no slot to resume: a new one's snapshot either way
        return parse_lsn(str(row[0])) == anchor_lsn + 1

    def _check_slot(
        self, conn: psycopg.Connection[tuple[object, ...]], start_lsn: int, start: RestartPoint
    ) -> None:
        """StreamGap if the slot cannot give every change after ``start``."""
        state = ensure_slot(conn, self._slot, self._config.create_slot, first_start=False)
        if start.transaction.is_snapshot_anchor:
            start_lsn += 1  # after a bootstrap's rows: they sit just before the slot's first LSN
        if state.confirmed_flush_lsn > start_lsn:
            own = self._acknowledged() if self._acknowledged is not None else None
            own_lsn = own.transaction.lsn if own is not None else None
            if own_lsn is not None and state.confirmed_flush_lsn <= own_lsn:
                # This pipeline acknowledged an idle stretch under another table selection, which
                # its sinks do not resume over (embedded_resume.py): no change of the tables it
                # captured then lies before the slot's point, and the tables added since need a
                # bootstrap for what came before they were captured anyway.
                log.warning(
                    "replication slot %r was acknowledged up to %X by this pipeline's idle checkpoint "
                    "under another table selection; reading from there: changes of tables added to "
                    "the selection since, made before that point, are not read (bootstrap them: "
                    "`cdc bootstrap <db.table>`)",
                    self._slot,
                    state.confirmed_flush_lsn,
                )
                return
            raise StreamGap(
                f"replication slot {self._slot!r} was advanced past the checkpoint (confirmed_flush_lsn "
                f"{state.confirmed_flush_lsn:X} > {start_lsn:X}) by something other than this pipeline: "
                f"changes in between are lost; {RECOVER}"
            )

    def close(self) -> None:
        self._reader.close()


class AckingWriter:
    """A StreamWriter that, after each commit, hands the checkpoint's LSN to the slot's acknowledger."""

    def __init__(self, writer: StreamWriter, acks: Acks) -> None:
        self._writer = writer
        self._acks = acks

    @property
    def snapshot_state(self) -> str | None:
        return self._writer.snapshot_state

    @snapshot_state.setter
    def snapshot_state(self, value: str | None) -> None:
        self._writer.snapshot_state = value

    def start(self) -> RestartPoint | None:
        return self._writer.start()

    def begin(self) -> None:
        self._writer.begin()

    def write(self, record: SourceRecord) -> None:
        self._writer.write(record)

    def commit(self, checkpoint: RestartPoint) -> None:
        self._writer.commit(checkpoint)
        self._acks.committed(checkpoint.transaction.lsn)

    def abort(self) -> None:
        self._writer.abort()

    def close(self) -> None:
        self._writer.close()


def postgresql_capture(
    config: PipelineConfig,
    *,
    until_caught_up: bool,
    policies: ColumnPolicies | None,
    snapshots: Snapshots | None = None,
) -> CaptureDaemon:
    """`cdc run` of a PostgreSQL pipeline with a Kafka stream (raises ConfigError without one).
    ``snapshots``: the chunked bootstraps (`cdc bootstrap`, tables captured later); by default
    those of the config."""
    from cdc.daemon.capture import CaptureDaemon, CaptureOptions
    from cdc.daemon.snapshots import snapshots_for
    from cdc.stream import KafkaStreamWriter

    source = config.any_source
    stream = config.stream
    if not isinstance(source, PostgresSourceConfig):
        raise ConfigError("source.type: expected postgresql")
    if stream is None:
        raise ConfigError("stream: none configured (embedded mode is postgresql_embedded)")
    when_needed = config.bootstrap.mode is BootstrapMode.WHEN_NEEDED
    bootstrap = when_needed or config.bootstrap.mode is BootstrapMode.INITIAL
    acks = Acks()
    options = CaptureOptions(
        until_caught_up=until_caught_up,
        flush_max_events=stream.flush_max_events,
        flush_max_ms=stream.flush_max_ms,
    )
    return CaptureDaemon(
        lambda: AckingWriter(KafkaStreamWriter(stream, config.name, source.server_id), acks),
        lambda: PostgresSource(
            source,
            config.name,
            blocking=not until_caught_up,
            acks=acks,
            bootstrap=bootstrap,
            when_needed=when_needed,
        ),
        options,
        snapshots or snapshots_for(config),
        policies,
    )


class AckingRecorder:
    """Embedded mode's acknowledger: told (by the daemon) when every sink durably holds everything
    before a resume point, it hands that point's LSN to the slot, then tells `cdc status`."""

    def __init__(self, acks: Acks, recorder: ProgressRecorder | None) -> None:
        self._acks = acks
        self._recorder = recorder

    def progress(self, resume_point: RestartPoint, source_ts_ms: int, *, force: bool = False) -> None:
        self._acks.committed(resume_point.transaction.lsn)
        if self._recorder is not None:
            self._recorder.progress(resume_point, source_ts_ms, force=force)


def postgresql_embedded(
    config: PipelineConfig,
    *,
    until_caught_up: bool,
    recorder: ProgressRecorder | None,
    snapshots: Snapshots | None = None,
) -> EmbeddedDaemon:
    """`cdc run` of a PostgreSQL pipeline without a stream: changes applied straight to the sinks,
    the slot acknowledged once every sink has flushed (raises ConfigError for what is not built)."""
    from cdc.daemon.embedded import EmbeddedDaemon, EmbeddedOptions
    from cdc.daemon.embedded_resume import PipelineIdentity, ProgressFile
    from cdc.daemon.sink_factory import sink_factory
    from cdc.daemon.snapshots import StateFile, snapshots_for
    from cdc.policy import column_policies

    source = config.any_source
    if not isinstance(source, PostgresSourceConfig):
        raise ConfigError("source.type: expected postgresql")
    when_needed = config.bootstrap.mode is BootstrapMode.WHEN_NEEDED
    bootstrap = config.bootstrap.mode is not BootstrapMode.NEVER
    acks = Acks()
    batch = config.batch
    where = f"{source.host}:{source.port}/{source.database}"
    identity = PipelineIdentity(config.name, where, 0)
    return EmbeddedDaemon(
        sink_factory(config),
        lambda: PostgresSource(
            source,
            config.name,
            blocking=not until_caught_up,
            acks=acks,
            bootstrap=bootstrap,
            when_needed=when_needed,
            embedded=True,
            acknowledged=partial(_idle_end, ProgressFile(config.state_dir), identity),
        ),
        config.state_dir,
        EmbeddedOptions(
            batch.max_events,
            batch.max_ms,
            batch.idle_flush_seconds,
            pipeline=config.name,
            tables=tuple(source.tables),
            exclude_tables=tuple(source.exclude_tables),
        ),
        AckingRecorder(acks, recorder),
        lambda: identity,  # no server ids: one database, one slot
        (snapshots or snapshots_for(config), StateFile(config.state_dir, config.name)),
        column_policies(config.policies),
    )


def _idle_end(progress: ProgressFile, identity: PipelineIdentity) -> RestartPoint | None:
    """The end of the idle stretch this pipeline recorded (and acknowledged), any table selection."""
    stretch = progress.observed(identity)
    return stretch.end if stretch is not None else None
