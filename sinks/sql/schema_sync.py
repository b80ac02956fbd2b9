"""Follow source schema changes in a target table: what changes, whether it is safe, and the DDL.

A new version of a source table is compared with the latest version the target follows
(:func:`cdc.core.schema_evolution.diff_schemas`, which works from the two versions alone, so the
verdict is the same whether or not a restart fell between them). Policy (``sinks.sql`` docstring):

- safe, applied under ``schema_changes: apply``: an added column (nullable), a dropped column
  (dropped from the target), a renamed column (renamed), a widened type (widened); a narrowed type
  within the same family needs nothing (the target keeps the wider type, every new value fits);
- unsafe, held back under either policy until ``cdc schema accept``: a type change to another family
  (int -> varchar: the source converted its rows with its own rules, the binlog does not carry them)
  and a changed primary key. Accepted, the column is replaced (rows already there hold NULL in it
  until `cdc reconcile` repairs them) or the key is replaced. A key column's type changed to another
  family is held back too; accepted, the target table is rebuilt empty with the new type (the rows
  held cannot be keyed by it): rows come back as they change at the source.

Under ``stop`` every change that needs DDL is held back until accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from cdc.core.errors import SinkSchemaError
from cdc.core.positions import Position
from cdc.core.schema_evolution import diff_schemas
from cdc.core.schemas import Column, TableRef, TableSchema
from sinks.sql.names import quoted, single_percents
from sinks.sql.positions_table import TableShape
from sinks.sql.type_mapping import Dialect, is_widening, mariadb_key_budget, sa_type, target_type

__all__ = [
    "AddColumn",
    "DropColumn",
    "Evolution",
    "RebuildTable",
    "RenameColumn",
    "ReplaceColumn",
    "ReplaceKey",
    "SchemaStep",
    "WidenColumn",
    "build_table",
    "ddl_statements",
    "evolve",
    "latest_schema",
]


@dataclass(frozen=True, slots=True)
class AddColumn:
    column: Column


@dataclass(frozen=True, slots=True)
class DropColumn:
    name: str


@dataclass(frozen=True, slots=True)
class RenameColumn:
    old: str
    new: Column
    is_key: bool


@dataclass(frozen=True, slots=True)
class WidenColumn:
    old: Column
    new: Column
    is_key: bool


@dataclass(frozen=True, slots=True)
class ReplaceColumn:
    """An incompatible type change, accepted: the column is dropped and added with the new type."""

    old: Column
    new: Column


@dataclass(frozen=True, slots=True)
class ReplaceKey:
    old: tuple[str, ...]
    new: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RebuildTable:
    """A key column's type changed to another family, accepted: the table is dropped and created
    anew from the new shape, empty (its rows' keys cannot be converted by the source's rules)."""

    column: str


SchemaStep = RebuildTable | AddColumn | DropColumn | RenameColumn | WidenColumn | ReplaceColumn | ReplaceKey


@dataclass(frozen=True, slots=True)
class Evolution:
    """Where the target goes for a new version, and what it takes."""

    shape: TableShape
    steps: tuple[SchemaStep, ...] = ()
    change: str = ""  # what changes, for logs and the pending record ('' = nothing to review)
    unsafe: str = ""  # why `apply` alone may not take it ('' = safe)
    from_version: str = ""


def _type_text(column: Column) -> str:
    return f"{column.source_type} ({column.arrow_type})"


def latest_schema(ref: TableRef, shape: TableShape) -> TableSchema:
    """The latest source version the target follows (its version string is the last one recorded)."""
    return TableSchema(ref, shape.latest_columns, shape.primary_key, shape.latest)


def evolve(
    target: str,
    shape: TableShape | None,
    schema: TableSchema,
    position: Position,
    accepted: bool,
) -> Evolution:
    """The target's shape once it takes rows of ``schema`` (first seen at ``position``).

    ``schema`` carries the key the target uses (the source's, or ``key_columns``). ``shape`` None
    means the table does not exist yet (the caller creates it from the new shape). ``accepted``: the
    operator accepted this version's change (`cdc schema accept`), so unsafe steps are taken too.
    """
    where = f"{schema.ref} (target table {target})"
    names = tuple(c.name for c in schema.columns)
    if shape is None:
        return Evolution(
            TableShape(
                str(schema.ref), schema.columns, schema.primary_key, (schema.version,), schema.columns,
                position.to_string(), ((schema.version, names),), schema.version,
            )
        )  # fmt: skip
    if shape.source != str(schema.ref):
        raise SinkSchemaError(
            where, None, f"the target table already holds {shape.source}; give the sink a table "
            "format that keeps them apart (e.g. table: '{db}_{table}')"
        )  # fmt: skip
    if shape.follows(schema.version, position):
        return Evolution(shape)  # rows of a version already followed: their mapping is known
    latest = latest_schema(schema.ref, shape)
    if (
        schema.version not in shape.versions
        and shape.latest_position
        and position < Position.parse(shape.latest_position)
    ):
        # an older version arriving late (Kafka: another partition): its rows map onto the target
        # through the change from it to the latest version; the target does not change
        diff = diff_schemas(schema, latest)
        renames = {o.name: n.name for o, n in diff.renamed}
        dropped = {c.name for c in diff.dropped}
        mapping = tuple(
            None if c.name in dropped else renames.get(c.name, c.name)
            for c in schema.columns
        )  # fmt: skip
        return Evolution(
            replace(shape, versions=(*shape.versions, schema.version),
                    mappings=(*shape.mappings, (schema.version, mapping)))
        )  # fmt: skip
    diff = diff_schemas(latest, schema)
    steps: list[SchemaStep] = []
    changes: list[str] = []
    unsafe: list[str] = []
    renamed = {o.name: n for o, n in diff.renamed}
    for old, new in diff.renamed:
        steps.append(RenameColumn(old.name, new, new.name in schema.primary_key))
        changes.append(f"rename {old.name} to {new.name}")
    for gone in diff.dropped:
        if shape.column(gone.name) is not None:
            steps.append(DropColumn(gone.name))
            changes.append(f"drop {gone.name}")
    columns: list[Column] = []
    replaced: set[str] = set()
    for col in schema.columns:
        held_name = next((o for o, n in renamed.items() if n.name == col.name), col.name)
        held = shape.column(held_name)
        if held is None:
            steps.append(AddColumn(col))
            changes.append(f"add {col.name} {col.source_type}")
            columns.append(col)
            continue
        old_t, new_t = target_type(held), target_type(col)
        if old_t == new_t or is_widening(new_t, old_t):
            # the same, or narrower: the target keeps what it has, every new value fits
            columns.append(replace(held, name=col.name, nullable=col.nullable))
            continue
        if is_widening(old_t, new_t):
            steps.append(WidenColumn(held, col, col.name in schema.primary_key))
            changes.append(f"widen {col.name} from {held.source_type} to {col.source_type}")
        else:
            change = f"change {col.name} from {_type_text(held)} to {_type_text(col)}"
            changes.append(change)
            unsafe.append(f"{change}, which the target cannot convert its rows to")
            if col.name in schema.primary_key or held.name in shape.primary_key:
                unsafe[-1] = (
                    f"{change}, a key column: accepting it empties the serving table and rebuilds it "
                    "with the new type (rows come back as they change at the source); or leave the "
                    f"table out with exclude_tables: [{schema.ref}]"
                )
                steps.append(RebuildTable(col.name))
            else:
                steps.append(ReplaceColumn(held, col))
            replaced.add(held.name)
        columns.append(col)
    if diff.key_changed:
        change = f"primary key changed from {list(shape.primary_key)} to {list(schema.primary_key)}"
        changes.append(change)
        unsafe.append(change)
        steps.append(ReplaceKey(tuple(renamed[k].name if k in renamed else k for k in shape.primary_key),
                                schema.primary_key))  # fmt: skip
    # every version followed so far now maps onto the new names; dropped and replaced columns go
    lost = {c.name for c in diff.dropped} | replaced
    mappings = tuple(
        (v, tuple(None if n is None or n in lost else (renamed[n].name if n in renamed else n) for n in m))
        for v, m in shape.mappings
        if v != schema.version  # a shape the source went back to maps anew, below
    )
    versions = shape.versions if schema.version in shape.versions else (*shape.versions, schema.version)
    if any(isinstance(s, RebuildTable) for s in steps):  # a new, empty table: only this version in it
        mappings, versions = (), (schema.version,)
    new_shape = TableShape(
        shape.source, tuple(columns), schema.primary_key, versions, schema.columns,
        position.to_string(), (*mappings, (schema.version, names)), schema.version,
    )  # fmt: skip
    return Evolution(new_shape, tuple(steps), ", ".join(changes), "; ".join(unsafe), latest.version)


def build_table(metadata: sa.MetaData, name: str, shape: TableShape, dialect: Dialect) -> sa.Table:
    """The SQLAlchemy table for ``shape``: key columns NOT NULL, every other column nullable.

    Non-key columns are nullable whatever the source says, so that columns added later and rows of
    older shapes fit, and a NOT NULL dropped at the source needs no DDL. Every name is quoted.
    """
    kwargs: dict[str, Any] = {}
    if dialect is Dialect.MARIADB:
        kwargs = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_nopad_bin", "mysql_engine": "InnoDB"}
    budget = key_budget(shape)
    cols = [
        sa.Column(
            quoted(c.name),
            sa_type(target_type(c), dialect, c.name in shape.primary_key, budget),
            primary_key=c.name in shape.primary_key,
            nullable=c.name not in shape.primary_key,
            autoincrement=False,
        )
        for c in shape.columns
    ]
    return sa.Table(quoted(name), metadata, *cols, **kwargs)


def key_budget(shape: TableShape) -> int:
    """Index bytes for each unbounded text/binary key column of ``shape`` (MariaDB's 3072-byte keys)."""
    return mariadb_key_budget([target_type(c) for c in shape.columns if c.name in shape.primary_key])


def ddl_statements(
    table: sa.Table,
    steps: tuple[SchemaStep, ...],
    dialect: Dialect,
    engine_dialect: sa.Dialect,
    shape: TableShape,
    pk_constraint: str | None = None,
) -> list[str]:
    """DDL for ``steps`` on ``table`` (as it was), leading to ``shape``; every identifier quoted.

    Re-runnable where the dialect's DDL is not transactional (MariaDB): IF [NOT] EXISTS throughout.
    """
    prep = engine_dialect.identifier_preparer
    table_sql = single_percents(prep, prep.format_table(table))  # run through sa.text()
    budget = key_budget(shape)

    def q(name: str) -> str:
        return single_percents(prep, prep.quote_identifier(name))

    my = dialect is Dialect.MARIADB

    def type_sql(column: Column, is_key: bool) -> str:
        return str(sa_type(target_type(column), dialect, is_key, budget).compile(dialect=engine_dialect))

    out: list[str] = []
    alter = f"ALTER TABLE {table_sql}"
    for step in steps:
        if isinstance(step, AddColumn):
            if_not = "" if dialect is Dialect.SQLITE else " IF NOT EXISTS"
            out.append(
                f"{alter} ADD COLUMN{if_not} {q(step.column.name)} {type_sql(step.column, False)} NULL"
            )
        elif isinstance(step, DropColumn):
            if_exists = "" if dialect is Dialect.SQLITE else " IF EXISTS"
            out.append(f"{alter} DROP COLUMN{if_exists} {q(step.name)}")
        elif isinstance(step, RenameColumn):
            if my:
                null = "NOT NULL" if step.is_key else "NULL"
                out.append(
                    f"{alter} CHANGE COLUMN IF EXISTS {q(step.old)} {q(step.new.name)} "
                    f"{type_sql(step.new, step.is_key)} {null}"
                )
            else:
                out.append(f"{alter} RENAME COLUMN {q(step.old)} TO {q(step.new.name)}")
        elif isinstance(step, ReplaceColumn):
            if_exists = "" if dialect is Dialect.SQLITE else " IF EXISTS"
            if_not = "" if dialect is Dialect.SQLITE else " IF NOT EXISTS"
            out.append(f"{alter} DROP COLUMN{if_exists} {q(step.old.name)}")
            out.append(f"{alter} ADD COLUMN{if_not} {q(step.new.name)} {type_sql(step.new, False)} NULL")
        elif isinstance(step, ReplaceKey):
            out.extend(_replace_key(alter, step, dialect, shape, q, type_sql, pk_constraint))
        elif isinstance(step, WidenColumn):
            old_sql, new_sql = type_sql(step.old, step.is_key), type_sql(step.new, step.is_key)
            if old_sql == new_sql:
                continue  # the target type already holds the wider values (e.g. float -> double)
            name = q(step.new.name)
            if dialect is Dialect.POSTGRESQL:
                out.append(f"{alter} ALTER COLUMN {name} TYPE {new_sql}")
            elif my:
                out.append(f"{alter} MODIFY COLUMN {name} {new_sql} {'NOT NULL' if step.is_key else 'NULL'}")
            else:
                raise SinkSchemaError(
                    f"{shape.source} (target table {table.name})", step.new.name,
                    f"widening {old_sql} to {new_sql} needs a table rebuild, which the SQLite sink "
                    "does not do",
                )  # fmt: skip
    return out


def _replace_key(
    alter: str,
    step: ReplaceKey,
    dialect: Dialect,
    shape: TableShape,
    q: Any,
    type_sql: Any,
    pk_constraint: str | None,
) -> list[str]:
    new_key = ", ".join(q(k) for k in step.new)
    if dialect is Dialect.SQLITE:
        raise SinkSchemaError(
            shape.source, None, f"primary key changed from {list(step.old)} to {list(step.new)}: SQLite "
            "cannot change a table's primary key in place; drop the target table and fill it again"
        )  # fmt: skip
    out: list[str] = []
    if dialect is Dialect.POSTGRESQL:
        out.append(f"{alter} DROP CONSTRAINT IF EXISTS {q(pk_constraint or '')}")
        out += [f"{alter} ALTER COLUMN {q(k)} DROP NOT NULL" for k in step.old if k not in step.new]
        if step.new:
            out.append(f"{alter} ADD PRIMARY KEY ({new_key})")
        return out
    parts = ["DROP PRIMARY KEY"]
    for name in {*step.old, *step.new}:
        column = shape.column(name)
        if column is not None:  # MariaDB: key columns take bounded types (its index limits)
            is_key = name in step.new
            parts.append(
                f"MODIFY COLUMN {q(name)} {type_sql(column, is_key)} {'NOT NULL' if is_key else 'NULL'}"
            )
    if step.new:
        parts.append(f"ADD PRIMARY KEY ({new_key})")
    return [f"{alter} {', '.join(parts)}"]
