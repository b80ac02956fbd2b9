"""Raw binlog events in, ordered ``cdc.core`` records out: the MariaDB source's state machine.

Network-free on purpose, so that tests and benchmarks can feed it captured events. It tracks the
current binlog file (ROTATE), the transaction (GTID ... XID/COMMIT, or a standalone DDL), compiles
each TABLE_MAP once, and numbers every record of a transaction to give it a Position.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter

from cdc.core.errors import SourceProtocolError, TerminalError
from cdc.core.events import (
    ChangeEvent,
    Op,
    RowImage,
    SchemaChange,
    SchemaChangeKind,
    SourceRecord,
    TransactionEnd,
)
from cdc.core.positions import Gtid, Position, RestartPoint
from cdc.core.schemas import TableRef, TableSchema
from cdc.sources.mariadb.binlog_format import HEADER_LEN, EventType, FieldType, read_lenenc
from cdc.sources.mariadb.ddl import StatementKind, classify
from cdc.sources.mariadb.row_decoder import CharsetOf, DecoderOptions, RowsDecoder, compile_rows_decoder
from cdc.sources.mariadb.table_filter import TableFilter
from cdc.sources.mariadb.table_map import TableMap, parse_table_map
from cdc.sources.mariadb.type_mapping import table_schema

__all__ = ["ExtendedTypesOf", "StreamDecoder"]

log = logging.getLogger(__name__)

ExtendedTypesOf = Callable[[str, str], tuple[tuple[str, str], ...]]
KeyOf = Callable[[RowImage], RowImage | None]

_HEADER = struct.Struct("<IBIIIH").unpack_from
_GTID_BODY = struct.Struct("<QIB").unpack_from
_FL_STANDALONE = 1
_DDL_KIND = {
    StatementKind.CREATE: SchemaChangeKind.CREATE,
    StatementKind.ALTER: SchemaChangeKind.ALTER,
    StatementKind.DROP: SchemaChangeKind.DROP,
    StatementKind.RENAME: SchemaChangeKind.RENAME,
}


@dataclass(frozen=True, slots=True)
class _Table:
    """A compiled TABLE_MAP: its decoders, schema and key extractor (None when filtered out)."""

    decoder: RowsDecoder | None
    schema: TableSchema | None
    key_of: KeyOf


def _key_getter(indexes: tuple[int, ...]) -> KeyOf:
    if not indexes:
        return lambda row: None
    if len(indexes) == 1:
        (k,) = indexes

        def single(row: RowImage) -> RowImage:
            return (row[k],)

        return single
    many = itemgetter(*indexes)

    def compound(row: RowImage) -> RowImage:
        return tuple(many(row))

    return compound


def _needs_extended_lookup(tm: TableMap) -> bool:
    # UUID/INET6 are BINARY(16), INET4 is BINARY(4) in the binlog: only these need the dictionary.
    return any(
        c.type_code == FieldType.STRING and c.collation == 63 and c.meta in (4, 16) for c in tm.columns
    )


class StreamDecoder:
    def __init__(
        self,
        charset_of: CharsetOf,
        *,
        table_filter: TableFilter | None = None,
        options: DecoderOptions | None = None,
        extended_types_of: ExtendedTypesOf | None = None,
        resume: RestartPoint | None = None,
    ) -> None:
        self._charset_of = charset_of
        self._filter = table_filter or TableFilter()
        self._options = options or DecoderOptions()
        self._extended_types_of = extended_types_of
        self._compiled: dict[bytes, _Table] = {}
        self._versions: dict[TableRef, str] = {}
        self._resume = resume
        self.file: str | None = resume.transaction.file if resume else None
        self.events_seen = 0

    # -- TABLE_MAP ------------------------------------------------------------------------------
    def _compile(self, body: bytes, present: int | None = None, present_after: int | None = None) -> _Table:
        tm = parse_table_map(body)
        if not self._filter.accepts(tm.db, tm.table):
            return _Table(None, None, _key_getter(()))
        if not tm.has_names:
            raise TerminalError(
                f"{tm.db}.{tm.table}: TABLE_MAP has no column names; the server must run "
                "with binlog_row_metadata=FULL"
            )
        extended: tuple[tuple[str, str], ...] = ()
        if self._extended_types_of is not None and _needs_extended_lookup(tm):
            extended = self._extended_types_of(tm.db, tm.table)
        opts = DecoderOptions(self._options.zero_dates, extended)
        decoder = compile_rows_decoder(tm, self._charset_of, opts, present, present_after)
        schema = table_schema(tm, extended_types=extended)
        self._versions[schema.ref] = schema.version
        return _Table(decoder, schema, _key_getter(tm.primary_key))

    # -- the stream -----------------------------------------------------------------------------
    def records(self, events: Iterable[bytes]) -> Iterator[SourceRecord]:
        by_id: dict[int, tuple[_Table, bytes]] = {}
        compiled = self._compiled
        gtid: Gtid | None = None
        tx_pos: Position | None = None
        file_pos: Position | None = None
        tx_id = ""
        row = 0
        ts_ms = 0
        standalone = False
        last: Position | None = None
        resume = self._resume
        skip = 0
        created, updated, deleted = Op.CREATE, Op.UPDATE, Op.DELETE
        writes, updates = EventType.WRITES, EventType.UPDATES
        rows_v1, rows_v2 = EventType.ROWS_V1, EventType.ROWS_V2

        for ev in events:
            self.events_seen += 1
            _ts, type_code, server_id, size, log_pos, _flags = _HEADER(ev, 0)
            if type_code == EventType.TABLE_MAP:
                body = ev[HEADER_LEN:]
                table = compiled.get(body)
                if table is None:
                    table = compiled[body] = self._compile(body)
                by_id[int.from_bytes(body[:6], "little")] = (table, body)
            elif type_code in rows_v1 or type_code in rows_v2:
                if tx_pos is None:
                    raise SourceProtocolError("row event outside a transaction")
                table_id = int.from_bytes(ev[HEADER_LEN : HEADER_LEN + 6], "little")
                try:
                    table, map_body = by_id[table_id]
                except KeyError as exc:
                    raise SourceProtocolError(f"row event for unknown table id {table_id}") from exc
                if table.decoder is None:
                    continue
                pos = HEADER_LEN + 8
                if type_code in rows_v2:
                    pos += int.from_bytes(ev[pos : pos + 2], "little")
                ncols, pos = read_lenenc(ev, pos)
                nbytes = (ncols + 7) // 8
                present = int.from_bytes(ev[pos : pos + nbytes], "little")
                pos += nbytes
                full = (1 << ncols) - 1
                is_update = type_code in updates
                present_after = full
                if is_update:
                    present_after = int.from_bytes(ev[pos : pos + nbytes], "little")
                    pos += nbytes
                if present != full or present_after != full:
                    variant = (map_body, present, present_after)
                    key = repr(variant).encode()  # rare (binlog_row_image != FULL): a separate cache entry
                    t2 = compiled.get(key)
                    if t2 is None:
                        t2 = compiled[key] = self._compile(map_body, present, present_after)
                    table = t2
                decoder, schema, key_of = table.decoder, table.schema, table.key_of
                assert decoder is not None and schema is not None
                if is_update:
                    pairs = decoder.decode_updates(ev, pos, len(ev))
                    for before, after in pairs:
                        if skip:
                            skip -= 1
                            row += 1
                            continue
                        last = tx_pos.at_row(row)
                        row += 1
                        yield ChangeEvent(updated, schema, key_of(after), before, after, last, ts_ms, tx_id)
                else:
                    images = decoder.decode_rows(ev, pos, len(ev))
                    op = created if type_code in writes else deleted
                    for image in images:
                        if skip:
                            skip -= 1
                            row += 1
                            continue
                        last = tx_pos.at_row(row)
                        row += 1
                        if op is created:
                            yield ChangeEvent(op, schema, key_of(image), None, image, last, ts_ms, tx_id)
                        else:
                            yield ChangeEvent(op, schema, key_of(image), image, None, last, ts_ms, tx_id)
            elif type_code == EventType.GTID:
                seq, domain, flags = _GTID_BODY(ev, HEADER_LEN)
                gtid = Gtid(domain, server_id, seq)
                if self.file is None:
                    raise SourceProtocolError("GTID event before any ROTATE: binlog file unknown")
                if file_pos is None or file_pos.file != self.file:
                    file_pos = Position(gtid, self.file, log_pos - size, 0)  # parses the file name once
                tx_pos = file_pos.in_same_file(gtid, log_pos - size)
                tx_id = str(gtid)
                row = 0
                ts_ms = _ts * 1000
                standalone = bool(flags & _FL_STANDALONE)
                last = None
                skip = 0
                if resume is not None:
                    # With rows to skip, the first transaction must be the one the restart point names;
                    # a boundary (skip_rows == 0) is only a place in the binlog: the next transaction
                    # starts at or after it, whatever its GTID.
                    mismatch = resume.transaction.gtid != gtid or resume.transaction.offset != tx_pos.offset
                    if resume.skip_rows and mismatch:
                        raise TerminalError(
                            f"resume expected transaction {resume.transaction.gtid} at "
                            f"{resume.transaction.file}:{resume.transaction.offset}, the "
                            f"server sent {gtid} at {tx_pos.file}:{tx_pos.offset}"
                        )
                    skip = resume.skip_rows
                    resume = self._resume = None
            elif type_code == EventType.XID:
                if tx_pos is not None:
                    if last is not None:
                        yield TransactionEnd(tx_id, last, row, ts_ms)
                    tx_pos = None
            elif type_code == EventType.QUERY:
                if tx_pos is None:
                    continue
                query, db = _query_text(ev)
                if query == "BEGIN":
                    continue
                if query == "COMMIT":  # non-transactional engines end with a COMMIT query, not an XID
                    if last is not None:
                        yield TransactionEnd(tx_id, last, row, ts_ms)
                    tx_pos = None
                    continue
                for stmt in classify(query, db):
                    if not self._filter.accepts(stmt.table.db, stmt.table.table):
                        continue
                    if skip:
                        skip -= 1
                        row += 1
                        continue
                    last = tx_pos.at_row(row)
                    row += 1
                    yield self._statement_record(
                        stmt.kind, stmt.table, stmt.renamed_to, query, last, ts_ms, tx_id
                    )
                if standalone:
                    if last is not None:
                        yield TransactionEnd(tx_id, last, row, ts_ms)
                    tx_pos = None
            elif type_code == EventType.ROTATE:
                self.file = ev[HEADER_LEN + 8 :].decode("utf-8", "surrogateescape")
                by_id.clear()  # table ids are only meaningful within one server run / file
            elif type_code in EventType.ROWS_COMPRESSED or type_code == EventType.QUERY_COMPRESSED:
                raise TerminalError("compressed binlog events (log_bin_compress=ON) are not supported")
            # FORMAT_DESCRIPTION, GTID_LIST, BINLOG_CHECKPOINT, HEARTBEAT, ANNOTATE_ROWS: nothing to emit

    def _statement_record(
        self,
        kind: StatementKind,
        ref: TableRef,
        renamed_to: TableRef | None,
        query: str,
        position: Position,
        ts_ms: int,
        tx_id: str,
    ) -> SourceRecord:
        if kind is StatementKind.TRUNCATE:
            schema = self._schema_for(ref)
            return ChangeEvent(Op.TRUNCATE, schema, None, None, None, position, ts_ms, tx_id)
        previous = self._versions.get(ref)
        return SchemaChange(_DDL_KIND[kind], ref, query, position, ts_ms, tx_id, previous, renamed_to)

    def _schema_for(self, ref: TableRef) -> TableSchema:
        """The last schema seen for ``ref`` (a truncate carries no TABLE_MAP); an empty one if none."""
        for table in reversed(list(self._compiled.values())):
            if table.schema is not None and table.schema.ref == ref:
                return table.schema
        return TableSchema.build(ref, (), ())


def _query_text(ev: bytes) -> tuple[str, str]:
    """(statement, default database) of a QUERY event."""
    p = HEADER_LEN
    db_len = ev[p + 8]
    status_len = int.from_bytes(ev[p + 11 : p + 13], "little")
    p += 13 + status_len
    db = ev[p : p + db_len].decode("utf-8", "surrogateescape")
    p += db_len + 1
    return ev[p:].decode("utf-8", "surrogateescape"), db
