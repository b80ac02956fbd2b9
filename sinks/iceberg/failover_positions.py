"""Where each history table of a pipeline has committed, for a failover (issue 8, item 16).

A history sink commits each table's rows, then its progress table: after a crash between the two,
a table holds rows past the sink's applied() position. On the same server they are skipped by
position when delivered again; after a failover they come back in the next era, and the daemon
skips them by GTID (cdc/daemon/gtid_journal.py), for which it needs these per-table positions.
"""

from __future__ import annotations

from pyiceberg.catalog import Catalog

from cdc.core.positions import Position
from cdc.core.schemas import TableRef
from sinks.iceberg.history_schema import PIPELINE_PROPERTY, SOURCE_PROPERTY
from sinks.iceberg.snapshot_state import stored_state

__all__ = ["table_positions"]


def table_positions(catalog: Catalog, namespace: str, pipeline: str) -> dict[TableRef, Position]:
    """Each of ``pipeline``'s history tables in ``namespace`` and the position it has committed."""
    out: dict[TableRef, Position] = {}
    for identifier in catalog.list_tables(namespace):
        table = catalog.load_table(identifier)
        source = table.properties.get(SOURCE_PROPERTY)
        if source is None or table.properties.get(PIPELINE_PROPERTY) != pipeline:
            continue
        state = stored_state(table)
        if state is not None:
            db, _, name = source.partition(".")
            out[TableRef(db, name)] = state.position
    return out
