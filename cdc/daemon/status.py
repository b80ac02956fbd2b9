"""`cdc status`: the pipeline's checkpoint, the source's current position, the lag, the tables."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pymysql

from cdc.config.models import PipelineConfig
from cdc.core.errors import HeadwaterError
from cdc.core.positions import RestartPoint
from cdc.daemon.mariadb_source import connection_settings
from cdc.sources.mariadb.server_position import (
    ServerPosition,
    bytes_behind,
    captured_tables,
    server_position,
)


@dataclass(frozen=True)
class CheckpointStatus:
    restart: str
    gtid: str
    committed_at: str | None


@dataclass(frozen=True)
class PipelineStatus:
    name: str
    mode: str
    source: str
    source_position: ServerPosition | None
    source_error: str | None
    checkpoint: CheckpointStatus | None
    checkpoint_error: str | None
    lag_bytes: int | None
    tables: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        pos = self.source_position
        return {
            "name": self.name,
            "mode": self.mode,
            "source": {
                "address": self.source,
                "file": pos.file if pos else None,
                "offset": pos.offset if pos else None,
                "gtid_state": pos.gtid_state if pos else None,
                "error": self.source_error,
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
            "tables": list(self.tables),
        }


def pipeline_status(config: PipelineConfig) -> PipelineStatus:
    settings = connection_settings(config.source)
    position: ServerPosition | None = None
    source_error: str | None = None
    tables: tuple[str, ...] = ()
    try:
        position = server_position(settings)
        tables = captured_tables(settings, tuple(config.source.tables), tuple(config.source.exclude_tables))
    except (HeadwaterError, pymysql.Error) as exc:
        source_error = str(exc)

    checkpoint: CheckpointStatus | None = None
    checkpoint_error: str | None = None
    lag: int | None = None
    if config.stream is not None:
        from cdc.stream import read_checkpoint  # the Kafka client only when there is a stream

        try:
            found = read_checkpoint(config.stream, config.name)
        except HeadwaterError as exc:
            found, checkpoint_error = None, str(exc)
        if found is not None:
            restart: RestartPoint = found.restart
            committed = found.committed_at
            checkpoint = CheckpointStatus(
                restart.to_string(),
                str(restart.transaction.gtid),
                committed.isoformat() if isinstance(committed, dt.datetime) else committed,
            )
            if position is not None:
                try:
                    lag = bytes_behind(settings, restart.transaction.file, restart.transaction.offset)
                except (HeadwaterError, pymysql.Error) as exc:
                    source_error = str(exc)
    else:
        checkpoint_error = "embedded mode: applied positions are kept by the sinks"
    return PipelineStatus(
        name=config.name,
        mode="embedded" if config.stream is None else "kafka",
        source=f"{config.source.host}:{config.source.port}",
        source_position=position,
        source_error=source_error,
        checkpoint=checkpoint,
        checkpoint_error=checkpoint_error,
        lag_bytes=lag,
        tables=tables,
    )
