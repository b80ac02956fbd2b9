"""JSON Schema (draft 2020-12) of a table version's keys and envelopes, and the schema-topic records.

The ``<pipeline>.__schema`` topic (one partition, kept forever) is keyed by ``db.table`` and holds two
kinds of records, told apart by ``"type"``:

- ``"table_schema"``: a table version: ``db``, ``table``, ``version``, ``columns`` (name, source_type,
  arrow_type, nullable), ``primary_key``, ``key_schema`` and ``value_schema`` (JSON Schemas of the
  table topic's keys and values), ``position`` of the first change seen with that version;
- ``"schema_change"``: a DDL statement: ``kind``, ``ddl``, ``position``, ``source_ts_ms``,
  ``transaction_id``, ``previous_version``, ``renamed_to``.

Column schemas follow :mod:`cdc.stream.json_values`; ``format`` keywords are annotations only (a
zero date kept as text still validates), the ``pattern`` keywords are assertions.
"""

from __future__ import annotations

from typing import Any

from cdc.core.events import SchemaChange
from cdc.core.positions import Position
from cdc.core.schemas import INTEGER_RANGES, ArrowKind, Column, TableSchema
from cdc.stream.envelope import CONNECTOR
from cdc.stream.json_values import fraction_digits

__all__ = [
    "DRAFT",
    "column_schema",
    "key_schema",
    "schema_change_record",
    "table_schema_record",
    "value_schema",
]

DRAFT = "https://json-schema.org/draft/2020-12/schema"

_INT_RANGES = INTEGER_RANGES
_FRACTION = r"(\.[0-9]{1,6})?"
_DATE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
# the space-separated form is a zero date kept as source text (zero_dates: string)
_CLOCK = "[0-9]{2}:[0-9]{2}:[0-9]{2}" + _FRACTION


def _base_schema(column: Column) -> dict[str, Any]:
    arrow = column.arrow_type
    kind = arrow.kind
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        return {"type": "integer", "minimum": low, "maximum": high}
    if kind is ArrowKind.BOOL:
        return {"type": "boolean"}
    if kind in (ArrowKind.FLOAT32, ArrowKind.FLOAT64):
        # NaN and ±Infinity are no JSON numbers: json_values writes them as these strings
        # ("pattern" applies to strings only, so any number passes)
        return {
            "type": ["number", "string"],
            "pattern": "^(NaN|Infinity|-Infinity)$",
            "description": 'a number, or "NaN", "Infinity", "-Infinity"',
        }
    if kind is ArrowKind.DECIMAL:
        whole = max(arrow.precision - arrow.scale, 1)
        fraction = rf"\.[0-9]{{{arrow.scale}}}" if arrow.scale else ""
        return {"type": "string", "pattern": rf"^-?[0-9]{{1,{whole}}}{fraction}$"}
    if kind is ArrowKind.BINARY:
        return {"type": "string", "contentEncoding": "base64"}
    if kind is ArrowKind.DATE:
        return {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
    if kind is ArrowKind.TIMESTAMP:
        return {
            "type": "string",
            "pattern": rf"^{_DATE}(T{_CLOCK}| {_CLOCK})$",
            "description": f"wall-clock date-time without zone, {fraction_digits(column)} fraction digits",
        }
    if kind is ArrowKind.TIMESTAMP_UTC:
        return {
            "type": "string",
            "format": "date-time",
            "pattern": rf"^{_DATE}(T{_CLOCK}Z| {_CLOCK})$",
        }
    if kind is ArrowKind.DURATION:
        return {"type": "string", "pattern": rf"^-?[0-9]{{2,}}:[0-9]{{2}}:[0-9]{{2}}{_FRACTION}$"}
    return {"type": "string"}


def column_schema(column: Column) -> dict[str, Any]:
    """The JSON Schema of one column's values (``null`` allowed when the column is nullable)."""
    schema = _base_schema(column)
    if column.nullable:
        kinds = schema["type"]
        schema["type"] = [*kinds, "null"] if isinstance(kinds, list) else [kinds, "null"]
    schema.setdefault("description", column.source_type)
    schema["x-source-type"] = column.source_type
    return schema


def _row_schema(columns: tuple[Column, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {c.name: column_schema(c) for c in columns},
        "required": [c.name for c in columns],
        "additionalProperties": False,
    }


def key_schema(pipeline: str, schema: TableSchema) -> dict[str, Any]:
    """Keys: the primary-key columns, or the whole row for a table without one; null for truncates."""
    if schema.primary_key:
        by_name = {c.name: c for c in schema.columns}
        columns = tuple(by_name[k] for k in schema.primary_key)
    else:
        columns = schema.columns
    return {
        "$schema": DRAFT,
        "$id": f"urn:headwater:{pipeline}:{schema.ref}:{schema.version}:key",
        "title": f"{schema.ref} key",
        **_row_schema(columns),
    }


def value_schema(pipeline: str, schema: TableSchema) -> dict[str, Any]:
    """Envelopes (see :mod:`cdc.stream.envelope`) of one table version."""
    nullable_row = {"anyOf": [{"$ref": "#/$defs/row"}, {"type": "null"}]}
    source = {
        "type": "object",
        "properties": {
            "version": {"type": "string"},
            "connector": {"enum": [CONNECTOR, "postgresql"]},  # the source database's kind
            "name": {"const": pipeline},
            "ts_ms": {"type": "integer"},
            "snapshot": {"enum": ["true", "false", "last"]},
            "db": {"const": schema.db},
            "table": {"const": schema.table},
            "server_id": {"type": "integer", "minimum": 0},
            "gtid": {"type": "string", "pattern": r"^[0-9]+-[0-9]+-[0-9]+$"},
            "file": {"type": "string"},
            "pos": {"type": "integer", "minimum": 0},
            "row": {"type": "integer", "minimum": 0},
            "position": {"type": "string", "description": "sortable position: string order = change order"},
            "schema_version": {"const": schema.version},
        },
        "required": [
            "version",
            "connector",
            "name",
            "ts_ms",
            "snapshot",
            "db",
            "table",
            "server_id",
            "gtid",
            "file",
            "pos",
            "row",
            "position",
            "schema_version",
        ],
    }
    transaction = {
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "total_order": {"type": "integer", "minimum": 1},
                    "data_collection_order": {"type": "integer", "minimum": 1},
                },
                "required": ["id", "total_order", "data_collection_order"],
            },
            {"type": "null"},
        ]
    }
    return {
        "$schema": DRAFT,
        "$id": f"urn:headwater:{pipeline}:{schema.ref}:{schema.version}:value",
        "title": f"{schema.ref} change event",
        "type": "object",
        "$defs": {"row": _row_schema(schema.columns)},
        "properties": {
            "before": nullable_row,
            "after": nullable_row,
            "source": source,
            "op": {"enum": ["c", "u", "d", "r", "t"]},
            "ts_ms": {"type": "integer"},
            "transaction": transaction,
        },
        "required": ["before", "after", "source", "op", "ts_ms", "transaction"],
    }


def table_schema_record(pipeline: str, schema: TableSchema, position: Position) -> dict[str, Any]:
    """The schema-topic record announcing one table version."""
    return {
        "type": "table_schema",
        "db": schema.db,
        "table": schema.table,
        "version": schema.version,
        "columns": [
            {
                "name": c.name,
                "source_type": c.source_type,
                "arrow_type": str(c.arrow_type),
                "nullable": c.nullable,
            }
            for c in schema.columns
        ],
        "primary_key": list(schema.primary_key),
        "key_schema": key_schema(pipeline, schema),
        "value_schema": value_schema(pipeline, schema),
        "position": position.to_string(),
    }


def schema_change_record(change: SchemaChange) -> dict[str, Any]:
    """The schema-topic record of a DDL statement."""
    return {
        "type": "schema_change",
        "db": change.table.db,
        "table": change.table.table,
        "kind": change.kind.value,
        "ddl": change.ddl,
        "position": change.position.to_string(),
        "gtid": change.transaction_id,
        "source_ts_ms": change.source_ts_ms,
        "transaction_id": change.transaction_id,
        "previous_version": change.previous_version,
        "renamed_to": None if change.renamed_to is None else str(change.renamed_to),
    }
