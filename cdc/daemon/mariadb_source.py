"""The daemon's view of a MariaDB source: where it is now, and its records from a restart point."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from cdc.config.models import MariaDbSourceConfig
from cdc.core.events import SourceRecord
from cdc.core.positions import RestartPoint
from cdc.sources.mariadb import (
    MariaDbBinlogReader,
    ReaderConfig,
    StartAt,
    ZeroDatePolicy,
)
from cdc.sources.mariadb.server_checks import check_source
from cdc.sources.mariadb.server_position import captured_tables, current_restart_point
from cdc.sources.mariadb.source_config import connection_settings as connection_settings

Guard = Callable[[Iterator[SourceRecord]], Iterator[SourceRecord]]


class MariaDbSource:
    """Checks the server's settings and the account's access once, before its first answer."""

    def __init__(self, config: MariaDbSourceConfig, *, blocking: bool, guard: Guard | None = None) -> None:
        self._config = config
        self._guard = guard  # the compatibility policy (cdc.daemon.schema_guard), around the records
        self._settings = connection_settings(config)
        self._checked = False
        self._reader_config = ReaderConfig(
            self._settings,
            server_id=config.server_id,
            tables=tuple(config.tables),
            exclude_tables=tuple(config.exclude_tables),
            heartbeat_s=config.heartbeat_seconds,
            blocking=blocking,
            zero_dates=ZeroDatePolicy(config.zero_dates.value),
        )
        self._reader = MariaDbBinlogReader(self._reader_config)

    def _check(self) -> None:
        if not self._checked:
            check_source(self._settings, self._config.server_id, tuple(self._config.tables))
            self._checked = True

    def current_restart_point(self) -> RestartPoint:
        self._check()
        return current_restart_point(self._settings)

    def tables(self) -> tuple[str, ...]:
        self._check()
        return captured_tables(self._settings, tuple(self._config.tables), tuple(self._config.exclude_tables))

    @property
    def blocking(self) -> bool:
        return self._reader_config.blocking

    def read_until_stopped(self) -> None:
        """Keep waiting for new binlog events at the end instead of ending there (`--until-caught-up`
        with a bootstrap under way: its chunks' views may lie past the end the stream first saw)."""
        if not self._reader_config.blocking:
            self._reader_config = dataclasses.replace(self._reader_config, blocking=True)
            self._reader = MariaDbBinlogReader(self._reader_config)

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        self._check()
        records = self._reader.records(StartAt.at(start))
        return records if self._guard is None else self._guard(records)

    def input_ready(self) -> bool:
        """More binlog is waiting to be read (see ReaderPump: transactions are batched meanwhile)."""
        return self._reader.input_ready()

    def close(self) -> None:
        self._reader.close()
