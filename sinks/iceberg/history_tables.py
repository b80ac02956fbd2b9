"""A history table's writer, the table created on first sight (``<namespace>.<table>__history``)."""

from __future__ import annotations

import logging

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import TableAlreadyExistsError

from cdc.core.schemas import TableSchema
from sinks.iceberg.catalogs import find_history_table
from sinks.iceberg.evolution import creation_properties
from sinks.iceberg.history_schema import history_iceberg_schema, history_partition_spec
from sinks.iceberg.snapshot_bound import ensure_commit_properties
from sinks.iceberg.table_writer import TableWriter

__all__ = ["open_history_writer"]

log = logging.getLogger(__name__)


def open_history_writer(
    catalog: Catalog, namespace: str, pipeline: str, schema: TableSchema
) -> TableWriter | None:
    """The writer of ``schema.ref``'s history, creating the table unless ``schema`` is empty.

    An empty schema is a truncate the source could not describe (no TABLE_MAP since a restart): it
    lands on the table with the shape the table knows, and a table the history never held is not
    created for it (None).
    """
    identifier, table = find_history_table(catalog, namespace, schema.ref)
    if table is None:
        if not schema.columns:
            return None
        iceberg_schema = history_iceberg_schema(schema)
        try:
            table = catalog.create_table(
                identifier,
                iceberg_schema,
                partition_spec=history_partition_spec(iceberg_schema),
                properties=creation_properties(pipeline, schema, iceberg_schema),
            )
            log.info("iceberg: created %s for %s", identifier, schema.ref)
        except TableAlreadyExistsError:
            # another sink process (other partitions of the same topic) created it just now
            identifier, table = find_history_table(catalog, namespace, schema.ref)
            if table is None:
                raise
    ensure_commit_properties(table, identifier)  # a table from before manifest merging
    return TableWriter(schema.ref, identifier, table)
