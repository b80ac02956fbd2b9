"""Follow source schema changes in a target table, or stop before losing anything.

Policy (see ``sinks.sql``): a new column is added (nullable); a type change that is a widening (every
old value fits the new type exactly) is applied when the dialect can; a dropped column, a narrowed or
otherwise changed type, a changed primary key or a table without a primary key stop with a
:class:`SinkSchemaError` that names the table and the column.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from cdc.core.errors import SinkSchemaError
from cdc.core.schemas import Column, TableSchema
from sinks.sql.positions_table import TableShape
from sinks.sql.type_mapping import Dialect, is_widening, mariadb_key_budget, sa_type, target_type

__all__ = ["AddColumn", "SchemaStep", "WidenColumn", "build_table", "ddl_statements", "evolve"]


@dataclass(frozen=True, slots=True)
class AddColumn:
    column: Column


@dataclass(frozen=True, slots=True)
class WidenColumn:
    old: Column
    new: Column
    is_key: bool


SchemaStep = AddColumn | WidenColumn


def _type_text(column: Column) -> str:
    return f"{column.source_type} ({column.arrow_type})"


def evolve(
    target: str, shape: TableShape | None, schema: TableSchema, dialect: Dialect
) -> tuple[TableShape, list[SchemaStep]]:
    """The target's shape once it takes rows of ``schema``, and the steps that get it there.

    ``shape`` None means the table does not exist yet (the caller creates it from the new shape).
    """
    where = f"{schema.ref} (target table {target})"
    if not schema.primary_key:
        raise SinkSchemaError(
            where, None, "the source table has no primary key; a serving table needs one to upsert and "
            "delete by key (add a primary key at the source, or exclude the table from this sink)"
        )  # fmt: skip
    if shape is None:
        return TableShape(str(schema.ref), schema.columns, schema.primary_key, (schema.version,)), []
    if shape.source != str(schema.ref):
        raise SinkSchemaError(
            where, None, f"the target table already holds {shape.source}; give the sink a table "
            "format that keeps them apart (e.g. table: '{db}_{table}')"
        )  # fmt: skip
    if schema.version in shape.versions:
        # an older shape replayed (e.g. after a crash between the DDL and the data): its rows fit
        for col in schema.columns:
            held = shape.column(col.name)
            if held is None or not is_widening(target_type(col), target_type(held)):
                raise SinkSchemaError(where, col.name, "column no longer fits the target table")
        return shape, []
    if schema.primary_key != shape.primary_key:
        raise SinkSchemaError(
            where, ",".join(schema.primary_key),
            f"primary key changed from {list(shape.primary_key)} to {list(schema.primary_key)}",
        )  # fmt: skip
    incoming = {c.name: c for c in schema.columns}
    steps: list[SchemaStep] = []
    columns: list[Column] = []
    for held in shape.columns:
        new = incoming.get(held.name)
        if new is None:
            raise SinkSchemaError(
                where,
                held.name,
                "column was dropped at the source (the target keeps it; "
                "drop it from the target and record the change before resuming)",
            )
        old_t, new_t = target_type(held), target_type(new)
        if old_t != new_t:
            if not is_widening(old_t, new_t):
                raise SinkSchemaError(
                    where, held.name, f"type changed from {_type_text(held)} to {_type_text(new)}, "
                    "which is not a widening"
                )  # fmt: skip
            steps.append(WidenColumn(held, new, held.name in shape.primary_key))
        columns.append(new)
    known = {c.name for c in shape.columns}
    for col in schema.columns:
        if col.name not in known:
            steps.append(AddColumn(col))
            columns.append(col)
    new_shape = replace(shape, columns=tuple(columns), versions=(*shape.versions, schema.version))
    return new_shape, steps


def build_table(metadata: sa.MetaData, name: str, shape: TableShape, dialect: Dialect) -> sa.Table:
    """The SQLAlchemy table for ``shape``: key columns NOT NULL, every other column nullable.

    Non-key columns are nullable whatever the source says, so that columns added later and rows of
    older shapes fit, and a NOT NULL dropped at the source needs no DDL.
    """
    kwargs: dict[str, Any] = {}
    if dialect is Dialect.MARIADB:
        kwargs = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_nopad_bin", "mysql_engine": "InnoDB"}
    budget = key_budget(shape)
    cols = [
        sa.Column(
            c.name,
            sa_type(target_type(c), dialect, c.name in shape.primary_key, budget),
            primary_key=c.name in shape.primary_key,
            nullable=c.name not in shape.primary_key,
            autoincrement=False,
        )
        for c in shape.columns
    ]
    return sa.Table(name, metadata, *cols, **kwargs)


def key_budget(shape: TableShape) -> int:
    """Index bytes for each unbounded text/binary key column of ``shape`` (MariaDB's 3072-byte keys)."""
    return mariadb_key_budget([target_type(c) for c in shape.columns if c.name in shape.primary_key])


def ddl_statements(
    table: sa.Table, steps: list[SchemaStep], dialect: Dialect, engine_dialect: sa.Dialect, shape: TableShape
) -> list[str]:
    """ALTER TABLE statements for ``steps`` (identifiers quoted by the dialect's preparer)."""
    prep = engine_dialect.identifier_preparer
    table_sql = prep.format_table(table)
    out: list[str] = []
    for step in steps:
        if isinstance(step, AddColumn):
            col = step.column
            type_sql = sa_type(target_type(col), dialect, False).compile(dialect=engine_dialect)
            if_not = "" if dialect is Dialect.SQLITE else " IF NOT EXISTS"  # MariaDB DDL is not transactional
            out.append(f"ALTER TABLE {table_sql} ADD COLUMN{if_not} {prep.quote(col.name)} {type_sql} NULL")
            continue
        budget = key_budget(shape)
        old_sql = sa_type(target_type(step.old), dialect, step.is_key, budget).compile(dialect=engine_dialect)
        new_sql = sa_type(target_type(step.new), dialect, step.is_key, budget).compile(dialect=engine_dialect)
        if old_sql == new_sql:
            continue  # the target type already holds the wider values (e.g. float -> double)
        name = prep.quote(step.new.name)
        if dialect is Dialect.POSTGRESQL:
            out.append(f"ALTER TABLE {table_sql} ALTER COLUMN {name} TYPE {new_sql}")
        elif dialect is Dialect.MARIADB:
            null = "NOT NULL" if step.is_key else "NULL"
            out.append(f"ALTER TABLE {table_sql} MODIFY COLUMN {name} {new_sql} {null}")
        else:
            raise SinkSchemaError(
                f"{shape.source} (target table {table.name})", step.new.name,
                f"widening {old_sql} to {new_sql} needs a table rebuild, which the SQLite sink does not do",
            )  # fmt: skip
    return out
