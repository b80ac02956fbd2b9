"""KafkaStreamWriter: source records into Kafka, exactly once, through a transactional producer.

The daemon drives it::

    writer = KafkaStreamWriter(config, pipeline, server_id)
    restart = writer.start()            # None: never committed; else resume the source there
    writer.begin()
    for record in source:               # ChangeEvent, SchemaChange, TransactionEnd
        writer.write(record)
        if isinstance(record, TransactionEnd) and time_to_commit:
            writer.commit(record.restart)   # checkpoint + commit, atomically with the events
            writer.begin()

Each Kafka transaction carries whole source transactions plus the checkpoint that follows them, so a
read_committed consumer sees every change exactly once and a restart resumes just after the last
transaction it saw. ``init_transactions`` at start fences any older producer of the same pipeline
(transactional.id ``headwater-<pipeline>``) and settles the transaction it left open.

Memory stays flat whatever the size of a source transaction: messages are produced into the open
transaction as they come; librdkafka's local queue is bounded (100k messages / 64 MiB), and a full
queue (BufferError) is waited out by polling, which is the backpressure on the source.

Failures: a failed delivery or a commit that fails aborts the transaction and raises
StreamUnavailable (transient: resume from the checkpoint); a commit that keeps timing out raises
CommitStateUnknown (transient: the next start settles it and the checkpoint tells); being fenced
raises ProducerFenced (terminal: another ``cdc run`` owns the pipeline). A change whose value is over
``stream.max_message_bytes`` raises MessageTooLarge (terminal) before it is produced, naming the
table, the key and the size; table topics are created with a max.message.bytes that fits it (and
raised on existing topics), so nothing under the limit is refused by the broker.
"""

from __future__ import annotations

import datetime as dt
import logging

from confluent_kafka import KafkaError, KafkaException, Producer

from cdc.config.models import KafkaStreamConfig
from cdc.core.errors import (
    CommitStateUnknown,
    ProducerFenced,
    StreamUnavailable,
)
from cdc.core.events import ChangeEvent, Op, SchemaChange, SnapshotProgress, SourceRecord, TransactionEnd
from cdc.core.positions import RestartPoint
from cdc.core.schemas import TableRef
from cdc.stream.checkpoints import checkpoint_record, read_checkpoint
from cdc.stream.envelope import EnvelopeEncoder, RunOfTransactions, TransactionOrder, dumps
from cdc.stream.json_schema import schema_change_record, table_schema_record
from cdc.stream.kafka_batches import message_maker, too_large
from cdc.stream.kafka_clients import is_fenced, producer_config
from cdc.stream.kafka_producing import ProducerCalls
from cdc.stream.raw_produce import RawProducer, raw_producer
from cdc.stream.topic_admin import KafkaTopicAdmin, TopicAdmin
from cdc.stream.topics import TopicNames
from cdc.stream.transaction_markers import begin_marker, end_marker

__all__ = ["OPENING_KEY_SUFFIX", "KafkaStreamWriter", "KafkaTopicAdmin", "TopicAdmin"]

# the key of the tombstone each transaction opens with on the checkpoints topic (see begin())
OPENING_KEY_SUFFIX = ":open"

log = logging.getLogger(__name__)

_COMMIT_ATTEMPTS = 5


class KafkaStreamWriter(ProducerCalls):
    """Writes one pipeline's records to Kafka in transactions; see the module docstring."""

    def __init__(
        self,
        config: KafkaStreamConfig,
        pipeline: str,
        server_id: int,
        *,
        topic_admin: TopicAdmin | None = None,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.server_id = server_id  # our replica id on the source; recorded in checkpoints
        self.topics = TopicNames(pipeline)
        self._admin = topic_admin
        self._encoder = EnvelopeEncoder(pipeline)
        self._maker = message_maker(config)
        self._timeout = config.request_timeout_ms / 1000
        self._producer: Producer | None = None
        self._raw: RawProducer | None = None
        self._table_topics: dict[TableRef, tuple[str, int]] = {}
        self._targets: dict[str, tuple[str, int, str]] = {}  # schema version -> topic, partitions, db.table
        self._transaction_metadata = config.transaction_metadata
        self._tombstones = config.tombstones_on_delete
        self._max_value = config.max_message_bytes  # the largest change value let through
        self._published: set[str] = set()  # schema versions in committed transactions
        self._pending: set[str] = set()  # schema versions published in the open transaction
        self._in_transaction = False
        self._fenced: ProducerFenced | None = None
        self._delivery_error: KafkaError | None = None
        self._fatal_error: KafkaError | None = None
        self._since_poll = 0
        # counts of the open Kafka transaction (for the checkpoint record)
        self._events = 0
        self._source_transactions = 0
        self._table_counts: dict[str, int] = {}
        # the open source transaction (for transaction metadata)
        self._txn_id: str | None = None
        self._txn_total = 0
        self._txn_tables: dict[str, int] = {}
        # the snapshotter's state as of the last commit, and as of the open transaction's snapshot
        # rows (stored with them in its checkpoint record; dropped if it aborts)
        self.snapshot_state: str | None = None
        self._snapshot_pending: str | None = None
        self._opening_key = f"{pipeline}{OPENING_KEY_SUFFIX}".encode()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> RestartPoint | None:
        """Ensure the pipeline's topics, fence older producers, return the last committed restart point."""
        if self._admin is None:
            self._admin = KafkaTopicAdmin(self.config, self.pipeline)
        self._admin.ensure(
            self.topics.own_specs(self.config.replication_factor, self.config.transaction_metadata)
        )
        # linger.ms stays producer_config's 5 ms. 100 ms (one send per transaction, at its commit's
        # flush) cut the producer thread's CPU per commit 2,195 -> 414 us (benchmarks.commit_cost) and
        # 4.0 -> 2.0 us per change at 10k/s, but the rate steps held less often (base ahead in 4 of 8
        # alternated searches, behind in 2; one 70k step not held at 1.54 of 2 cores): ff6029e, reverted.
        settings = producer_config(self.config, self.pipeline)
        settings["on_delivery"] = self._on_delivery
        settings["delivery.report.only.error"] = True
        settings["error_cb"] = self._on_error
        producer = Producer(settings)
        try:
            producer.init_transactions(self._timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and (error.retriable() or error.code() == KafkaError._TIMED_OUT):
                raise StreamUnavailable(
                    f"init_transactions for pipeline {self.pipeline!r} on {self.config.bootstrap_servers} "
                    f"did not complete within {self._timeout:g}s: {error.str()}"
                ) from exc
            raise self._error(exc, "init_transactions") from exc
        self._producer = producer
        self._raw = raw_producer(producer)
        checkpoint = read_checkpoint(self.config, self.pipeline)
        self.snapshot_state = None if checkpoint is None else checkpoint.snapshot
        self._snapshot_pending = None
        log.info(
            "stream started: pipeline=%s transactional.id=headwater-%s checkpoint=%s",
            self.pipeline,
            self.pipeline,
            checkpoint.restart.to_string() if checkpoint else "none (first run)",
        )
        return None if checkpoint is None else checkpoint.restart

    def begin(self) -> None:
        producer = self._live_producer()
        if self._in_transaction:
            raise RuntimeError("begin() while a transaction is open: commit() or abort() first")
        try:
            producer.begin_transaction()
        except KafkaException as exc:
            raise self._error(exc, "begin_transaction") from exc
        self._in_transaction = True
        self._reset_counts()
        # The checkpoint's partition joins the transaction now, with the first changes' partition,
        # instead of when commit() writes the checkpoint: librdkafka registers a partition with the
        # transaction (AddPartitionsToTxn) when a message for it is produced, and the broker verifies
        # a transaction's first batch on a partition with its coordinator (KIP-890), so a partition
        # first written at commit put two round trips in every commit, in front of EndTxn. The
        # record is a tombstone under its own key (read_checkpoint reads the pipeline's key only;
        # compaction drops it).
        self._produce(self.topics.checkpoints, self._opening_key, None, 0)

    def write(self, record: SourceRecord) -> None:
        if not self._in_transaction:
            raise RuntimeError("write() outside a transaction: call begin() first")
        if isinstance(record, ChangeEvent):
            self._write_change(record)
        elif isinstance(record, TransactionEnd):
            self._write_transaction_end(record)
        elif isinstance(record, SchemaChange):
            key = str(record.table).encode()
            self._produce(self.topics.schema, key, dumps(schema_change_record(record)))
        elif isinstance(record, SnapshotProgress):
            # stored in this transaction's checkpoint, with the snapshot rows written before it
            self._snapshot_pending = record.state
        else:  # pragma: no cover - the union is closed
            raise TypeError(f"not a source record: {type(record).__name__}")

    def write_changes(self, records: list[SourceRecord], start: int) -> int:
        """Write ``records[start:]`` up to the first that is not a ChangeEvent; return its index.

        What ``write`` does for each, a run at a time (kafka_batches): the first change of a
        (transaction, table version) and anything the compiled run does not take go one by one."""
        if not self._in_transaction:
            raise RuntimeError("write_changes() outside a transaction: call begin() first")
        i, end = start, len(records)
        per_row = self._transaction_metadata
        while i < end:
            event = records[i]
            if event.__class__ is not ChangeEvent:
                break
            assert isinstance(event, ChangeEvent)
            version = event.schema.version
            target = self._targets.get(version)
            if per_row or target is None or (version not in self._published and version not in self._pending):
                self._write_change(event)
                i += 1
                continue
            stop, messages = self._encoder.messages(self._maker, records, i)
            if stop == i:
                self._write_change(event)
                i += 1
                continue
            topic, _, name = target
            self._table_counts[name] = self._table_counts.get(name, 0) + stop - i
            self._events += stop - i
            self._produce_batch(topic, messages)
            i = stop
        return i

    def write_transactions(self, records: list[SourceRecord], start: int, room: int) -> RunOfTransactions:
        """Write ``records[start:]`` (a change first) up to the first record that is neither a change
        of the same table version nor a TransactionEnd, or through the end whose row count brings the
        run's to ``room``: what ``write`` does for each, transaction ends included, in one compiled
        call (EnvelopeEncoder.transactions). What that does not take (a table version's first
        change, transaction metadata, a truncate, ...) goes through ``write_changes``."""
        if not self._in_transaction:
            raise RuntimeError("write_transactions() outside a transaction: call begin() first")
        event = records[start]
        assert isinstance(event, ChangeEvent)
        version = event.schema.version
        target = self._targets.get(version)
        if (
            self._transaction_metadata
            or target is None
            or (version not in self._published and version not in self._pending)
        ):
            return RunOfTransactions(self.write_changes(records, start), [], 0, 0, 0, -1)
        topic, partitions, name = target
        # a one-partition topic's messages name partition 0: librdkafka skips its partitioner
        # (a crc32 of each key), and every key goes there either way (PackedMessages)
        partition = 0 if partitions == 1 else -1
        run = self._encoder.transactions(self._maker, records, start, room, packed=True, partition=partition)
        if run.stop == start:
            return RunOfTransactions(self.write_changes(records, start), [], 0, 0, 0, -1)
        self._table_counts[name] = self._table_counts.get(name, 0) + run.changes
        self._events += run.changes
        self._source_transactions += run.ends
        messages = run.messages
        if messages:
            assert not isinstance(messages, list)  # packed=True
            self._produce_packed(topic, messages)
        return run

    def commit(self, checkpoint: RestartPoint) -> None:
        """Produce the checkpoint and commit the transaction: events and checkpoint land together."""
        producer = self._live_producer()
        if not self._in_transaction:
            raise RuntimeError("commit() outside a transaction: call begin() first")
        self._check_deliveries()
        value = checkpoint_record(
            self.pipeline,
            checkpoint,
            dt.datetime.now(dt.UTC),
            self._events,
            self._source_transactions,
            self._table_counts,
            self.server_id,
            self._snapshot_pending if self._snapshot_pending is not None else self.snapshot_state,
        )
        # partition 0 explicitly: the reader reads only that one, whatever the topic was created with
        self._produce(self.topics.checkpoints, self.pipeline.encode(), value, 0)
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            try:
                producer.commit_transaction(self._timeout)
                break
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if is_fenced(error):
                    raise self._error(exc, "commit_transaction") from exc
                if error.retriable():
                    # librdkafka: a retriable commit error is retried by calling commit again
                    log.warning(
                        "commit_transaction attempt %d/%d: %s", attempt, _COMMIT_ATTEMPTS, error.str()
                    )
                    if attempt == _COMMIT_ATTEMPTS:
                        self._in_transaction = False
                        raise CommitStateUnknown(
                            f"commit of pipeline {self.pipeline!r} still unconfirmed after "
                            f"{_COMMIT_ATTEMPTS} attempts ({error.str()}); restart reads the checkpoint"
                        ) from exc
                    continue
                if error.txn_requires_abort():
                    self._abort_quietly()
                    raise StreamUnavailable(
                        f"commit of pipeline {self.pipeline!r} failed and was aborted: {error.str()}"
                    ) from exc
                raise self._error(exc, "commit_transaction") from exc
        self._in_transaction = False
        self._published |= self._pending
        self._pending.clear()
        if self._snapshot_pending is not None:
            self.snapshot_state, self._snapshot_pending = self._snapshot_pending, None
        log.debug(
            "committed: pipeline=%s restart=%s events=%d", self.pipeline, checkpoint.to_string(), self._events
        )

    def abort(self) -> None:
        if not self._in_transaction:  # also after a failed start(): nothing to abort, no producer
            return
        producer = self._live_producer()
        self._in_transaction = False
        self._pending.clear()
        self._snapshot_pending = None
        self._delivery_error = None
        try:
            self._abort_transaction(producer)
        except KafkaException as exc:
            raise self._error(exc, "abort_transaction") from exc

    def close(self) -> None:
        """Abort an open transaction (best effort) and release the producer; idempotent."""
        producer, self._producer = self._producer, None
        self._raw = None
        if producer is None:
            return
        if self._in_transaction and self._fenced is None:
            self._in_transaction = False
            try:
                self._abort_transaction(producer)
            except KafkaException as exc:
                log.warning("abort on close failed (the broker aborts it on timeout): %s", exc)
        producer.close()

    # -- records -------------------------------------------------------------------------------

    def _write_change(self, event: ChangeEvent) -> None:
        schema = event.schema
        version = schema.version
        target = self._targets.get(version)  # hot path: one lookup by the interned version string
        if target is None:
            topic, partitions = self._table_topic(schema.ref)
            target = self._targets[version] = (topic, partitions, f"{schema.db}.{schema.table}")
        topic, partitions, name = target
        if version not in self._published and version not in self._pending:
            record = table_schema_record(self.pipeline, schema, event.position)
            self._produce(self.topics.schema, str(schema.ref).encode(), dumps(record))
            self._pending.add(version)
        table = self._table_counts
        table[name] = table.get(name, 0) + 1
        self._events += 1
        order = self._transaction_order(event, name) if self._transaction_metadata else None
        key, value = self._encoder.encode(event, order) if order else self._encoder.encode_change(event)
        if len(value) > self._max_value:
            raise too_large(event, key, len(value), self._max_value)
        op = event.op
        if op is Op.TRUNCATE:
            for partition in range(partitions):
                self._produce(topic, None, value, partition)
            return
        self._produce(topic, key, value)
        if op is Op.DELETE and self._tombstones:
            self._produce(topic, key, None)

    def _transaction_order(self, event: ChangeEvent, table: str) -> TransactionOrder:
        txn_id = event.transaction_id
        if txn_id != self._txn_id:
            self._txn_id = txn_id
            self._txn_total = 0
            self._txn_tables = {}
            key, value = begin_marker(txn_id, event.source_ts_ms)
            self._produce(self.topics.transactions, key, value)
        self._txn_total += 1
        count = self._txn_tables[table] = self._txn_tables.get(table, 0) + 1
        return TransactionOrder(txn_id, self._txn_total, count)

    def _write_transaction_end(self, end: TransactionEnd) -> None:
        self._source_transactions += 1
        if self.config.transaction_metadata and end.transaction_id == self._txn_id:
            key, value = end_marker(end.transaction_id, self._txn_total, self._txn_tables, end.source_ts_ms)
            self._produce(self.topics.transactions, key, value)
        self._txn_id = None
        self._txn_total = 0
        self._txn_tables = {}

    def _table_topic(self, ref: TableRef) -> tuple[str, int]:
        known = self._table_topics.get(ref)
        if known is None:
            assert self._admin is not None  # set by start()
            spec = self.topics.table_spec(
                ref, self.config.partitions, self.config.replication_factor, self.config.max_message_bytes
            )
            partitions = self._admin.ensure((spec,))[spec.name]
            known = self._table_topics[ref] = (spec.name, partitions)
            log.info("table topic: %s -> %s (%d partitions)", ref, spec.name, partitions)
        return known

    def _reset_counts(self) -> None:
        self._events = 0
        self._source_transactions = 0
        self._table_counts = {}
        self._txn_id = None
        self._txn_total = 0
        self._txn_tables = {}
