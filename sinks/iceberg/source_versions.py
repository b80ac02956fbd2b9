"""What a history table remembers of its source's shapes, so schema changes get one verdict.

Table properties, written in the same Iceberg commit as the schema update they describe:

- ``headwater.source_schema``: the last source TableSchema the table follows (JSON). A new version
  is compared with it by :func:`cdc.core.schema_evolution.diff_schemas`, so whether a restart fell
  between the two versions changes nothing (the verdict used to depend on it).
- ``headwater.schema_versions``: ``{version: {source column: Iceberg field id}}`` for every version
  the table followed. Rows of an older version that arrive after a newer one was applied (Kafka
  mode, several partitions) are written through it: a renamed column's values land in the same field
  under its new name, a dropped column's in the field that is kept.
- ``headwater.pending_schema_change`` (``schema_changes: stop``): the change the sink stopped on
  (JSON: from/to version, description, position); ``headwater.accepted_schema_version``: the version
  `cdc schema accept` let through. Both are removed when the change is applied.

Tables written before these properties existed have none: their first new version is followed by
name (columns added, safe promotions), as before, and the properties are written from then on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from cdc.core.positions import Position
from cdc.core.schemas import Column, TableRef, TableSchema
from sinks.contract import PendingSchemaChange
from sinks.iceberg.catalogs import find_history_table
from sinks.iceberg.history_schema import PIPELINE_PROPERTY, SOURCE_PROPERTY

__all__ = [
    "ACCEPTED_PROPERTY",
    "PENDING_PROPERTY",
    "SOURCE_SCHEMA_PROPERTY",
    "VERSIONS_PROPERTY",
    "Pending",
    "accept_change",
    "decode_schema",
    "encode_schema",
    "pending_changes",
    "stored_pending",
    "stored_schema",
    "stored_versions",
]

SOURCE_SCHEMA_PROPERTY = "headwater.source_schema"
VERSIONS_PROPERTY = "headwater.schema_versions"
PENDING_PROPERTY = "headwater.pending_schema_change"
ACCEPTED_PROPERTY = "headwater.accepted_schema_version"


def encode_schema(schema: TableSchema) -> str:
    columns = [c.to_row() for c in schema.columns]
    return json.dumps(
        {"version": schema.version, "columns": columns, "primary_key": list(schema.primary_key)}
    )


def decode_schema(ref: TableRef, text: str) -> TableSchema:
    data: dict[str, Any] = json.loads(text)
    columns = tuple(Column.from_row(row) for row in data["columns"])
    schema = TableSchema.build(ref, columns, tuple(str(k) for k in data["primary_key"]))
    if schema.version != data["version"]:  # the fingerprint must be the one the source computed
        schema = TableSchema(ref, columns, schema.primary_key, str(data["version"]))
    return schema


def stored_schema(table: Table, ref: TableRef) -> TableSchema | None:
    text = table.properties.get(SOURCE_SCHEMA_PROPERTY)
    return decode_schema(ref, text) if text else None


def stored_versions(table: Table) -> dict[str, dict[str, int]]:
    data: Mapping[str, Mapping[str, int]] = json.loads(table.properties.get(VERSIONS_PROPERTY, "{}"))
    return {str(v): {str(c): int(f) for c, f in m.items()} for v, m in data.items()}


@dataclass(frozen=True, slots=True)
class Pending:
    from_version: str
    to_version: str
    change: str
    position: Position

    def encode(self) -> str:
        return json.dumps(
            {
                "from_version": self.from_version,
                "to_version": self.to_version,
                "change": self.change,
                "position": self.position.to_string(),
            }
        )


def stored_pending(table: Table) -> Pending | None:
    text = table.properties.get(PENDING_PROPERTY)
    if not text:
        return None
    data = json.loads(text)
    return Pending(
        str(data["from_version"]),
        str(data["to_version"]),
        str(data["change"]),
        Position.parse(data["position"]),
    )


def _pending_change(table: Table, ref: TableRef) -> PendingSchemaChange | None:
    pending = stored_pending(table)
    if pending is None or table.properties.get(ACCEPTED_PROPERTY) == pending.to_version:
        return None
    return PendingSchemaChange(
        ref, pending.from_version, pending.to_version, pending.change, pending.position
    )


def pending_changes(catalog: Catalog, namespace: str, pipeline: str) -> list[PendingSchemaChange]:
    """Every history table of ``pipeline`` in ``namespace`` stopped on a change not yet accepted."""
    out: list[PendingSchemaChange] = []
    for identifier in catalog.list_tables(namespace):
        table = catalog.load_table(identifier)
        source = table.properties.get(SOURCE_PROPERTY)
        if source is None or table.properties.get(PIPELINE_PROPERTY) != pipeline:
            continue
        db, _, name = source.partition(".")
        change = _pending_change(table, TableRef(db, name))
        if change is not None:
            out.append(change)
    return sorted(out, key=lambda c: c.table)


def accept_change(catalog: Catalog, namespace: str, ref: TableRef) -> PendingSchemaChange | None:
    """Mark the pending change of ``ref`` accepted (a table property); None when none pends."""
    _identifier, table = find_history_table(catalog, namespace, ref)
    if table is None:
        return None
    change = _pending_change(table, ref)
    if change is not None:
        with table.transaction() as txn:
            txn.set_properties({ACCEPTED_PROPERTY: change.to_version})
    return change
