"""The source side of `cdc bootstrap --sink`: connection settings from the config, size estimates."""

from __future__ import annotations

from collections.abc import Sequence

from cdc.config.models import MariaDbSourceConfig
from cdc.core.schemas import TableRef
from cdc.sources.mariadb import ConnectionSettings
from cdc.sources.mariadb.source_config import connection_settings, table_row_estimates

__all__ = ["estimated_rows", "source_settings"]


def source_settings(source: MariaDbSourceConfig) -> ConnectionSettings:
    return connection_settings(source)


def estimated_rows(settings: ConnectionSettings, tables: Sequence[TableRef]) -> int:
    """The server's estimate of the tables' rows (information_schema), for the ETA only."""
    return sum(table_row_estimates(settings, tables).values())
