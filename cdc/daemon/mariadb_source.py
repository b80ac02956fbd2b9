"""The daemon's view of a MariaDB source: where it is now, and its records from a restart point."""

from __future__ import annotations

from collections.abc import Iterator

from cdc.config.models import MariaDbSourceConfig
from cdc.core.events import SourceRecord
from cdc.core.positions import RestartPoint
from cdc.sources.mariadb import (
    ConnectionSettings,
    MariaDbBinlogReader,
    ReaderConfig,
    StartAt,
    ZeroDatePolicy,
)
from cdc.sources.mariadb.server_position import captured_tables, current_restart_point


def connection_settings(config: MariaDbSourceConfig) -> ConnectionSettings:
    return ConnectionSettings(
        config.host,
        config.port,
        config.user,
        config.password.get_secret_value(),
        connect_timeout_s=config.connect_timeout_seconds,
    )


class MariaDbSource:
    def __init__(self, config: MariaDbSourceConfig, *, blocking: bool) -> None:
        self._config = config
        self._settings = connection_settings(config)
        self._reader = MariaDbBinlogReader(
            ReaderConfig(
                self._settings,
                server_id=config.server_id,
                tables=tuple(config.tables),
                exclude_tables=tuple(config.exclude_tables),
                heartbeat_s=config.heartbeat_seconds,
                blocking=blocking,
                zero_dates=ZeroDatePolicy(config.zero_dates.value),
            )
        )

    def current_restart_point(self) -> RestartPoint:
        return current_restart_point(self._settings)

    def tables(self) -> tuple[str, ...]:
        return captured_tables(self._settings, tuple(self._config.tables), tuple(self._config.exclude_tables))

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        return self._reader.records(StartAt.at(start))

    def close(self) -> None:
        self._reader.close()
