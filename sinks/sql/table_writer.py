"""Writing one target table's share of a batch: an optional wipe, deletes by key, upserts by key.

On PostgreSQL, from ``copy_threshold`` rows a table's deletes and upserts go through COPY into a
temporary table and one set-based statement (``postgres_copy``); otherwise executemany. There,
with ``direct``, the keys whose last change is an insert are COPYed straight into the table:
:class:`~sinks.sql.pg_stages.KeysExist` when the table holds one of them (the caller rolls back and
writes the batch again without ``direct``). On SQLite
and MariaDB that executemany hands the driver tuples (``driver_rows``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from cdc.core.errors import SinkError
from cdc.core.events import ChangeEvent, Op, RowImage
from cdc.core.schemas import TableRef, TableSchema
from sinks.sql.codec import Codec
from sinks.sql.driver_rows import executemany
from sinks.sql.names import single_percents
from sinks.sql.positions_table import TableShape
from sinks.sql.type_mapping import Dialect, encoder, pg_copy_type

if TYPE_CHECKING:  # PostgreSQL's, imported by a PostgreSQL sink only (psycopg: sql_sink.py)
    from sinks.sql.pg_stages import Stages

__all__ = ["TablePlan", "delete_by_key", "plan_tables", "upsert_statement", "write_plan"]


@dataclass(slots=True)
class TablePlan:
    """What a batch does to one target table once collapsed: optional wipe, then one action per key."""

    target: str
    truncate: bool = False
    # key -> (event whose image is written, or None for a delete; the event that decided it)
    actions: dict[RowImage, tuple[RowImage | None, ChangeEvent]] = field(default_factory=dict)


def plan_tables(
    events: Sequence[ChangeEvent],
    target_name: Callable[[TableRef], str],
    codec_of: Callable[[str, TableSchema], Codec],
) -> dict[str, TablePlan]:
    """Collapse the batch per table and key, in position order: the last change per key wins."""
    plans: dict[str, TablePlan] = {}
    # by schema object identity: the objects live as long as ``events``, and a batch has few of them
    codecs: dict[int, tuple[TablePlan, Codec | None]] = {}
    for event in events:
        schema = event.schema
        found = codecs.get(id(schema))
        if found is None:
            target = target_name(schema.ref)
            plan = plans.get(target)
            if plan is None:
                plan = plans[target] = TablePlan(target)
            # a truncate needs no codec (its schema may be empty: the first event after a restart)
            codec = None if event.op is Op.TRUNCATE else codec_of(target, schema)
            found = codecs[id(schema)] = (plan, codec)
        plan, maybe = found
        op = event.op
        if op is Op.TRUNCATE:
            plan.truncate = True
            plan.actions.clear()  # everything before the truncate is wiped with the table
            continue
        codec = maybe if maybe is not None else codec_of(plan.target, schema)
        if op is Op.DELETE:
            image = event.before
            key = event.key if image is None else codec.key_of(image)
            if key is None:
                raise SinkError(f"{event.table}: delete at {event.position} carries neither key nor image")
            plan.actions[key] = (None, event)
            continue
        after = event.after
        if after is None:
            raise SinkError(f"{event.table}: {op.value} at {event.position} carries no after image")
        key = codec.key_of(after)
        if op is Op.UPDATE and event.before is not None:
            old_key = codec.key_of(event.before)
            if old_key != key:  # the key itself changed: the old row goes away
                plan.actions[old_key] = (None, event)
        plan.actions[key] = (after, event)
    return plans


def write_plan(
    conn: sa.Connection,
    table: sa.Table,
    shape: TableShape,
    plan: TablePlan,
    skip: set[tuple[str, RowImage]],
    codec_of: Callable[[str, TableSchema], Codec],
    dialect: Dialect,
    copy_threshold: int | None,
    stages: Stages | None = None,
    direct: bool = False,
) -> None:
    """``skip``: (target, key) of dead-lettered rows; ``copy_threshold`` None = never COPY;
    ``stages``: the connection's stage tables (PostgreSQL; None: one made per COPY)."""
    pk = shape.primary_key
    if plan.truncate:
        conn.execute(sa.delete(table))
    deletes: list[RowImage] = []
    upserts: dict[tuple[str, ...], list[Sequence[Any]]] = {}
    inserts: dict[tuple[str, ...], list[Sequence[Any]]] = {}  # with ``direct``: keys inserted
    direct = direct and copy_threshold is not None
    key_encoders = [encoder(shape.column(k).arrow_type, dialect) for k in pk]  # type: ignore[union-attr]
    schema: TableSchema | None = None
    codec: Codec | None = None
    for key, (image, event) in plan.actions.items():
        if (plan.target, key) in skip:
            continue
        if image is None:
            deletes.append(
                tuple(v if e is None or v is None else e(v) for v, e in zip(key, key_encoders, strict=True))
            )
            continue
        if event.schema is not schema:  # one lookup per run of one version, not per change
            schema = event.schema
            codec = codec_of(plan.target, schema)
        assert codec is not None
        into = inserts if direct and event.op is Op.CREATE else upserts
        into.setdefault(codec.names, []).append(codec.row(image))
    copy = copy_threshold is not None
    threshold = copy_threshold or 0
    if copy:  # PostgreSQL
        from sinks.sql.postgres_copy import copy_delete, copy_insert, copy_upsert
    if deletes:
        if copy and len(deletes) >= threshold:
            copy_delete(conn, table, pk, _copy_types(shape, pk), deletes, stages)
        else:
            stmt, params = delete_by_key(table, pk)
            executemany(conn, stmt, params, deletes, dialect)
    for names, rows in inserts.items():
        if len(rows) >= threshold:
            copy_insert(conn, table, names, _copy_types(shape, names), rows)
        else:  # a few: with the upserts (executemany), not a COPY of their own
            upserts.setdefault(names, []).extend(rows)
    for names, rows in upserts.items():
        if copy and len(rows) >= threshold:
            copy_upsert(conn, table, names, _copy_types(shape, names), rows, pk, stages)
        else:
            executemany(conn, upsert_statement(table, names, pk, dialect), names, rows, dialect)


def _copy_types(shape: TableShape, names: Sequence[str]) -> list[str]:
    by_name = {c.name: c for c in shape.columns}
    return [pg_copy_type(by_name[n].arrow_type) for n in names]


_MARIADB_NAMES = mysql.dialect().identifier_preparer


def delete_by_key(table: sa.Table, pk: Sequence[str]) -> tuple[sa.Executable, list[str]]:
    """``DELETE ... WHERE`` each key column ``= :k{i}``, and those parameter names in key order."""
    params = [f"k{i}" for i in range(len(pk))]
    stmt = sa.delete(table).where(
        sa.and_(*(table.c[k] == sa.bindparam(p) for p, k in zip(params, pk, strict=True)))
    )
    return stmt, params


def upsert_statement(
    table: sa.Table, names: Sequence[str], pk: Sequence[str], dialect: Dialect
) -> sa.Executable:
    """The upsert of ``names`` by ``pk`` (parameters named as the columns), per dialect."""
    rest = [n for n in names if n not in pk]
    if dialect is Dialect.MARIADB:
        # pymysql's executemany rewrites this into multi-row VALUES statements itself
        my = mysql.insert(table)
        # not my.inserted[n]: SQLAlchemy doubles a name's % twice inside VALUES() (50%%%%_off)
        quote = _MARIADB_NAMES.quote_identifier
        values = {n: f"VALUES({single_percents(_MARIADB_NAMES, quote(n))})" for n in (rest or pk[:1])}
        return my.on_duplicate_key_update({n: sa.literal_column(v) for n, v in values.items()})
    ins: Any = postgresql.insert(table) if dialect is Dialect.POSTGRESQL else sqlite.insert(table)
    if rest:
        stmt = ins.on_conflict_do_update(index_elements=list(pk), set_={n: ins.excluded[n] for n in rest})
    else:
        stmt = ins.on_conflict_do_nothing(index_elements=list(pk))
    # executemany of ON CONFLICT runs one statement per row (psycopg pipelines them); RETURNING would
    # make SQLAlchemy batch rows into multi-row VALUES, which measured no faster here: large
    # PostgreSQL batches take the COPY path instead.
    upsert: sa.Executable = stmt
    return upsert
