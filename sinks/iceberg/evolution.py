"""Following a source table's new shape in its history table (``schema_changes: apply|stop``).

Under ``apply`` (the default) the history loses nothing and the pipeline keeps running:

- an added column is added (optional);
- a dropped column stays in the history table: rows from then on hold null in it (all source columns
  are optional in the history); should a later version give its name to another column, the kept
  one moves aside to ``<name>__dropped`` with its values;
- a renamed column is renamed in Iceberg, which tracks columns by field id, so older rows show under
  the new name;
- a type change never stops the sink (see :mod:`sinks.iceberg.type_changes`): a widening Iceberg
  can promote is applied; a type whose values all fit the column as it is (BIGINT -> INT, a smaller
  DECIMAL) keeps the column; any other (INT -> VARCHAR) moves the old column aside to
  ``<name>__<its Iceberg type>`` with its values and adds ``<name>`` with the new type;
- a new primary key is recorded (``headwater.primary_key``) for state-as-of queries.

The change is judged by :func:`cdc.core.schema_evolution.diff_schemas` between the last source
schema the table followed (stored in the table, see :mod:`sinks.iceberg.source_versions`) and the
new one, so the verdict is the same whether or not a restart fell between them. Under ``stop`` any
change stops the sink before it is applied, with the change recorded in the table for
`cdc schema accept`.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import NestedField

from cdc.config.models import SchemaChangePolicy
from cdc.core.errors import SinkSchemaError
from cdc.core.positions import Position
from cdc.core.schema_evolution import diff_schemas
from cdc.core.schemas import Column, TableSchema
from sinks.iceberg.history_schema import (
    COLUMN_KINDS_PROPERTY,
    META_COLUMNS,
    PARQUET_LAYOUT_PROPERTIES,
    HistoryColumn,
    check_evolution,
    evolution_schema,
    history_columns,
    promotable,
    table_properties,
)
from sinks.iceberg.source_versions import (
    ACCEPTED_PROPERTY,
    PENDING_PROPERTY,
    SOURCE_SCHEMA_PROPERTY,
    VERSIONS_PROPERTY,
    Pending,
    encode_schema,
    stored_pending,
    stored_versions,
)
from sinks.iceberg.type_changes import Retype, aside_name, holds, judge_retype

__all__ = ["NO_RETRY", "creation_properties", "follow_version", "shape_of"]

# Data commits are retried by the sink, not by pyiceberg: a claimed writer's commit must fail when
# another writer committed since it read the table (see sinks.iceberg.history_sink, fencing)
NO_RETRY = ("commit.retry.num-retries", "0")

log = logging.getLogger(__name__)


def shape_of(table: Table, field_ids: dict[str, int], schema: TableSchema) -> tuple[HistoryColumn, ...]:
    """The columns rows of ``schema`` are written with: each under its field's current name."""
    current = table.schema()
    out = []
    for column in history_columns(schema):
        field_id = field_ids.get(column.name)
        name = current.find_column_name(field_id) if field_id is not None else None
        out.append(column if name is None or name == column.name else dataclasses.replace(column, name=name))
    return tuple(out)


def _field_ids(schema: Schema, source: TableSchema) -> dict[str, int]:
    return {c.name: schema.find_field(c.name).field_id for c in source.columns}


def follow_version(
    table: Table,
    identifier: str,
    last: TableSchema | None,
    new: TableSchema,
    pipeline: str,
    policy: SchemaChangePolicy,
    position: Position,
) -> list[tuple[str, str]]:
    """Make ``table`` follow ``new`` (see the module docstring); the renames applied, in order."""
    if last is None:  # a table from before versions were stored: follow by name, as it always did
        if check_evolution(identifier, table.schema(), new):
            with table.update_schema() as update:
                update.union_by_name(evolution_schema(new))
        _record(table, new, pipeline, {})
        return []
    diff = diff_schemas(last, new)
    accepted = table.properties.get(ACCEPTED_PROPERTY) == new.version
    if not diff.empty and policy is SchemaChangePolicy.STOP and not accepted:
        pending = Pending(last.version, new.version, diff.describe(), position)
        if stored_pending(table) != pending:
            with table.transaction() as txn:
                txn.set_properties({PENDING_PROPERTY: pending.encode()})
        raise SinkSchemaError(
            identifier,
            None,
            f"the source table {new.ref} changed ({diff.describe()}) at {position.to_string()} and this "
            "sink has schema_changes: stop; review the change, then let it through with "
            f"`cdc schema accept -c CONFIG {new.ref}` (or set schema_changes: apply)",
        )
    current = table.schema()
    names = {f.name: f for f in current.fields}
    renames = {old.name: after.name for old, after in diff.renamed}
    for column in history_columns(new):
        if column.name in META_COLUMNS:
            raise SinkSchemaError(identifier, column.name, "the name is reserved for history bookkeeping")
    kinds = json.loads(table.properties.get(COLUMN_KINDS_PROPERTY, "{}"))
    taken = set(names) | set(new.column_names)  # the new version's own names are not free either
    # a type the column cannot hold moves the column aside (``name__int``) with the old rows' values
    aside = _retyped_aside(table, last, diff.retyped, names, taken)
    # a name the new version takes may be held by a column kept from an earlier drop: that column
    # moves aside (``name__dropped``) with its values, so the new one gets the name and loses nothing
    aside += _moved_aside(table, last, new, names, renames, taken)
    with table.transaction() as txn:
        if aside:
            with txn.update_schema() as update:
                for old_name, new_name in aside:
                    update.rename_column(old_name, new_name)
                    kinds[new_name] = kinds.pop(old_name, None)
            names = {f.name: f for f in txn.table_metadata.schema().fields}
        with txn.update_schema() as update:
            for old_name, new_name in renames.items():
                if new_name in names:
                    raise SinkSchemaError(
                        identifier, new_name, f"cannot rename {old_name} to it: the history already has it"
                    )
                update.rename_column(old_name, new_name)
                kinds[new_name] = kinds.pop(old_name, None)
            for column in history_columns(new):
                wanted = column.iceberg_type
                existing = names.get(column.name)
                if column.name in renames.values():
                    existing = names.get(next(o for o, n in renames.items() if n == column.name))
                if existing is None:  # added (or re-added under a name no field holds)
                    update.add_column(column.name, wanted, doc=f"source type: {column.source_type}")
                elif existing.field_type != wanted:
                    # a column that holds the values as it is (kept wider, now or by an earlier
                    # version) stays; the new version's values are cast into it when written
                    if holds(existing.field_type, _source_column(new, column.name)):
                        continue
                    if not promotable(existing.field_type, wanted):  # judged and moved aside above
                        raise SinkSchemaError(
                            identifier,
                            column.name,
                            f"cannot change {existing.field_type} to {wanted} (source type "
                            f"{column.source_type}); this is a bug, please report it with the "
                            "table's schema history",
                        )
                    update.update_column(existing.name, field_type=wanted)
        staged = txn.table_metadata.schema()
        _stage_record(txn, table, new, pipeline, staged, kinds)
    log.info("iceberg: %s follows %s version %s (%s)", identifier, new.ref, new.version, diff.describe())
    return [*aside, *renames.items()]


def _source_column(schema: TableSchema, name: str) -> Column:
    return next(c for c in schema.columns if c.name == name)


def _retyped_aside(
    table: Table,
    last: TableSchema,
    retyped: tuple[tuple[Column, Column], ...],
    names: dict[str, NestedField],
    taken: set[str],
) -> list[tuple[str, str]]:
    """Columns whose new source type they cannot hold (see :mod:`sinks.iceberg.type_changes`)."""
    live = stored_versions(table).get(last.version, {})
    by_id = {f.field_id: f for f in names.values()}
    aside: list[tuple[str, str]] = []
    for before, after in retyped:
        field_id = live.get(before.name)
        field = by_id.get(field_id) if field_id is not None else names.get(before.name)
        if field is None or judge_retype(before, after, field.field_type) is not Retype.MOVE_ASIDE:
            continue
        free = aside_name(before.name, field.field_type, taken)
        taken.add(free)
        aside.append((field.name, free))
    return aside


def _moved_aside(
    table: Table,
    last: TableSchema,
    new: TableSchema,
    names: dict[str, NestedField],
    renames: dict[str, str],
    taken: set[str],
) -> list[tuple[str, str]]:
    """Kept columns of dropped source columns whose name ``new`` takes for another column."""
    live = set(stored_versions(table).get(last.version, {}).values())
    if not live:
        return []
    last_names = set(last.column_names)
    wanted = {c.name: c.iceberg_type for c in history_columns(new)}
    aside: list[tuple[str, str]] = []
    for name, iceberg_type in wanted.items():
        held = names.get(name)
        if held is None or held.field_id in live:
            continue
        if name in renames.values() or (
            name not in last_names
            and held.field_type != iceberg_type
            and not promotable(held.field_type, iceberg_type)
        ):
            free = f"{name}__dropped"
            n = 1
            while free in taken:
                n += 1
                free = f"{name}__dropped{n}"
            taken.add(free)
            aside.append((name, free))
    return aside


def _versions_with(table: Table, new: TableSchema, field_ids: dict[str, int]) -> str:
    versions = stored_versions(table)
    versions[new.version] = field_ids
    return json.dumps(versions, sort_keys=True)


def _stage_record(
    txn: object,
    table: Table,
    new: TableSchema,
    pipeline: str,
    staged: Schema,
    kinds: dict[str, str],
) -> None:
    # a column kept wider than the new source type still holds what its recorded kind says (a
    # BIGINT UNSIGNED's decimal(20, 0) reads back as ints), so its kind stays
    kept = [c.name for c in history_columns(new) if staged.find_field(c.name).field_type != c.iceberg_type]
    properties = table_properties(pipeline, new, {k: v for k, v in kinds.items() if v is not None}, keep=kept)
    properties[SOURCE_SCHEMA_PROPERTY] = encode_schema(new)
    properties[VERSIONS_PROPERTY] = _versions_with(table, new, _field_ids(staged, new))
    properties[NO_RETRY[0]] = NO_RETRY[1]
    txn.set_properties(properties)  # type: ignore[attr-defined]
    stale = [p for p in (PENDING_PROPERTY, ACCEPTED_PROPERTY) if p in table.properties]
    if stale:
        txn.remove_properties(*stale)  # type: ignore[attr-defined]


def _record(table: Table, new: TableSchema, pipeline: str, kinds: dict[str, str]) -> None:
    table.refresh()
    kinds = {**json.loads(table.properties.get(COLUMN_KINDS_PROPERTY, "{}")), **kinds}
    with table.transaction() as txn:
        _stage_record(txn, table, new, pipeline, table.schema(), kinds)


def creation_properties(pipeline: str, schema: TableSchema, iceberg_schema: Schema) -> dict[str, str]:
    """A new history table's properties: the source version it starts at, with its field ids."""
    properties = {**PARQUET_LAYOUT_PROPERTIES, **table_properties(pipeline, schema)}
    properties[SOURCE_SCHEMA_PROPERTY] = encode_schema(schema)
    properties[VERSIONS_PROPERTY] = json.dumps({schema.version: _field_ids(iceberg_schema, schema)})
    properties[NO_RETRY[0]] = NO_RETRY[1]
    return properties
