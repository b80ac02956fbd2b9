"""What the stream decoder knows of tables: each TABLE_MAP compiled once, the table ids of the
current binlog file, each table's newest schema (split from stream_decoder.py).

A TABLE_MAP body (table id included) is compiled the first time it is seen, into its row decoders,
schema and key extractor; the compiled event loop (compiled_loop.py) is told of it, so that later
transactions with the same TABLE_MAP are decoded there without coming back to Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from headwater_native import EventLoop, RowsPlan

from cdc.core.errors import TerminalError
from cdc.core.events import ChangeEvent, Op, SchemaChange, SchemaChangeKind
from cdc.core.positions import Position
from cdc.core.schemas import TableRef, TableSchema
from cdc.sources.mariadb.compiled_table import CompiledTable, key_getter, needs_extended_lookup
from cdc.sources.mariadb.ddl import StatementKind
from cdc.sources.mariadb.native_rows import rows_plan
from cdc.sources.mariadb.row_decoder import CharsetOf, DecoderOptions, compile_rows_decoder
from cdc.sources.mariadb.table_filter import TableFilter
from cdc.sources.mariadb.table_map import parse_table_map
from cdc.sources.mariadb.type_mapping import table_schema

__all__ = ["ExtendedTypesOf", "TableRegistry", "TransactionalOf"]

ExtendedTypesOf = Callable[[str, str], tuple[tuple[str, str], ...]]
TransactionalOf = Callable[[str, str], bool]  # (db, table) -> does its engine roll back?

_DDL_KIND = {
    StatementKind.CREATE: SchemaChangeKind.CREATE,
    StatementKind.ALTER: SchemaChangeKind.ALTER,
    StatementKind.DROP: SchemaChangeKind.DROP,
    StatementKind.RENAME: SchemaChangeKind.RENAME,
}


class TableRegistry:
    def __init__(
        self,
        charset_of: CharsetOf,
        table_filter: TableFilter,
        options: DecoderOptions,
        extended_types_of: ExtendedTypesOf | None,
        transactional_of: TransactionalOf | None,
    ) -> None:
        self._charset_of = charset_of
        self._filter = table_filter
        self._options = options
        self._extended_types_of = extended_types_of
        self._transactional_of = transactional_of
        self._loop: EventLoop | None = None
        self._transactional: dict[TableRef, bool] = {}
        self.compiled: dict[bytes, CompiledTable] = {}
        self.versions: dict[TableRef, str] = {}
        self._latest: dict[TableRef, TableSchema] = {}
        # table id -> (compiled table, TABLE_MAP body): valid within one binlog file (ROTATE clears it)
        self.by_id: dict[int, tuple[CompiledTable, bytes]] = {}

    def attach(self, loop: EventLoop) -> None:
        """The compiled event loop to tell of each table compiled from now on."""
        self._loop = loop

    def table_map(self, body: bytes) -> CompiledTable:
        """A TABLE_MAP event's body: its compiled table, now current for its table id."""
        table = self.compiled.get(body)
        if table is None:
            table = self.compiled[body] = self._compile(body)
        entry = (table, body)
        self.by_id[int.from_bytes(body[:6], "little")] = entry
        return table

    def _compile(self, body: bytes) -> CompiledTable:
        tm = parse_table_map(body)
        if not self._filter.accepts(tm.db, tm.table):
            table = CompiledTable(None, TableSchema.build(TableRef(tm.db, tm.table), (), ()), key_getter(()))
            self._register(body, table, None, ())
            return table
        if not tm.has_names:
            raise TerminalError(
                f"{tm.db}.{tm.table}: TABLE_MAP has no column names; the server must run "
                "with binlog_row_metadata=FULL"
            )
        extended: tuple[tuple[str, str], ...] = ()
        if self._extended_types_of is not None and needs_extended_lookup(tm):
            extended = self._extended_types_of(tm.db, tm.table)
        opts = DecoderOptions(self._options.zero_dates, extended)
        # The generated decoder refuses unsupported column types by name and stays the reference;
        # the rows are read by the compiled plan (native_rows.py: same tuples, a fraction of the CPU).
        decoder = compile_rows_decoder(tm, self._charset_of, opts)
        plan = rows_plan(tm, self._charset_of, opts)
        decoder = replace(decoder, decode_rows=plan.decode_rows, decode_updates=plan.decode_updates)
        schema = table_schema(tm, extended_types=extended)
        self.versions[schema.ref] = schema.version
        self._latest[schema.ref] = schema
        table = CompiledTable(decoder, schema, key_getter(tm.primary_key))
        self._register(body, table, plan, tm.primary_key)
        return table

    def _register(
        self, body: bytes, table: CompiledTable, plan: RowsPlan | None, key: tuple[int, ...]
    ) -> None:
        if self._loop is not None:
            self._loop.register(body, (table, body), table.schema, plan, list(key))

    def is_transactional(self, ref: TableRef) -> bool:
        known = self._transactional.get(ref)
        if known is None:
            lookup = self._transactional_of
            known = self._transactional[ref] = True if lookup is None else lookup(ref.db, ref.table)
        return known

    def schema_for(self, ref: TableRef) -> TableSchema:
        """The schema a truncate carries (a TRUNCATE has no TABLE_MAP of its own).

        The table's newest TABLE_MAP read by this decoder: in the current binlog file the one with
        the highest table id (ids grow each time the server opens the table anew, e.g. after an
        ALTER), else the last one compiled. When the truncate is the table's first event since the
        reader started (e.g. right after a restart), there is none: the schema is then the empty
        one, ``TableSchema.build(ref, (), ())`` (no columns, no key, always the same version), and
        consumers must resolve the table by ``ref`` from what they already know of it.
        """
        newest: tuple[int, TableSchema] | None = None
        for table_id, (table, _body) in self.by_id.items():
            if (
                table.decoder is not None
                and table.schema.ref == ref
                and (newest is None or table_id > newest[0])
            ):
                newest = (table_id, table.schema)
        if newest is not None:
            return newest[1]
        return self._latest.get(ref) or TableSchema.build(ref, (), ())

    def statement_record(
        self,
        kind: StatementKind,
        ref: TableRef,
        renamed_to: TableRef | None,
        query: str,
        position: Position,
        ts_ms: int,
        tx_id: str,
    ) -> ChangeEvent | SchemaChange:
        """The record of a captured table's TRUNCATE or DDL statement."""
        if kind is StatementKind.TRUNCATE:
            schema = self.schema_for(ref)
            return ChangeEvent(Op.TRUNCATE, schema, None, None, None, position, ts_ms, tx_id)
        previous = self.versions.get(ref)
        return SchemaChange(_DDL_KIND[kind], ref, query, position, ts_ms, tx_id, previous, renamed_to)
