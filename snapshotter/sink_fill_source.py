"""The source side of `cdc bootstrap --sink`: the one-view reader for the config's source, size estimates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cdc.config.models import PipelineConfig, PostgresSourceConfig
from cdc.core.events import RowImage
from cdc.core.schemas import TableRef, TableSchema
from snapshotter.reader import ChunkRead

__all__ = ["FillReader", "estimated_rows", "open_fill_reader"]


class FillReader(Protocol):
    """Every chunk of a fill read in one consistent view, whose exact stream boundary is each
    ChunkRead's ``at`` (MariaDB: SnapshotReader with one_view; PostgreSQL: snapshotter.pg_view)."""

    def table_schema(self, ref: TableRef) -> TableSchema: ...
    def read_chunk(self, ref: TableRef, after: RowImage | None, limit: int) -> ChunkRead: ...
    def close(self) -> None: ...


def open_fill_reader(config: PipelineConfig) -> FillReader:
    source = config.any_source
    if isinstance(source, PostgresSourceConfig):
        from cdc.sources.postgresql.source_config import pg_settings
        from snapshotter.pg_view import PgViewReader

        return PgViewReader(pg_settings(source))
    from cdc.sources.mariadb import ZeroDatePolicy
    from cdc.sources.mariadb.source_config import connection_settings
    from snapshotter.reader import SnapshotReader

    return SnapshotReader(connection_settings(source), ZeroDatePolicy(source.zero_dates.value), one_view=True)


def estimated_rows(config: PipelineConfig, tables: Sequence[TableRef]) -> int:
    """The server's estimate of the tables' rows (information_schema, pg_class), for the ETA only."""
    source = config.any_source
    if isinstance(source, PostgresSourceConfig):
        from cdc.catalog.collect import _pg_estimates

        return sum(_pg_estimates(source, list(tables), []).values())
    from cdc.sources.mariadb.source_config import connection_settings, table_row_estimates

    return sum(table_row_estimates(connection_settings(source), tables).values())
