"""Sinks are chosen by ``type`` in the config; their modules (and drivers) are imported only when used."""

from __future__ import annotations

import importlib

from cdc.config.models import SinkConfig
from cdc.core.errors import ConfigError
from sinks.contract import Sink

__all__ = ["open_sink"]

# type -> (module, factory function, the pip extra or package that brings its driver)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "sql": ("sinks.sql", "create_sql_sink", "sqlalchemy (and psycopg / pymysql for the URL's driver)"),
    "iceberg": ("sinks.iceberg", "create_iceberg_sink", "pyiceberg[sql-sqlite] and pyarrow"),
}


def open_sink(config: SinkConfig, pipeline: str) -> Sink:
    """Build the sink for one ``sinks[i]`` entry (not yet opened)."""
    module_name, factory_name, extra = _REGISTRY[config.type]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"sink type {config.type!r} needs {extra}: missing module {exc.name!r}; "
            f"install it with pip install 'headwater' (or the package named)"
        ) from exc
    factory = getattr(module, factory_name)
    sink: Sink = factory(config, pipeline)
    if list(config.tables) != ["*.*"] or config.exclude_tables:
        from cdc.core.table_filter import TableFilter
        from sinks.table_selection import TableSelectedSink

        return TableSelectedSink(sink, TableFilter(tuple(config.tables), tuple(config.exclude_tables)))
    return sink
