"""pgoutput's messages (protocol version 1) -> the SourceRecords every source yields.

A transaction arrives whole, at its commit (Begin, Relation/Type, Insert/Update/Delete/Truncate...,
Commit); its rows are numbered from 0 and placed at its commit LSN (cdc.core.positions.lsn_position),
which is the order PostgreSQL committed them in. Non-transactional logical messages (our heartbeats,
``pg_logical_emit_message(false, 'headwater.heartbeat', ...)``) arrive between transactions, in WAL
order: every transaction that committed before one has been sent, so its LSN is a restart point.

Resuming at a restart point (LSN X, skip k): transactions that committed before X are dropped (the
slot may send them again: it is acknowledged only up to what Kafka or the sinks committed), and the
first k rows of the transaction that committed at X are dropped.

Images follow the table's REPLICA IDENTITY (docs/postgresql.md): with DEFAULT an update carries no
``before`` and a delete's ``before`` holds the key only (the other columns are not in the WAL: they
are null in that image); with FULL both are complete. An unchanged TOASTed value that the WAL does
not carry is never replaced by a placeholder: the update stops the capture, naming the column.
"""

from __future__ import annotations

import decimal
import operator
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cdc.core.change_batches import MAKE_CHANGES
from cdc.core.errors import SourceProtocolError, SourceSettingsError, UnsupportedColumnType
from cdc.core.events import (
    ChangeEvent,
    ColumnValue,
    Op,
    RowImage,
    SourceProgress,
    SourceRecord,
    TransactionEnd,
)
from cdc.core.positions import Position, RestartPoint, lsn_position
from cdc.core.schemas import Column, TableRef, TableSchema
from cdc.core.table_filter import TableFilter
from cdc.sources.postgresql.tuples import TupleReader, compile_tuple_reader
from cdc.sources.postgresql.values import Converter, ValueOutOfRange, arrow_type, converter

# consecutive rows of one transaction, table and kind are built in batches (cdc/core/change_batches.py)
_BATCH_MAX = 256  # rows held before they are handed on: bounds memory, not latency (see _batched)

__all__ = ["HEARTBEAT_PREFIX", "CatalogColumns", "PgoutputDecoder", "build_schema", "pg_ts_ms"]

HEARTBEAT_PREFIX = "headwater.heartbeat"
_PG_EPOCH_MS = 946_684_800_000  # 2000-01-01 in ms since 1970
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!BQQq")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!I")
_COLUMN = struct.Struct("!IIi")  # type oid, typmod; after flags and name


def pg_ts_ms(pg_micros: int) -> int:
    return pg_micros // 1000 + _PG_EPOCH_MS


@dataclass(frozen=True, slots=True)
class CatalogColumns:
    """What the catalog adds to a Relation message: type names, NOT NULL, the primary key."""

    source_types: dict[str, str]
    not_null: frozenset[str]
    primary_key: tuple[str, ...]


Catalog = Callable[[int], CatalogColumns | None]


@dataclass(frozen=True, slots=True)
class _Relation:
    schema: TableSchema
    converters: tuple[Converter | None, ...]  # None: the text as it is
    key_of: Callable[[RowImage], RowImage] | None  # the key's values from an image
    key_indexes: tuple[int, ...]
    read: TupleReader  # the compiled reader of this shape's images (None: take the generic path)
    captured: bool
    full_identity: bool


def build_schema(
    ref: TableRef, columns: list[tuple[int, str, int, int]], identity: str, info: CatalogColumns | None
) -> TableSchema:
    """A table's schema from its columns (flags, name, type oid, typmod: a Relation message's, or the
    catalog's for a snapshot) and the catalog: the same shape gives the same version either way."""
    built: list[Column] = []
    for _flags, col_name, type_oid, typmod in columns:
        source_type = info.source_types.get(col_name, str(type_oid)) if info else str(type_oid)
        nullable = not (info is not None and col_name in info.not_null)
        built.append(Column(col_name, source_type, arrow_type(type_oid, typmod), nullable))
    flagged = tuple(c[1] for c in columns if c[0] & 1)
    names = {c.name for c in built}
    if info is not None and info.primary_key and all(k in names for k in info.primary_key):
        key = info.primary_key
    elif identity in ("d", "i"):
        key = flagged  # the replica identity's columns: the key PostgreSQL logs
    else:
        key = ()
    return TableSchema.build(ref, tuple(built), key)


def _key_getter(indexes: tuple[int, ...]) -> Callable[[RowImage], RowImage] | None:
    if not indexes:
        return None
    if len(indexes) == 1:
        (only,) = indexes
        return lambda image: (image[only],)
    get = operator.itemgetter(*indexes)
    return lambda image: get(image)


class PgoutputDecoder:
    """Stateful: relations persist across transactions (PostgreSQL sends each once per session and
    again after it changes). One decoder per replication session."""

    def __init__(self, tables: TableFilter, catalog: Catalog, start: RestartPoint | None) -> None:
        self._tables = tables
        self._catalog = catalog
        self._start_lsn = -1 if start is None else (start.transaction.lsn or 0)
        self._start_skip = 0 if start is None else start.skip_rows
        self._relations: dict[int, _Relation] = {}
        self._in_txn = False
        self._skip_txn = False
        self._xid = 0
        self._commit_lsn = 0
        self._ts_ms = 0
        self._row = 0  # next row index in the transaction
        self._skip_rows = 0
        self._emitted = 0
        self._position: Position | None = None
        self._txn_id = ""
        self.last_lsn = 0  # the LSN of the last transaction or heartbeat handled (for feedback)
        self._make = MAKE_CHANGES
        # consecutive row images of one kind and table, not yet made into ChangeEvents (_batched)
        self._batch: list[RowImage] = []
        self._batch_op = Op.CREATE
        self._batch_rel: _Relation | None = None
        self._batch_row = 0

    @property
    def in_transaction(self) -> bool:
        return self._in_txn

    def feed(self, data: bytes) -> list[SourceRecord]:
        first = data[0]
        if first == 0x49 or first == 0x55 or first == 0x44:  # I, U, D: the hot path
            return self._row_change(first, data)
        if self._batch:
            # the held rows come before whatever this message gives (a commit's TransactionEnd)
            return self._take() + self._feed_other(data)
        return self._feed_other(data)

    def _feed_other(self, data: bytes) -> list[SourceRecord]:
        kind = data[:1]
        if kind == b"B":
            self._begin(data)
            return []
        if kind == b"C":
            return self._commit(data)
        if kind == b"R":
            self._relation(data)
            return []
        if kind == b"T":
            return self._truncate(data)
        if kind == b"M":
            return self._message(data)
        if kind in (b"Y", b"O"):
            return []  # type names come from the catalog; origins do not matter here
        raise SourceProtocolError(f"unknown pgoutput message {kind!r}")

    # -- transactions ---------------------------------------------------------------------------
    def _begin(self, data: bytes) -> None:
        final_lsn, ts, xid = _BEGIN.unpack_from(data, 1)
        self._in_txn = True
        self._xid, self._commit_lsn, self._ts_ms = xid, final_lsn, pg_ts_ms(ts)
        self._row = self._emitted = 0
        self._skip_txn = final_lsn < self._start_lsn
        self._skip_rows = self._start_skip if final_lsn == self._start_lsn else 0
        self._txn_id = f"0-0-{xid}"  # "domain-server-seq" shape; the xid names the transaction
        self._position = lsn_position(final_lsn, 0, xid)

    def _commit(self, data: bytes) -> list[SourceRecord]:
        _flags, commit_lsn, _end_lsn, _ts = _COMMIT.unpack_from(data, 1)
        self._in_txn = False
        self.last_lsn = commit_lsn
        if self._skip_txn:
            return []
        if self._emitted:
            assert self._position is not None
            last = self._position.at_row(self._row - 1)
            return [TransactionEnd(self._txn_id, last, self._emitted, self._ts_ms)]
        if self._row == 0:
            # nothing of a captured table: the stream may resume at this commit
            return [SourceProgress(RestartPoint(lsn_position(commit_lsn, 0, self._xid)), self._ts_ms)]
        return []  # every row was already emitted before the restart

    def _message(self, data: bytes) -> list[SourceRecord]:
        flags = data[1]
        (lsn,) = struct.unpack_from("!Q", data, 2)
        end = data.index(b"\0", 10)
        prefix = data[10:end].decode()
        if flags & 1 or prefix != HEARTBEAT_PREFIX:
            return []  # transactional messages and other programs' messages are not ours
        if self._in_txn:
            raise SourceProtocolError("a non-transactional message inside a transaction")
        self.last_lsn = lsn
        if lsn < self._start_lsn:
            return []
        return [SourceProgress(RestartPoint(lsn_position(lsn, 0, 0)), 0)]

    # -- relations ------------------------------------------------------------------------------
    def _relation(self, data: bytes) -> None:
        (relid,) = _I32.unpack_from(data, 1)
        at = 5
        end = data.index(b"\0", at)
        namespace = data[at:end].decode()
        at = end + 1
        end = data.index(b"\0", at)
        name = data[at:end].decode()
        at = end + 1
        identity = chr(data[at])
        (ncols,) = _I16.unpack_from(data, at + 1)
        at += 3
        columns: list[tuple[int, str, int, int]] = []
        for _ in range(ncols):
            flags = data[at]
            end = data.index(b"\0", at + 1)
            col_name = data[at + 1 : end].decode()
            type_oid, typmod = struct.unpack_from("!Ii", data, end + 1)
            at = end + 9
            columns.append((flags, col_name, type_oid, typmod))
        ref = TableRef(namespace, name)
        captured = self._tables.accepts(namespace, name)
        schema = build_schema(ref, columns, identity, self._catalog(relid) if captured else None)
        built = schema.columns
        converters = tuple(converter(c.arrow_type.kind) for c in built)
        key_indexes = tuple(schema.key_indexes())
        self._relations[relid] = _Relation(
            schema,
            converters,
            _key_getter(key_indexes),
            key_indexes,
            compile_tuple_reader(converters),
            captured,
            identity == "f",
        )

    def _rel(self, relid: int) -> _Relation:
        rel = self._relations.get(relid)
        if rel is None:
            raise SourceProtocolError(f"pgoutput row for relation {relid} before its Relation message")
        return rel

    # -- rows -----------------------------------------------------------------------------------
    def _tuple(self, rel: _Relation, data: bytes, at: int, old: RowImage | None) -> tuple[RowImage, int]:
        # The hot path (one call per row image): the column count, then per column a kind byte and,
        # for text, a 4-byte length and the value's text form.
        ncols = (data[at] << 8) | data[at + 1]
        at += 2
        values: list[ColumnValue] = [None] * ncols
        convert = rel.converters
        i = 0
        try:
            for i in range(ncols):
                kind = data[at]
                if kind == 0x74:  # 't' text
                    start = at + 5
                    at = start + int.from_bytes(data[at + 1 : start], "big")
                    conv = convert[i]
                    raw = data[start:at]
                    values[i] = raw.decode("utf-8", "surrogateescape") if conv is None else conv(raw)
                elif kind == 0x6E:  # 'n' null
                    at += 1
                elif kind == 0x75:  # 'u' unchanged TOASTed value, not in the WAL
                    at += 1
                    if old is None:
                        raise self._unchanged_toast(rel, i)
                    values[i] = old[i]
                else:
                    raise SourceProtocolError(
                        f"pgoutput tuple column kind {chr(kind)!r} (binary mode is not used)"
                    )
        except (ValueOutOfRange, ValueError, decimal.InvalidOperation) as exc:
            column = rel.schema.columns[i]
            raise UnsupportedColumnType(
                rel.schema.db, rel.schema.table, column.name, f"{column.source_type}: {exc}"
            ) from None
        return tuple(values), at

    @staticmethod
    def _unchanged_toast(rel: _Relation, i: int) -> SourceSettingsError:
        name = rel.schema.columns[i].name
        return SourceSettingsError(
            f"{rel.schema.ref}.{name}: an update left this TOASTed value unchanged and PostgreSQL "
            f"did not log it (REPLICA IDENTITY DEFAULT); Headwater does not invent a value. Run "
            f"ALTER TABLE {rel.schema.ref} REPLICA IDENTITY FULL, then bootstrap the table again "
            f"(cdc bootstrap)"
        )

    def _batched(self, op: Op, rel: _Relation, image: RowImage) -> list[SourceRecord]:
        """Holds the row (numbered now) for a batch of ChangeEvents. A transaction arrives whole at
        its commit (pgoutput protocol 1), so holding its rows until the next other message, a change
        of table or kind, or _BATCH_MAX rows delays nothing that could be committed sooner."""
        row = self._row
        self._row = row + 1
        if row < self._skip_rows:
            return []
        self._emitted += 1
        batch = self._batch
        out: list[SourceRecord] = []
        if batch and (rel is not self._batch_rel or op is not self._batch_op):
            out = self._take()
            batch = self._batch
        if not batch:
            self._batch_op, self._batch_rel, self._batch_row = op, rel, row
        batch.append(image)
        if len(batch) >= _BATCH_MAX:
            out += self._take()
        return out

    def _take(self) -> list[SourceRecord]:
        """The held rows' ChangeEvents (rows _batch_row, _batch_row + 1, ...: nothing else takes a
        row number while rows are held, every other path takes them first)."""
        batch = self._batch
        if not batch:
            return []
        self._batch = []
        rel = self._batch_rel
        op = self._batch_op
        assert rel is not None and self._position is not None
        return self._make(
            op,
            rel.schema,
            rel.key_indexes,
            op is not Op.DELETE,
            batch,
            self._position,
            self._batch_row,
            self._ts_ms,
            self._txn_id,
        )

    def _event(
        self, op: Op, rel: _Relation, before: RowImage | None, after: RowImage | None
    ) -> ChangeEvent | None:
        row = self._row
        self._row += 1
        if row < self._skip_rows:
            return None
        assert self._position is not None
        image = after if after is not None else before
        assert image is not None
        key_of = rel.key_of
        key = None if key_of is None else key_of(image)
        self._emitted += 1
        return ChangeEvent(
            op, rel.schema, key, before, after, self._position.at_row(row), self._ts_ms, self._txn_id
        )

    def _row_change(self, kind: int, data: bytes) -> list[SourceRecord]:
        rel = self._relations.get(int.from_bytes(data[1:5], "big"))
        if rel is None:
            rel = self._rel(int.from_bytes(data[1:5], "big"))  # raises, naming the relation
        if self._skip_txn or not rel.captured:
            return []
        at = 5
        if kind == 0x49:  # 'I'
            fast = rel.read(data, 6)
            after = fast[0] if fast is not None else self._tuple(rel, data, 6, None)[0]
            return self._batched(Op.CREATE, rel, after)
        old: RowImage | None = None
        old_kind = data[at : at + 1]
        if old_kind in (b"K", b"O"):
            fast = rel.read(data, at + 1)
            old, at = fast if fast is not None else self._tuple(rel, data, at + 1, None)
        if kind == 0x44:  # 'D'
            if old is None:
                raise SourceProtocolError(f"pgoutput delete on {rel.schema.ref} without an old tuple")
            return self._batched(Op.DELETE, rel, old)
        if data[at : at + 1] != b"N":
            raise SourceProtocolError(f"pgoutput update on {rel.schema.ref} without a new tuple")
        fast = rel.read(data, at + 1)
        after = (
            fast[0]
            if fast is not None
            else self._tuple(rel, data, at + 1, old if old_kind == b"O" else None)[0]
        )
        key_of = rel.key_of
        if old is not None and key_of is not None and key_of(old) != key_of(after):
            # the key changed: a delete of the old key, then a create of the new one (Debezium's way)
            out = self._take()  # the held rows first: the events below take row numbers
            for event in (self._event(Op.DELETE, rel, old, None), self._event(Op.CREATE, rel, None, after)):
                if event is not None:
                    out.append(event)
            return out
        if old_kind != b"O":  # with DEFAULT, PostgreSQL logs no before image
            return self._batched(Op.UPDATE, rel, after)
        out = self._take()
        event = self._event(Op.UPDATE, rel, old, after)
        if event is not None:
            out.append(event)
        return out

    def _truncate(self, data: bytes) -> list[SourceRecord]:
        (count,) = _I32.unpack_from(data, 1)
        out: list[SourceRecord] = []
        for n in range(count):
            (relid,) = _I32.unpack_from(data, 6 + 4 * n)
            rel = self._rel(relid)
            if self._skip_txn or not rel.captured:
                continue
            row = self._row
            self._row += 1
            if row < self._skip_rows:
                continue
            assert self._position is not None
            self._emitted += 1
            out.append(
                ChangeEvent(
                    Op.TRUNCATE,
                    rel.schema,
                    None,
                    None,
                    None,
                    self._position.at_row(row),
                    self._ts_ms,
                    self._txn_id,
                )
            )
        return out
