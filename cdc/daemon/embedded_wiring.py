"""The embedded daemon wired from a pipeline's config: its MariaDB source, sinks, state files,
snapshots and column policies (`cdc run` without a stream, `cdc bootstrap`, the demo)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdc.config.models import PipelineConfig
from cdc.daemon.embedded import EmbeddedDaemon, EmbeddedOptions, ProgressRecorder
from cdc.daemon.embedded_resume import PipelineIdentity
from cdc.daemon.sink_factory import sink_factory

if TYPE_CHECKING:
    from cdc.daemon.snapshots import Snapshots

__all__ = ["embedded_daemon"]


def embedded_daemon(
    config: PipelineConfig,
    *,
    until_caught_up: bool,
    idle_flush_seconds: float | None = None,
    recorder: ProgressRecorder | None = None,
    snapshots: Snapshots | None = None,
) -> EmbeddedDaemon:
    """`cdc run` without a stream, wired from its config (raises ConfigError for a bad sink)."""
    from cdc.daemon.gtid_journal import journaled
    from cdc.daemon.mariadb_source import MariaDbSource, connection_settings
    from cdc.daemon.schema_guard import guarded
    from cdc.daemon.snapshots import StateFile, snapshots_for
    from cdc.policy import column_policies
    from cdc.sources.mariadb.server_checks import check_source
    from cdc.sources.mariadb.server_position import server_position

    source = config.source

    def identify() -> PipelineIdentity:
        # one short query per attempt: a failover behind the same address shows as another server.
        # The server's settings and the account are checked first, so that a server that cannot be
        # captured from is named for what is wrong with it, not for the first query that failed.
        settings = connection_settings(source)
        check_source(settings, source.server_id, tuple(source.tables))
        server_id = server_position(settings).server_id
        return PipelineIdentity(config.name, f"{source.host}:{source.port}", server_id)

    batch = config.batch
    idle = batch.idle_flush_seconds if idle_flush_seconds is None else idle_flush_seconds

    def source_server_id() -> int:
        return server_position(connection_settings(source)).server_id

    return EmbeddedDaemon(
        # the GTID state of each sink's position, for a failover to a promoted replica
        journaled(sink_factory(config), config.state_dir, source_server_id),
        lambda: MariaDbSource(config.source, blocking=not until_caught_up, guard=guarded(config)),
        config.state_dir,
        EmbeddedOptions(
            batch.max_events,
            batch.max_ms,
            idle,
            pipeline=config.name,
            tables=tuple(config.source.tables),
            exclude_tables=tuple(config.source.exclude_tables),
        ),
        recorder,
        identify,
        (snapshots or snapshots_for(config), StateFile(config.state_dir, config.name)),
        column_policies(config.policies),
    )
