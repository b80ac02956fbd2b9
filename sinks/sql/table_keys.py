"""The key each source table has in its serving table: its primary key, or ``key_columns``.

A table with neither that the sink never served is refused: its changes are skipped and the sink says
so once per run, naming the table and the two ways out (``key_columns`` or ``exclude_tables``), while
every other table goes on. A serving table without a key could not take updates and deletes
faithfully. A table the sink already serves that loses its key (``ALTER TABLE t DROP PRIMARY KEY``)
is not skipped: that would leave its serving table silently stale. It is a held-back schema change
(:func:`lost_key`), and stays refused, terminally, until ``key_columns`` name its key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from cdc.core.errors import SinkSchemaError
from cdc.core.positions import Position
from cdc.core.schemas import TableRef, TableSchema
from sinks.contract import PendingSchemaChange
from sinks.sql.positions_table import TableShape

__all__ = ["TableKeys", "lost_key", "no_key_yet"]

log = logging.getLogger("sinks.sql.sql_sink")


class TableKeys:
    def __init__(self, sink: str, key_columns: Mapping[str, tuple[str, ...]]) -> None:
        self._sink = sink
        self._key_columns = key_columns
        self._by_version: dict[tuple[TableRef, str], TableSchema | None] = {}
        # per schema object, for the per-event check; the schema is kept so that its id stays its own
        self._by_identity: dict[int, tuple[TableSchema, TableSchema | None]] = {}
        self._refused: set[TableRef] = set()

    def keyed(self, schema: TableSchema) -> TableSchema | None:
        """``schema`` with the key its target uses; None if the table is refused."""
        found = self._by_identity.get(id(schema))
        if found is not None and found[0] is schema:
            return found[1]
        cache_key = (schema.ref, schema.version)
        if cache_key not in self._by_version:
            self._by_version[cache_key] = self._key(schema)
        keyed = self._by_version[cache_key]
        if len(self._by_identity) > 10_000:  # schema objects of a long run: keep the map small
            self._by_identity.clear()
        self._by_identity[id(schema)] = (schema, keyed)
        return keyed

    def refuse(self, ref: TableRef) -> None:
        """The sink skips ``ref``'s changes (keyless, never served): say so once per run."""
        if ref not in self._refused:
            self._refused.add(ref)
            log.error(
                "sink %s skips every change of %s: the table has no primary key, and a serving "
                "table needs one; give the sink key_columns: {%s: [columns that identify a row]} "
                "or leave the table out with exclude_tables: [%s] (the other tables go on)",
                self._sink, ref, ref, ref,
            )  # fmt: skip

    def _key(self, schema: TableSchema) -> TableSchema | None:
        if schema.primary_key:
            return schema
        columns = self._key_columns.get(str(schema.ref))
        if not columns:
            return None
        missing = [c for c in columns if c not in schema.column_names]
        if missing:
            raise SinkSchemaError(
                str(schema.ref), ",".join(missing),
                f"key_columns names {missing}, which the table does not have (its columns: "
                f"{', '.join(schema.column_names)}); fix key_columns of sink {self._sink}",
            )  # fmt: skip
        return TableSchema(schema.ref, schema.columns, tuple(columns), schema.version)


def _ways_out(ref: TableRef) -> str:
    return (
        f"give the sink key_columns: {{{ref}: [columns that identify a row]}}, or leave the table out "
        f"with exclude_tables: [{ref}]"
    )


def lost_key(
    schema: TableSchema, shape: TableShape | None, position: Position
) -> tuple[PendingSchemaChange, str]:
    """A served table's new version has no key and ``key_columns`` give it none: the change held
    back, and why (naming the ways out)."""
    was = list(shape.primary_key) if shape is not None else []
    change = PendingSchemaChange(
        schema.ref, shape.latest if shape is not None else "", schema.version,
        f"primary key dropped (was {was})", position,
    )  # fmt: skip
    return change, f"the serving table needs a key: {_ways_out(schema.ref)} (and accept it)"


def no_key_yet(schema: TableSchema, target: str) -> SinkSchemaError:
    """The dropped key was accepted, but nothing names a key for the serving table yet."""
    return SinkSchemaError(
        f"{schema.ref} (target table {target})", None,
        f"the primary key dropped at the source was accepted, but the serving table still needs a key; "
        f"{_ways_out(schema.ref)}, and run again",
    )  # fmt: skip
