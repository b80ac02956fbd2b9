"""ChangeEvent -> Kafka key and value bytes, in Debezium's envelope shape (JSON, no schema wrapper).

Value::

    {"before": {...} | null, "after": {...} | null,
     "source": {"version", "connector": "mariadb", "name", "ts_ms", "snapshot", "db", "table",
                "server_id", "gtid", "file", "pos", "row", "position", "schema_version"},
     "op": "c" | "u" | "d" | "r" | "t", "ts_ms": <processing time, ms>,
     "transaction": {"id", "total_order", "data_collection_order"} | null}

- ``source.server_id`` is the server that wrote the change (the GTID's server id), as in Debezium;
  ``source.pos`` is the offset of the transaction's GTID event, ``source.row`` the row's index in it,
  ``source.position`` our sortable position string (string order = change order).
- ``source.snapshot`` is ``"true"`` for snapshot reads (op ``r``), ``"repair"`` for the corrective
  changes of `cdc reconcile --repair`, and ``"false"`` otherwise; the vocabulary does not mark a
  snapshot's last row, so ``"last"`` is not emitted.
- ``transaction`` is filled when the stream's ``transaction_metadata`` is on, else null.

Key: a JSON object of the primary-key columns, ``{"id": 5}``, encoded like values. A table without
a primary key is keyed by its whole row image (``after``, or ``before`` for a delete): equal rows
share a key and a partition, which is the best a keyless table allows. A truncate (op ``t``) has a
null key and null images, as in Debezium; the writer sends it to every partition of the table's
topic so each partition's consumer sees it in order.

Values follow :mod:`cdc.stream.json_values`. Serialization uses orjson (measured ~4x faster than
the stdlib json for these envelopes; see ``benchmarks/envelope_bench.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from headwater_native import PackedMessages

from cdc.core.events import ChangeEvent, Op, RowImage, SourceRecord, TransactionEnd
from cdc.core.positions import LSN_FILE_BASE, Position
from cdc.core.schemas import Column, TableSchema
from cdc.stream.json_values import RowEncoder, row_encoder
from cdc.stream.native_rows import MessageMaker, RowPlan, dumps, row_plan

__all__ = [
    "CONNECTOR",
    "ENVELOPE_VERSION",
    "EnvelopeEncoder",
    "RunOfTransactions",
    "TableCodec",
    "TransactionOrder",
    "dumps",
]

CONNECTOR = "mariadb"
ENVELOPE_VERSION = "headwater-0.1.0"


@dataclass(frozen=True, slots=True)
class TransactionOrder:
    """Debezium's per-event transaction block: the event's rank in its transaction and in its table."""

    id: str
    total_order: int
    data_collection_order: int


@dataclass(frozen=True, slots=True)
class RunOfTransactions:
    """What :meth:`EnvelopeEncoder.transactions` took: ``records[start:stop]``, ``changes`` row
    changes (their ``messages``) and ``ends`` TransactionEnds whose row counts add up to
    ``end_rows``; ``last_end`` is the index of the last of those ends (-1 when none)."""

    stop: int
    messages: list[dict[str, bytes | None]] | PackedMessages  # PackedMessages when asked ``packed``
    changes: int
    ends: int
    end_rows: int
    last_end: int


class TableCodec:
    """Encoders for one table schema version, built once and reused for every row of that version."""

    __slots__ = ("db", "key_encoder", "key_plan", "parts", "plan", "row", "schema", "table", "version")

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.db = schema.db
        self.table = schema.table
        self.version = schema.version
        self.row: RowEncoder = row_encoder(schema.columns)
        by_name = {c.name: c for c in schema.columns}
        key_columns: tuple[Column, ...] = tuple(by_name[k] for k in schema.primary_key)
        self.key_encoder: RowEncoder | None = row_encoder(key_columns) if key_columns else None
        # the compiled equivalents (same bytes as dumps() of the dicts above; see native_rows)
        self.plan: RowPlan = row_plan(schema.columns)
        self.key_plan: RowPlan | None = row_plan(key_columns) if key_columns else None
        self.parts: tuple[bytes, bytes, bytes, bytes] | None = None  # see source_parts

    def key(self, event: ChangeEvent) -> dict[str, Any] | None:
        if event.op is Op.TRUNCATE:
            return None
        if self.key_encoder is not None:
            if event.key is not None:
                return self.key_encoder(event.key)
            image = event.after if event.after is not None else event.before
            if image is None:
                return None
            indexes = self.schema.key_indexes()
            return self.key_encoder(tuple(image[i] for i in indexes))
        image = event.after if event.after is not None else event.before
        return None if image is None else self.row(image)

    def image(self, row: RowImage | None) -> dict[str, Any] | None:
        return None if row is None else self.row(row)

    def key_bytes(self, event: ChangeEvent) -> bytes | None:
        """``dumps(self.key(event))``, through the compiled plans."""
        if event.op is Op.TRUNCATE:
            return None
        key_plan = self.key_plan
        if key_plan is not None:
            if event.key is not None:
                return key_plan.encode(event.key)
            image = event.after if event.after is not None else event.before
            if image is None:
                return None
            indexes = self.schema.key_indexes()
            return key_plan.encode(tuple(image[i] for i in indexes))
        image = event.after if event.after is not None else event.before
        return None if image is None else self.plan.encode(image)


class EnvelopeEncoder:
    """Builds the key and value bytes of change events for one pipeline."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self._codecs: dict[str, TableCodec] = {}

    def codec(self, schema: TableSchema) -> TableCodec:
        # The version is a fingerprint that includes db.table, so it names one table shape.
        codec = self._codecs.get(schema.version)
        if codec is None:
            codec = self._codecs[schema.version] = TableCodec(schema)
        return codec

    def value(
        self, event: ChangeEvent, transaction: TransactionOrder | None = None, ts_ms: int | None = None
    ) -> dict[str, Any]:
        """The envelope as a dict (what :meth:`encode` serializes)."""
        codec = self.codec(event.schema)
        position = event.position
        gtid = position.gtid
        op = event.op
        before = event.before
        after = event.after
        return {
            "before": None if before is None else codec.row(before),
            "after": None if after is None else codec.row(after),
            "source": self._source(codec, event, gtid.server_id, position.offset, position.row, True),
            "op": op.value,
            "ts_ms": time.time_ns() // 1_000_000 if ts_ms is None else ts_ms,
            "transaction": None
            if transaction is None
            else {
                "id": transaction.id,
                "total_order": transaction.total_order,
                "data_collection_order": transaction.data_collection_order,
            },
        }

    def encode(
        self, event: ChangeEvent, transaction: TransactionOrder | None = None, ts_ms: int | None = None
    ) -> tuple[bytes | None, bytes]:
        """(key bytes or None for a truncate, value bytes)."""
        codec = self.codec(event.schema)
        if transaction is not None:
            key = codec.key(event)
            value = dumps(self.value(event, transaction, ts_ms))
            return (None if key is None else dumps(key)), value
        value = self._value_bytes(codec, event, time.time_ns() // 1_000_000 if ts_ms is None else ts_ms)
        return codec.key_bytes(event), value

    def encode_change(self, event: ChangeEvent, ts_ms: int | None = None) -> tuple[bytes | None, bytes]:
        """:meth:`encode` without transaction metadata, for the writer's per-row loop (fewer calls)."""
        if ts_ms is None:
            ts_ms = time.time_ns() // 1_000_000
        schema = event.schema
        codec = self._codecs.get(schema.version)
        if codec is None:
            codec = self.codec(schema)
        key = event.key
        if key is not None and codec.key_plan is not None and event.op is not Op.TRUNCATE:
            return codec.key_plan.encode(key), self._value_bytes(codec, event, ts_ms)
        return codec.key_bytes(event), self._value_bytes(codec, event, ts_ms)

    # The hot path. Everything in ``source`` but the row index and the position is the same for every
    # row of a transaction in one table version, so it is serialized once per (transaction, table
    # version) and the value is spliced from bytes: no per-event envelope dict, and the position
    # string is built from the transaction's cached prefix and suffix. Same JSON as :meth:`value`
    # (a unit test decodes both and compares); measured 1.17x the dict path (benchmarks/envelope_bench.py).
    _template_key: tuple[object, ...] | None = None
    _template: tuple[bytes, bytes, bytes] = (b"", b"", b"")
    _template_ready = False

    def _value_bytes(self, codec: TableCodec, event: ChangeEvent, ts_ms: int) -> bytes:
        position = event.position
        _, _, offset, row, _, server, _, _ = position._key
        op = event.op
        key = _template_key(event, codec.version)
        if key != self._template_key:
            # The first row of a (transaction, table): the plain path. A template pays off only from
            # the second row on, and single-row transactions are common.
            self._template_key = key
            self._template_ready = False
            # the bytes of dumps(self.value(event, None, ts_ms)), images written by the compiled plan
            source_full = self._source(codec, event, server, offset, row, True)
            rest = b"".join(
                (b',"source":', dumps(source_full), b',"op":"', op.value.encode(), b'","ts_ms":',
                 str(ts_ms).encode(), b',"transaction":null}')
            )  # fmt: skip
            return codec.plan.envelope(event.before, event.after, b'{"before":', b',"after":', rest)
        if not self._template_ready:
            self._make_template(codec, event)
        source_head, position_head, position_tail = self._template
        return codec.plan.change(
            event.before,
            event.after,
            source_head,
            row,
            position_head,
            position_tail,
            _OP_BYTES[op._value_],
            ts_ms,
        )

    def _make_template(self, codec: TableCodec, event: ChangeEvent) -> None:
        """The cached source block (up to ``"row":``) and position string around the row index of
        the rows after a (transaction, table version)'s first."""
        position = event.position
        era, _, offset, row, _, server, _, _ = position._key
        source = self._source(codec, event, server, offset, row, False)
        prefix = position.to_string()
        # "mdb1:<file_seq>:<offset>:" (fixed widths, see cdc.core.positions); a later era's
        # "mdb2:<era>:" is 11 characters longer
        cut = 38 if era else 27
        head = prefix[:cut]
        tail = prefix[cut + 10 :]  # ":<gtid>:<base>"
        self._template = (dumps(source)[:-1] + b',"row":', head.encode(), tail.encode())
        self._template_ready = True

    def messages(
        self, maker: MessageMaker, records: list[SourceRecord], start: int, ts_ms: int | None = None
    ) -> tuple[int, list[dict[str, bytes | None]]]:
        """``(stop, messages)``: the Kafka messages of ``records[start:stop]`` in one compiled call,
        byte for byte what :meth:`encode_change` gives each (see native/headwater_native/src/batch.rs),
        for the changes that follow a (transaction, table version)'s first row, which this leaves
        (``stop == start``) to :meth:`encode_change`: that row sets up the template the rest share."""
        event = records[start]
        assert isinstance(event, ChangeEvent)
        schema = event.schema
        codec = self._codecs.get(schema.version)
        if codec is None:
            return start, []
        position = event.position
        read = event.op is Op.READ
        ts, txn = event.source_ts_ms, event.transaction_id
        if _template_key(event, codec.version) != self._template_key:
            return start, []
        if not self._template_ready:
            self._make_template(codec, event)
        source_head, position_head, position_tail = self._template
        made: tuple[int, list[dict[str, bytes | None]]] = maker.messages(
            records,
            start,
            codec.plan,
            codec.key_plan,
            schema,
            ts,
            txn,
            read,
            position._key,
            source_head,
            position_head,
            position_tail,
            time.time_ns() // 1_000_000 if ts_ms is None else ts_ms,
        )
        return made

    def transactions(
        self,
        maker: MessageMaker,
        records: list[SourceRecord],
        start: int,
        room: int,
        ts_ms: int | None = None,
        packed: bool = False,
        partition: int = -1,
    ) -> RunOfTransactions:
        """The messages of a run of whole small transactions of one table version from
        ``records[start]`` (a change), ends included, in one compiled call: each value byte for
        byte what :meth:`encode_change` gives it in that order, the first row of a transaction with
        the whole ``source`` block, the next ones in the template's order. It stops before anything
        else, or after the TransactionEnd whose row count brings the run's to ``room``.

        Single-row transactions each paid the first-row path here (a ``source`` dict, the position
        text, ``dumps``) and the capture loop's per-record Python: about two thirds of the writer
        thread's time on that workload (py-spy). ``packed``: the messages in one
        :class:`PackedMessages` buffer (for ``PackedMessages.produce``) instead of dicts, for
        ``partition`` (-1: the producer's partitioner; 0 for a one-partition topic)."""
        event = records[start]
        assert isinstance(event, ChangeEvent)
        schema = event.schema
        codec = self._codecs.get(schema.version)
        if codec is None:
            codec = self.codec(schema)
        parts = codec.parts
        if parts is None:
            parts = codec.parts = self._source_parts(codec)
        continues = _template_key(event, codec.version) == self._template_key
        args = (
            records,
            start,
            TransactionEnd,
            codec.plan,
            codec.key_plan,
            schema,
            parts,
            continues,
            room,
            time.time_ns() // 1_000_000 if ts_ms is None else ts_ms,
            "repair-",
            LSN_FILE_BASE,
        )
        messages: PackedMessages | list[dict[str, bytes | None]]
        if packed:
            stop, messages, changes, ends, end_rows, last_change = maker.transactions_packed(*args, partition)
        else:
            stop, messages, changes, ends, end_rows, last_change = maker.transactions(*args)
        if changes:
            # the next change continues the template of the last one taken, as after _value_bytes
            last = records[last_change]
            assert isinstance(last, ChangeEvent)
            self._template_key = _template_key(last, codec.version)
            self._template_ready = False
        last_end = -1
        if ends:
            last_end = stop - 1
            while records[last_end].__class__ is not TransactionEnd:
                last_end -= 1
        return RunOfTransactions(stop, messages, changes, ends, end_rows, last_end)

    def _source_parts(self, codec: TableCodec) -> tuple[bytes, bytes, bytes, bytes]:
        """The fixed bytes of a table version's ``source`` block, as :meth:`_source` writes them,
        around what differs per row (connector, ts_ms, snapshot, server_id, gtid, file, pos, row,
        position): see ``MessageMaker.transactions``."""
        head = dumps({"version": ENVELOPE_VERSION, "connector": ""})[:-2]  # ends with '"connector":"'
        name = b'","name":' + dumps(self.pipeline) + b',"ts_ms":'
        table = b',"db":' + dumps(codec.db) + b',"table":' + dumps(codec.table) + b',"server_id":'
        return head, name, table, dumps(codec.version)

    def _source(
        self, codec: TableCodec, event: ChangeEvent, server_id: int, offset: int, row: int, whole: bool
    ) -> dict[str, Any]:
        """The envelope's ``source`` block: the one builder for the dict path, a transaction's first
        row and the template of its next rows. ``whole=False`` leaves out ``row`` and ``position``
        (the template's caller appends them after ``schema_version``): the key order differs
        between the two, and the byte-exact differential test keeps it as it has always been."""
        position = event.position
        source: dict[str, Any] = {
            "version": ENVELOPE_VERSION,
            "connector": _connector(position),
            "name": self.pipeline,
            "ts_ms": event.source_ts_ms,
            "snapshot": _snapshot_flag(event.op, event.transaction_id),
            "db": codec.db,
            "table": codec.table,
            "server_id": server_id,
            "gtid": event.transaction_id,
            "file": position.file,
            "pos": offset,
        }
        if whole:
            source["row"] = row
            source["position"] = position.to_string()
        source["schema_version"] = codec.version
        return source


# keyed by the op's value: a str's hash is cached, an Enum member's __hash__ is a Python call per row
_OP_BYTES = {op.value: op.value.encode() for op in Op}


def _template_key(event: ChangeEvent, version: str) -> tuple[object, ...]:
    """What the changes sharing one template (their source block but for the row) have in common:
    the position but for the row, the table version, snapshot read or not, timestamp, transaction."""
    era, file_seq, offset, _, domain, server, seq, base = event.position._key
    return (
        era,
        file_seq,
        offset,
        domain,
        server,
        seq,
        base,
        version,
        event.op is Op.READ,
        event.source_ts_ms,
        event.transaction_id,
    )


def _connector(position: Position) -> str:
    """``source.connector``: "postgresql" for a PostgreSQL position (commit LSN + row, see
    cdc.core.positions.lsn_position; its LSN is in ``source.position``), else "mariadb"."""
    return CONNECTOR if position.lsn is None else "postgresql"


def _snapshot_flag(op: Op, transaction_id: str) -> str:
    """``source.snapshot``: "true" for a bootstrap's rows, "repair" for the reconciler's corrective
    changes (rows re-read from the source, and deletes of rows the source does not have), else
    "false". A repair's changes carry a transaction id starting with ``repair-``."""
    if transaction_id.startswith("repair-"):
        return "repair"
    return "true" if op is Op.READ else "false"
