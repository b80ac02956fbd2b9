"""Embedded pipelines that ran before `cdc run` kept a versions file: the latest version each sink follows.

The SQL sink keeps each table's shape (latest source columns, key and version) in its own bookkeeping
table; the Iceberg history keeps the source schema as a table property. Only the latest version is
there, so the catalog shows one version for such tables until the next change is read.
"""

from __future__ import annotations

import logging

from cdc.config.models import IcebergSinkConfig, PipelineConfig, SqlSinkConfig
from cdc.core.schemas import TableRef, TableSchema
from cdc.core.table_filter import TableFilter

__all__ = ["latest_from_sinks"]

log = logging.getLogger(__name__)


def latest_from_sinks(config: PipelineConfig) -> dict[str, tuple[TableSchema, str]]:
    """``db.table`` -> (the latest version a sink follows, a position of it ('' if unknown))."""
    source = config.any_source
    captured = TableFilter(tuple(source.tables), tuple(source.exclude_tables))
    found: dict[str, tuple[TableSchema, str]] = {}
    for sink in config.sinks:
        try:
            more = _sql(sink) if isinstance(sink, SqlSinkConfig) else _iceberg(sink, config.name)
        except Exception as exc:  # noqa: BLE001 - a sink unreadable here is shown by its copy's row
            log.debug("catalog: versions of sink %s not read: %s", sink.type, exc)
            continue
        for name, item in more.items():
            db, _, table = name.partition(".")
            if captured.accepts(db, table):
                found.setdefault(name, item)
    return found


def _sql(sink: SqlSinkConfig) -> dict[str, tuple[TableSchema, str]]:
    import sqlalchemy as sa

    from sinks.sql.positions_table import TABLES_TABLE, Bookkeeping

    engine = sa.create_engine(str(sink.url))
    try:
        with engine.connect() as conn:
            if TABLES_TABLE not in sa.inspect(conn).get_table_names(schema=sink.schema_name):
                return {}
            shapes = Bookkeeping(sink.schema_name).read_shapes(conn)
    finally:
        engine.dispose()
    out: dict[str, tuple[TableSchema, str]] = {}
    for shape in shapes.values():
        db, _, table = shape.source.partition(".")
        ref = TableRef(db, table)
        out[shape.source] = (
            TableSchema(ref, shape.latest_columns, shape.primary_key, shape.latest),
            shape.latest_position,
        )
    return out


def _iceberg(sink: IcebergSinkConfig, pipeline: str) -> dict[str, tuple[TableSchema, str]]:
    from sinks.iceberg.catalogs import open_catalog
    from sinks.iceberg.history_schema import PIPELINE_PROPERTY, SOURCE_PROPERTY
    from sinks.iceberg.source_versions import stored_schema

    catalog = open_catalog(sink.catalog)
    out: dict[str, tuple[TableSchema, str]] = {}
    for identifier in catalog.list_tables(sink.namespace):
        table = catalog.load_table(identifier)
        source = table.properties.get(SOURCE_PROPERTY)
        if not source or table.properties.get(PIPELINE_PROPERTY, pipeline) != pipeline:
            continue
        db, _, name = source.partition(".")
        schema = stored_schema(table, TableRef(db, name))
        if schema is not None:
            out[source] = (schema, "")
    return out
