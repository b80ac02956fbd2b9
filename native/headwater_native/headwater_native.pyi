"""Headwater's compiled hot path (native/headwater_native/src/lib.rs)."""

from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

__version__: str

class RowPlan:
    """How one table version's row images become JSON objects; built once per schema version.

    ``heads[i]`` is the bytes before column i's value (``{"name":`` then ``,"name":``); ``kinds[i]``
    0 auto (null/bool/int/str), 1 bytes as base64, 2 naive datetime, 3 UTC datetime ("Z"), 4 always
    the fallback, 5 decimal.Decimal in plain notation; ``fsps[i]`` the datetime's fraction digits; ``fallbacks[i](value)`` the value's JSON
    bytes for anything not written natively.
    """

    def __init__(
        self,
        heads: Sequence[bytes],
        kinds: Sequence[int],
        fsps: Sequence[int],
        fallbacks: Sequence[Callable[[Any], bytes]],
    ) -> None: ...
    def encode(self, row: tuple[Any, ...]) -> bytes:
        """The row's JSON object."""
    def envelope(
        self,
        before: tuple[Any, ...] | None,
        after: tuple[Any, ...] | None,
        head: bytes,
        middle: bytes,
        tail: bytes,
    ) -> bytes:
        """``head + before + middle + after + tail`` with each image encoded (null when None)."""
    def change(
        self,
        before: tuple[Any, ...] | None,
        after: tuple[Any, ...] | None,
        source_head: bytes,
        row: int,
        position_head: bytes,
        position_tail: bytes,
        op: bytes,
        ts_ms: int,
    ) -> bytes:
        """A change envelope from its transaction's cached source block: ``{"before":..,"after":..,
        "source":`` + source_head + row + ``,"position":"`` + position_head + row in 10 digits +
        position_tail + ``"},"op":"`` + op + ``","ts_ms":`` + ts_ms + ``,"transaction":null}``."""

class RowsPlan:
    """How one table shape's binlog row images become tuples; built once per TABLE_MAP by
    ``cdc.sources.mariadb.native_rows`` (which documents the column kinds).

    Each column is ``(kind, size, extra, nullable, helper)``: integers, floats, YEAR, BIT, valid
    UTF-8 text and binary strings are made natively; other values' bytes go to ``helper``.
    """

    def __init__(self, columns: Sequence[tuple[int, int, int, bool, Any]]) -> None: ...
    def decode_rows(self, data: bytes, pos: int, end: int) -> list[tuple[Any, ...]]:
        """Full row images between ``pos`` and ``end`` of ``data`` (write and delete events)."""
    def decode_updates(
        self, data: bytes, pos: int, end: int
    ) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
        """(before, after) image pairs between ``pos`` and ``end`` (update events)."""

class EventMaker:
    """The ChangeEvents of a write or delete rows event, built in one call (slots filled as
    ``object.__setattr__`` fills them); see ``cdc.sources.mariadb.native_rows.EVENT_MAKER``."""

    def __init__(
        self, event_cls: type, position_cls: type, gtid_cls: type | None = None, end_cls: type | None = None
    ) -> None: ...
    def transaction_start(
        self, file_pos: Any, domain: int, server_id: int, seq: int, offset: int, context: Any
    ) -> tuple[Any, Any, str]:
        """``(Gtid(domain, server_id, seq), file_pos.in_same_file(gtid, offset, 0, context), str(gtid))``
        without the range checks (needs ``gtid_cls``)."""
    def transaction_end(
        self, transaction_id: str, last_position: Any, row_count: int, source_ts_ms: int, next_offset: int
    ) -> Any:
        """``TransactionEnd(transaction_id, last_position, row_count, source_ts_ms, next_offset)`` (needs
        ``end_cls``)."""
    def changes(
        self,
        op: Any,
        schema: Any,
        key_indexes: Sequence[int],
        inserted: bool,
        images: list[tuple[Any, ...]],
        tx_pos: Any,
        row: int,
        ts_ms: int,
        transaction_id: str,
    ) -> list[Any]:
        """One ChangeEvent per image (``after`` if ``inserted``, else ``before``), at rows
        ``row``, ``row + 1``... of the transaction at ``tx_pos``; key None if ``key_indexes`` is empty."""
    def updates(
        self,
        ops: tuple[Any, Any, Any],
        schema: Any,
        key_indexes: Sequence[int],
        pairs: list[tuple[tuple[Any, ...], tuple[Any, ...]]],
        tx_pos: Any,
        row: int,
        ts_ms: int,
        transaction_id: str,
    ) -> list[Any] | None:
        """The ChangeEvents of ``(before, after)`` pairs from row ``row``: ``ops[0]`` (update) where the
        key stays, else ``ops[1]`` (delete, old key) then ``ops[2]`` (create, new key); None if a row
        index could pass the maximum."""

class MessageMaker:
    """The Kafka messages of a run of change events in one call; see ``cdc.stream.kafka_batches``
    and ``EnvelopeEncoder.messages`` (native/headwater_native/src/batch.rs)."""

    def __init__(
        self,
        event_cls: type,
        ops: Sequence[tuple[Any, bytes]],
        read_op: Any,
        delete_op: Any,
        tombstones: bool,
        max_value: int,
        position_cls: type | None = None,
    ) -> None: ...
    def messages(
        self,
        records: list[Any],
        start: int,
        plan: RowPlan,
        key_plan: RowPlan | None,
        schema: Any,
        ts: int,
        transaction_id: str,
        read: bool,
        pos_key: tuple[Any, ...],
        source_head: bytes,
        position_head: bytes,
        position_tail: bytes,
        ts_ms: int,
    ) -> tuple[int, list[dict[str, bytes | None]]]:
        """``(stop, messages)``: ``{"key", "value"}`` for each change of ``records[start:stop]`` (and a
        tombstone after a delete), stopping at the first record the template does not describe."""
    def transactions(
        self,
        records: list[Any],
        start: int,
        end_cls: type,
        plan: RowPlan,
        key_plan: RowPlan | None,
        schema: Any,
        parts: tuple[bytes, bytes, bytes, bytes],
        continues: bool,
        room: int,
        ts_ms: int,
        repair_prefix: str,
        lsn_base: str,
    ) -> tuple[int, list[dict[str, bytes | None]], int, int, int, int]:
        """``(stop, messages, changes, ends, end_rows, last_change)`` for a run of whole transactions
        of one table version, their TransactionEnds included (``EnvelopeEncoder.transactions``)."""
    def transactions_packed(
        self,
        records: list[Any],
        start: int,
        end_cls: type,
        plan: RowPlan,
        key_plan: RowPlan | None,
        schema: Any,
        parts: tuple[bytes, bytes, bytes, bytes],
        continues: bool,
        room: int,
        ts_ms: int,
        repair_prefix: str,
        lsn_base: str,
        partition: int = -1,
    ) -> tuple[int, PackedMessages, int, int, int, int]:
        """What ``transactions`` gives, the messages in one ``PackedMessages`` buffer, for
        ``partition`` (-1: the producer's partitioner; 0: a one-partition topic's only one)."""

# -- bootarrow: snapshot chunks from the server's text to Arrow columns (src/snapshot_text.rs) --

def text_columns(
    rows: Sequence[tuple[bytes | None, ...]], ncols: int
) -> list[tuple[bytes, bytes, bytes | None, int]]:
    """Each column of ``rows`` as a ``large_binary`` Arrow array's ``(data, offsets, validity,
    null_count)``; ``validity`` None when the column has no null (snapshotter/text_columns.py)."""

def bytea_hex(data: bytes, offsets: bytes, n: int) -> tuple[bytes, bytes]:
    """PostgreSQL's ``\\x`` hex text of ``n`` binary values given as a ``large_binary`` array's data
    and ``n + 1`` offsets: the ``large_string`` array's ``(data, offsets)``."""

# -- embpg: embedded mode's columns from the captured row images (src/image_columns.rs) --------

def image_columns(
    images: list[tuple[Any, ...]], codes: Sequence[int]
) -> list[tuple[int, bytes | None, bytes, bytes | None] | None] | None:
    """Each column of ``images`` coded non-zero (codes: cdc/daemon/embedded_columns.py) as an Arrow
    array's ``(null_count, validity or None, values or offsets, data or None)``, None for a column
    coded 0; None for the whole chunk where embedded_columns' checks refuse it (a value's class, an
    integer out of range, a non-finite double, a lone surrogate, a zoned DATETIME)."""

def position_texts(
    events: list[Any], format_tag: str, era_tag: str, lsn_tag: str, lsn_base: str
) -> tuple[bytes, bytes] | None:
    """``e.position.to_string()`` of each event as a string array's ``(offsets, data)``, read from
    each position's ``_key``; None when a key is not as cdc/core/positions.py makes it."""

# -- embpg2: PostgreSQL's binary COPY rows from Arrow buffers (src/copy_binary.rs) -------------

def copy_binary_rows(
    columns: Sequence[tuple[int, int, Any | None, Any, Any | None, int, int]], n: int
) -> bytes:
    """Rows ``0..n`` in PostgreSQL's binary COPY format (no header or trailer), from each column's
    ``(code, offset, validity or None, values, data or None, precision, scale)``: an Arrow array's
    offset and buffers (codes: sinks/sql/pg_binary_copy.py). ValueError on an unknown code or
    buffers shorter than the rows."""

# sinkdecode: src/envelope_columns.rs
class EnvelopePlan:
    """How one table version's change envelopes become column buffers; built once per schema
    version by ``cdc.stream.native_columns`` (which documents the column kinds)."""

    def __init__(
        self, names: Sequence[str], kinds: Sequence[int], key: Sequence[int], version: str
    ) -> None: ...
    def decode(
        self, values: Sequence[bytes]
    ) -> list[tuple[bytes | None, bytes, bytes | None, bytes | None, bytes | None]] | str:
        """Per column (op, position, ts_ms, gtid, then the image each change leaves): ``(validity
        bitmap or None, values, text bytes or None, decoded offsets, decoded bytes)`` (the last two
        for base64 text only); or why it refuses the chunk. A ``PackedValues`` is read in place."""

# -- consume (src/consume_runs.rs) -------------------------------------------------------------

def message_runs(messages: list[Any]) -> list[Any]:
    """A ``Consumer.consume()`` batch (confluent_kafka Messages) in order, as runs of one partition:
    ``(topic, partition, [value, ...], [next_offset, ...])`` (tombstones left out), and each message
    that carries an error (an end-of-partition mark included) as itself, between the runs."""

# -- caploop (src/event_loop.rs) ---------------------------------------------------------------

class EventLoop:
    """The stream decoder's common transactions, decoded whole in one call; see
    ``cdc.sources.mariadb.compiled_loop``."""

    def __init__(
        self,
        event_cls: type,
        position_cls: type,
        gtid_cls: type,
        end_cls: type,
        state_cls: type,
        context_cls: type,
        ops: tuple[Any, Any, Any],
        by_id: dict[int, Any],
    ) -> None: ...
    def register(
        self, body: bytes, by_id_value: Any, schema: Any, plan: RowsPlan | None, key_indexes: list[int]
    ) -> None:
        """A TABLE_MAP body compiled by the Python decoder (``plan`` None: a table not captured)."""
    def run(
        self,
        events: list[bytes],
        start: int,
        file_pos: Any | None,
        tracking: tuple[int, Any, Any] | None,
    ) -> tuple[int, list[Any], Any | None, tuple[int, Any, Any] | None, tuple[Any, int, int] | None]:
        """``(stop, records, last Gtid or None, tracking after, foreign)``: the whole transactions it
        takes from ``events[start]`` on; ``stop`` is the first event left to the Python path;
        ``foreign``: ``(tx_pos, next_offset, ts_ms)`` of the last one taken when it touched no
        captured table (it stops after such a transaction), else None."""

def split_packets(data: bytes, cut: int) -> tuple[list[bytes], int]:
    """``(events, used)``: the binlog events of the complete event packets at the start of ``data``
    (OK byte and ``cut`` checksum bytes removed), and the bytes they took."""

# -- capbulk: a run's messages into librdkafka without a Python object each (src/produce_direct.rs)

class PackedMessages:
    """The keys and values of a run of Kafka messages in one buffer (``MessageMaker.transactions_packed``)."""

    @property
    def partition(self) -> int: ...
    def __len__(self) -> int: ...
    def pairs(self, start: int = 0) -> list[tuple[bytes | None, bytes | None]]:
        """``(key, value)`` of each message from ``start`` on (None: a null key or value)."""
    def dicts(self, start: int = 0) -> list[dict[str, bytes | None]]:
        """``{"key", "value"}`` of each message from ``start`` on, as ``Producer.produce_batch`` takes them."""
    def produce(self, producer: RawProducer, topic: str, start: int) -> tuple[int, int]:
        """``(taken, error)``: the messages from ``start`` on enqueued in one ``rd_kafka_produce_batch``
        (a prefix of them) and the librdkafka error code of the first refused one (0: none)."""

class RawProducer:
    """A confluent_kafka Producer's librdkafka handle, checked (``cdc.stream.raw_produce``)."""

    def __init__(
        self, producer: Any, opaque: int, topic_new: int, topic_destroy: int, produce_batch: int
    ) -> None: ...

# -- consume: table messages out of librdkafka without a Message object each (src/consume_direct.rs)

class RawConsumer:
    """A confluent_kafka Consumer's table partitions read through a librdkafka queue of our own
    (``cdc.stream.consume_direct``)."""

    def __init__(self, consumer: Any, functions: Sequence[int]) -> None: ...
    def forward(self, topic: str, partition: int) -> bool:
        """The partition's messages go to our queue from now on (call before it is assigned)."""
    def consume(self, max_messages: int, timeout_s: float) -> tuple[list[Any], int]:
        """``(runs, messages read)``: runs as ``message_runs`` gives them, except that a run's values
        are one ``PackedValues`` and a message carrying an error is ``(topic, partition, (code,
        reason))``."""
    def close(self) -> None:
        """Our queue destroyed; call before the Consumer closes."""

# pollthread: src/packed_values.rs
class PackedValues(Sequence[bytes]):
    """Message values back to back in one buffer, read as a sequence of bytes (made on indexing);
    a slice with step 1 shares the buffer."""

    def __init__(self, values: Sequence[bytes]) -> None: ...
    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]:
        """A PackedValues sharing the buffer for a step of 1, else a list of bytes."""
    def __iter__(self) -> Iterator[bytes]: ...
    @staticmethod
    def join(parts: Sequence[PackedValues]) -> PackedValues:
        """The values of ``parts`` in order, in one new buffer."""
    @property
    def nbytes(self) -> int: ...
