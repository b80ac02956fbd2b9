"""A SQL sink's target tables made to follow the source's schema versions, before a batch's data.

Creating a table, altering it (sinks/sql/schema_sync.py plans the steps), holding back a change that
needs review (``schema_changes: stop``, or one that loses data) until `cdc schema accept`, and
recording each table's shape in the sink's bookkeeping, in a transaction of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import sqlalchemy as sa

from cdc.config.models import SchemaChangePolicy
from cdc.core.errors import SinkSchemaError
from cdc.core.events import ChangeEvent, Op
from cdc.core.schemas import TableRef, TableSchema
from sinks.contract import PendingSchemaChange
from sinks.sql.db_errors import access_problem, is_transient
from sinks.sql.positions_table import TableShape
from sinks.sql.schema_sync import RebuildTable, ReplaceKey, build_table, ddl_statements, evolve
from sinks.sql.table_keys import lost_key, no_key_yet
from sinks.sql.type_mapping import Dialect
from sinks.sql.writer_state import check_writer

if TYPE_CHECKING:
    from sinks.sql.sql_sink import SqlSink

__all__ = ["sync_schemas", "unfollowed"]

log = logging.getLogger("sinks.sql.sql_sink")  # the sink's own log, as before this module

# a schema version as the target keys it, and the first event of that version in the batch
_Version = tuple[TableSchema, ChangeEvent]


def sync_schemas(sink: SqlSink, events: Iterable[ChangeEvent]) -> None:
    """Create and alter target tables for the schema versions in ``events`` (before the data).

    Runs in its own transaction: MariaDB commits DDL implicitly anyway. Re-running it after a crash
    is harmless (the version is recorded; the DDL says IF [NOT] EXISTS). Two writers creating or
    changing one table at once: the loser's transaction fails, it reads the tables again and
    finds the work done.
    """
    todo = unfollowed(sink, events)
    attempts = 10  # each lost race means the other writer got further: this ends
    for attempt in range(attempts):
        if not todo:
            return
        try:
            _follow(sink, todo)
            return
        except sa.exc.DBAPIError as exc:
            if attempt == attempts - 1 or is_transient(exc) or access_problem(exc) is not None:
                raise
            log.info(
                "%s: a table changed under us (another writer?): reading it again: %s",
                sink.name,
                exc.orig,
            )
        with sink._require_engine().connect() as conn:
            sink._load_shapes(conn)
        todo = [v for v in todo if not _follows(sink, v)]


def unfollowed(
    sink: SqlSink, events: Iterable[ChangeEvent], read: dict[str, TableShape | None] | None = None
) -> list[_Version]:
    """The versions in ``events`` their target tables do not take as they are (the sync's work).
    ``read``: gets each target's shape as read here, so that a caller on another thread can tell
    later that the answer still holds (the shapes are immutable: the same objects, the same answer)."""
    first: dict[tuple[TableRef, str], _Version] = {}
    seen: set[int] = set()
    for e in events:
        if id(e.schema) in seen or e.op is Op.TRUNCATE:
            continue
        seen.add(id(e.schema))
        keyed = sink._keys.keyed(e.schema) or e.schema  # keyless: a served table lost its key
        if (keyed.ref, keyed.version) not in first:
            first[(keyed.ref, keyed.version)] = (keyed, e)
    return [v for v in first.values() if not _follows(sink, v, read)]


def _follow(sink: SqlSink, todo: list[_Version]) -> None:
    engine = sink._require_engine()
    held_back: tuple[str, PendingSchemaChange, str] | None = None
    with engine.begin() as conn:
        sink._load_shapes(conn)
        if sink._epoch is not None:
            check_writer(sink.name, sink._epoch, sink._book.read(conn, sink.settings.pipeline))
        for schema, first in todo:
            target = sink.target_name(schema.ref)
            old = sink._shapes.get(target)
            accepted = sink._book.is_accepted(conn, target, schema.version)
            if not schema.primary_key:  # a served table lost its key; key_columns give none
                if accepted:
                    raise no_key_yet(schema, target)
                change, why = lost_key(schema, old, first.position)
                held_back = (target, change, why)
                break
            ev = evolve(target, old, schema, first.position, accepted)
            if ev.shape == old:
                continue
            review = ev.unsafe or (ev.steps and sink.settings.schema_changes is SchemaChangePolicy.STOP)
            if review and not accepted:
                change = PendingSchemaChange(
                    schema.ref, ev.from_version, schema.version, ev.change, first.position
                )
                held_back = (target, change, ev.unsafe or "the sink's schema_changes is stop")
                break
            rebuild = old is not None and any(isinstance(s, RebuildTable) for s in ev.steps)
            if rebuild:  # accepted: a key column's new type; the rows held cannot be keyed by it
                conn.execute(sa.schema.DropTable(sink._table(target), if_exists=True))
                log.warning("emptied %s to rebuild it for %s: %s", target, schema.ref, ev.change)
            if old is None or rebuild:
                table = build_table(sa.MetaData(schema=sink._schema), target, ev.shape, sink.dialect)
                conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
                log.info("created table %s for %s", target, schema.ref)
            else:
                pk_name = None
                if any(isinstance(s, ReplaceKey) for s in ev.steps) and sink.dialect is Dialect.POSTGRESQL:
                    pk_name = sa.inspect(conn).get_pk_constraint(target, schema=sink._schema)["name"]
                statements = ddl_statements(
                    sink._table(target), ev.steps, sink.dialect, engine.dialect, ev.shape, pk_name
                )
                log.info("schema change on %s (%s): %s", target, schema.ref, ev.change or "none")
                for statement in statements:
                    log.info("  %s", statement)
                    conn.execute(sa.text(statement))
            sink._book.write_shape(conn, target, ev.shape, exists=old is not None)
            if accepted:
                sink._book.forget_schema_change(conn, target, schema.version)
            sink._shapes[target] = ev.shape
            sink._forget_tables()
    if held_back is not None:
        target, change, why = held_back
        with engine.begin() as conn:
            sink._book.record_schema_change(conn, target, change)
        raise SinkSchemaError(
            f"{change.table} (target table {target})", None,
            f"{change.change}: held back ({why}); nothing of the batch was written. Accept it with "
            f"`cdc schema accept -c CONFIG {change.table}` and run again",
        )  # fmt: skip


def _follows(sink: SqlSink, version: _Version, read: dict[str, TableShape | None] | None = None) -> bool:
    """Whether the target takes rows of this version as it is (no change to make)."""
    schema, first = version
    target = sink.target_name(schema.ref)
    shape = sink._shapes.get(target)
    if read is not None:
        read[target] = shape
    return shape is not None and shape.follows(schema.version, first.position)
