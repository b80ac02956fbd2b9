"""The key each source table has in its serving table: its primary key, or ``key_columns``.

A table with neither is refused: its changes are skipped and the sink says so once per run, naming
the table and the two ways out (``key_columns`` or ``exclude_tables``), while every other table goes
on. A serving table without a key could not take updates and deletes faithfully.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from cdc.core.errors import SinkSchemaError
from cdc.core.schemas import TableRef, TableSchema

__all__ = ["TableKeys"]

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

    def _key(self, schema: TableSchema) -> TableSchema | None:
        if schema.primary_key:
            return schema
        columns = self._key_columns.get(str(schema.ref))
        if not columns:
            if schema.ref not in self._refused:
                self._refused.add(schema.ref)
                log.error(
                    "sink %s skips every change of %s: the table has no primary key, and a serving "
                    "table needs one; give the sink key_columns: {%s: [columns that identify a row]} "
                    "or leave the table out with exclude_tables: [%s] (the other tables go on)",
                    self._sink, schema.ref, schema.ref, schema.ref,
                )  # fmt: skip
            return None
        missing = [c for c in columns if c not in schema.column_names]
        if missing:
            raise SinkSchemaError(
                str(schema.ref), ",".join(missing),
                f"key_columns names {missing}, which the table does not have (its columns: "
                f"{', '.join(schema.column_names)}); fix key_columns of sink {self._sink}",
            )  # fmt: skip
        return TableSchema(schema.ref, schema.columns, tuple(columns), schema.version)
