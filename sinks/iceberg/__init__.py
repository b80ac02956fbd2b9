"""Iceberg history: every change of every source table, appended exactly once, partitioned by day.

- :func:`create_iceberg_sink` builds the sink the registry opens for ``type: iceberg``.
- :func:`history_rows_as_of` / :func:`state_as_of` rebuild a table's rows as of a position or time.
- :func:`maintain` expires old snapshots and rewrites small files of closed partitions.

Table naming, catalogs and object storage: :mod:`sinks.iceberg.catalogs`; column types:
:mod:`sinks.iceberg.history_schema`; the exactly-once protocol: :mod:`sinks.iceberg.history_sink`.
"""

from __future__ import annotations

from pathlib import Path

from cdc.config.models import IcebergSinkConfig
from sinks.iceberg.as_of import History, history_rows_as_of, read_history, state_as_of
from sinks.iceberg.history_sink import IcebergHistorySink
from sinks.iceberg.maintenance import MaintenanceReport, TableMaintenance, maintain
from sinks.iceberg.pyiceberg_metadata_copy import install as _no_deep_metadata_copy
from sinks.iceberg.pyiceberg_speed import install as _cache_transaction_metadata

_cache_transaction_metadata()  # a commit's cost grew with the history's snapshots (pyiceberg_speed.py)
_no_deep_metadata_copy()  # nor copies every snapshot it holds (pyiceberg_metadata_copy.py)

__all__ = [
    "History",
    "IcebergHistorySink",
    "MaintenanceReport",
    "TableMaintenance",
    "create_iceberg_sink",
    "history_rows_as_of",
    "maintain",
    "read_history",
    "state_as_of",
]


def create_iceberg_sink(
    config: IcebergSinkConfig, pipeline: str, base_dir: Path | None = None
) -> IcebergHistorySink:
    """The history sink for one ``sinks[i]`` entry of type iceberg (not yet opened)."""
    return IcebergHistorySink(config, pipeline, base_dir)
