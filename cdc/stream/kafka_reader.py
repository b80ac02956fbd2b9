"""Reading a pipeline's table topics back as typed change events, for `cdc sink`.

A read_committed consumer in a consumer group (``headwater-<pipeline>-sink`` unless configured), so
several `cdc sink` processes share the partitions. It subscribes to the table topics only
(``<pipeline>.<db>.<table>``), by name: those the pipeline's schema topic announces, subscribed
again whenever a new one is announced (schema_follow.py; a pattern made librdkafka ask for every
topic's metadata every 5 s, and found a new table's topic only then). Were the pipeline's own
one-partition topics in the subscription, the group's sticky balance would count them, and one of
two processes could get them while the other took every table partition. Offsets are never
committed to Kafka: the sinks store them with their data, and on each assignment the reader seeks
to what ``initial_offsets`` says for the newly assigned partitions (the caller reads it from the
sinks then, not once per process); before a partition is taken away, ``on_revoke`` lets the caller
commit what it consumed from it. Table schemas come from the pipeline's schema topic, which the
writer fills in the same Kafka transaction as the first event of each table version.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from cdc.config.models import KafkaStreamConfig
from cdc.core.errors import StreamGap, StreamUnavailable
from cdc.core.events import ChangeEvent, Op, RowImage
from cdc.core.positions import Position
from cdc.core.schemas import TableSchema
from cdc.stream.consume_direct import RawConsumer, raw_consumer
from cdc.stream.kafka_chunks import ChangeChunk
from cdc.stream.kafka_clients import admin_client, consume_ready, consumer_config
from cdc.stream.kafka_schemas import TableVersions
from cdc.stream.message_chunks import PartitionState, chunk_messages, chunk_runs
from cdc.stream.schema_follow import SchemaFollower
from cdc.stream.topics import TopicNames

__all__ = [
    "GAP_RECOVERY",
    "ConsumedChange",
    "KafkaChangeReader",
    "Watermarks",
    "partition_name",
    "reader_settings",
    "split_partition",
    "table_topic_pattern",
]

log = logging.getLogger(__name__)

_OPS = {op.value: op for op in Op}

GAP_RECOVERY = (
    "To go on, reset the sink (drop its database, schema or namespace, Headwater's own tables with it; "
    "`cdc bootstrap -c CONFIG TABLE --sink NAME` will refill it once it exists), then run "
    "`cdc sink -c CONFIG --accept-gap` once: sinks with a gap start from what each partition holds now. "
    "To keep it from happening again, give the table topics a retention longer than any sink may stay "
    "behind (retention.ms)."
)


def partition_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def table_topic_pattern(pipeline: str) -> str:
    """The pipeline's table topics as a pattern: ``<pipeline>.<db>.<table>``, whose parts never hold
    a dot (topics.py), so neither the pipeline's own topics nor another pipeline named
    ``<pipeline>.x`` match. (`cdc sink` subscribes by name, see the module docstring.)"""
    return "^" + re.escape(pipeline) + r"\.[^.]+\.[^.]+$"


def split_partition(name: str) -> tuple[str, int]:
    topic, _, partition = name.rpartition(":")
    return topic, int(partition)


@dataclass(frozen=True, slots=True)
class Watermarks:
    """A partition's log start offset (retention moves it) and its high watermark."""

    low: int
    high: int


@dataclass(frozen=True, slots=True)
class ConsumedChange:
    event: ChangeEvent
    partition: str  # "topic:partition"
    next_offset: int  # the offset to consume next once this event is applied


_CONSUMED_SETTERS = tuple(
    getattr(ConsumedChange, name).__set__ for name in ("event", "partition", "next_offset")
)


def _consumed(event: ChangeEvent, partition: str, next_offset: int) -> ConsumedChange:
    """``ConsumedChange(...)`` through the slots' own setters, once per consumed change: the frozen
    dataclass's ``__init__`` (``object.__setattr__`` by name) took ~1.0 us a change, this ~0.7
    (200k in memory, loaded machine; ~3% of poll's per-message work). A unit test pins that both
    build equal objects."""
    item = _new_consumed(ConsumedChange)
    s0, s1, s2 = _CONSUMED_SETTERS
    s0(item, event)
    s1(item, partition)
    s2(item, next_offset)
    return item


_new_consumed = object.__new__
TOPIC_LOOKUPS = 10  # table_partitions: how often an announced but unknown topic is asked for
# what AdminClient.list_offsets asks for: a partition's log start offset, and its end
_EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]


# librdkafka settings that bound what the consumer holds ahead of the sinks (a configured
# ``stream.properties`` entry wins). A fetch still returns at least one whole record batch, so a
# change up to stream.max_message_bytes is read whatever these say. Measured applying 200k changes
# to PostgreSQL on a quiet machine: unbounded (librdkafka's 64 MiB / 100k messages) 26.2k rows/s and
# 280 MiB; these 23.4k and 216 MiB; 4 MiB 15.9k and 204; 1 MiB with 5,000 messages 12.9k and 172 (the
# queue ran dry between fetches: half the rate).
# ``fetch.queue.backoff.ms``: once the queue is at those bounds, librdkafka postponed a partition's
# next fetch by its default 1000 ms, and the sink, having emptied the queue meanwhile, waited for it:
# a plain consumer with these bounds read 30-35k messages/s, and with 10 ms 217-229k (the 200k changes
# above, 147 MiB, pinned to one core); that wait was most of `cdc sink`'s idle wall time. With the
# prompt refetch a 2 MiB queue is enough (plain consumer: 2 MiB 177-182k messages/s, 8 MiB 144-164k,
# same run), which leaves memory for the batch the sink reads while it applies another.
_PREFETCH: dict[str, int] = {
    "queued.max.messages.kbytes": 2_048,
    "queued.min.messages": 20_000,
    "fetch.max.bytes": 4_194_304,
    "fetch.queue.backoff.ms": 10,
}
# A run whose every sink asks for it (``large_prefetch``: the Iceberg history, whose own RSS floor
# is 350-500 MiB) queues 16 MiB: the 200k-change Iceberg benchmark pinned to one core, three
# alternated pairs at load 7-8, took 133-136k rows per CPU-second against 112-128k with 2 MiB, at
# the same peak RSS (366-414 MiB), in fewer and larger fetches. The SQL sinks keep 2 MiB
# (PostgreSQL stays near 200 MiB).
_LARGE_PREFETCH: dict[str, int] = {
    **_PREFETCH,
    "queued.max.messages.kbytes": 16_384,
    "fetch.max.bytes": 16_777_216,
}

# the least time between two subscriptions (each one rebalances the group)
_RESUBSCRIBE_S = 0.5

# poll_chunks with the direct queue but no partition yet: how long one poll waits on the consumer
# queue (for the group's assignment) before it returns
_ASSIGNMENT_WAIT_S = 0.02

# messages per chunk: a chunk is decoded at once, and the JSON reader's working memory grows with
# it (~4 KiB per change at its peak); a poll's messages of one partition fill several chunks
_CHUNK_MESSAGES = 2_500


def reader_settings(config: KafkaStreamConfig, group: str, large_prefetch: bool = False) -> dict[str, Any]:
    """The librdkafka settings of `cdc sink`'s consumer (``large_prefetch``: 16 MiB queued, for
    sinks whose memory floor is far above it)."""
    settings = consumer_config(config, group)
    settings["partition.assignment.strategy"] = "cooperative-sticky"
    # the subscribed topics' metadata (by name: the pipeline's table topics only, not the broker's)
    settings.setdefault("topic.metadata.refresh.interval.ms", 5000)
    # A killed process's partitions go back to the group after this long without heartbeats.
    # (Static membership would hand them back at once, but a rejoining static member gets its
    # cached assignment, which misses topics created since: new tables would go unconsumed.)
    settings.setdefault("session.timeout.ms", 10000)
    # How long the broker holds a fetch while the partitions have nothing new (default 500 ms). It
    # is also how late a partition's end is marked: librdkafka marks it when the fetch after the one
    # that reached the end comes back empty, so `--until-caught-up` ended up to 0.5 s after its last
    # change. Data never waits on it: the broker answers as soon as there is any.
    settings.setdefault("fetch.wait.max.ms", 100)
    # Every assignment seeks to the sinks' offsets, so a reset only happens when retention
    # deleted messages under a running consumer: that is a gap to stop on, never a jump.
    settings["auto.offset.reset"] = "error"
    # Bound the prefetch: librdkafka's defaults queue up to 64 MiB and 100k messages per partition
    # ahead of the application (peak RSS applying 200k changes to PostgreSQL: 252 MiB unbounded,
    # ~200 with these bounds). What is queued beyond the next poll only costs memory; a fetch from
    # the broker takes about a millisecond.
    for key, value in (_LARGE_PREFETCH if large_prefetch else _PREFETCH).items():
        if key not in config.properties:
            settings[key] = value
    return settings


_EVENT_SETTERS = tuple(
    getattr(ChangeEvent, name).__set__
    for name in ("op", "schema", "key", "before", "after", "position", "source_ts_ms", "transaction_id")
)


def _change_event(
    op: Op,
    schema: TableSchema,
    key: RowImage | None,
    before: RowImage | None,
    after: RowImage | None,
    position: Position,
    source_ts_ms: int,
    transaction_id: str,
) -> ChangeEvent:
    """``ChangeEvent(...)`` through the slots' own setters, once per consumed change: the frozen
    dataclass's ``__init__`` sets each field by name through ``object.__setattr__``, twice as slow
    (ChangeEvent has no ``__post_init__`` to skip; a unit test pins that both build equal events)."""
    event = _new_event(ChangeEvent)
    s0, s1, s2, s3, s4, s5, s6, s7 = _EVENT_SETTERS
    s0(event, op)
    s1(event, schema)
    s2(event, key)
    s3(event, before)
    s4(event, after)
    s5(event, position)
    s6(event, source_ts_ms)
    s7(event, transaction_id)
    return event


_new_event = object.__new__


class KafkaChangeReader:
    def __init__(
        self,
        config: KafkaStreamConfig,
        pipeline: str,
        initial_offsets: Callable[[list[str]], Mapping[str, int]],
        group_id: str | None = None,
    ) -> None:
        self._config = config
        self._admin: AdminClient | None = None  # while offsets or partitions are asked (_asking)
        self._pipeline = pipeline
        self._names = TopicNames(pipeline)
        self._own = {self._names.schema, self._names.checkpoints, self._names.transactions}
        self._initial_offsets = initial_offsets
        self._group = group_id or f"headwater-{pipeline}-sink"
        self._schemas = TableVersions(config, pipeline)
        self._follower: SchemaFollower | None = None  # the announced table topics (start())
        self._unsubscribed = False  # the follower found topics not subscribed yet
        self._subscribed_at = -_RESUBSCRIBE_S
        self._consumer: Consumer | None = None
        self._raw: RawConsumer | None = None  # the table partitions' messages, if direct (start())
        self._names_of: dict[tuple[str | None, int | None], str] = {}  # (topic, partition) -> name
        self.assigned: set[str] = set()
        self.at_end: set[str] = set()  # partitions whose end was reached since their last message
        self.backlog = False  # the last poll returned all it was allowed to: more is waiting
        self.assignment_changed = time.monotonic()
        # Called with the partitions about to be taken away (before they are), on the polling
        # thread: the caller applies and commits what it consumed from them, so that the next owner
        # starts exactly there. ``lost`` is True when the group already gave them to another member
        # (this one missed its session): then nothing of them may be committed any more.
        self.on_revoke: Callable[[set[str], bool], None] | None = None
        self._partition_state = PartitionState(
            frozenset(self._own), self._names_of, self.at_end, self._on_error, self, _CHUNK_MESSAGES
        )
        # how a consume() batch becomes chunks (message_chunks.py; a test swaps in the reference)
        self.chunk_messages: Callable[[list[Message], PartitionState], list[ChangeChunk]] = chunk_messages

    def start(self, large_prefetch: bool = False) -> None:
        """Join the group; ``large_prefetch`` when every sink of the run asks for it (see
        reader_settings)."""
        settings = reader_settings(self._config, self._group, large_prefetch)
        consumer = Consumer(settings)
        # before the subscription, so that it can take every partition before it is assigned
        self._raw = raw_consumer(consumer)
        self._consumer = consumer
        follower = self._follower = SchemaFollower(self._config, self._pipeline, self._schemas)
        follower.start()
        self._follow()

    def _follow(self) -> None:
        """Subscribe again when the schema topic announced a table topic (on the polling thread:
        the rebalance it brings runs its callbacks inside a later poll, as any other). Only ever
        more topics: a partition leaves this process through the group, never through this. Each
        subscription is a rebalance of the whole group, so tables announced one after another (a
        new pipeline's first transactions) are taken together, at most once per _RESUBSCRIBE_S."""
        follower, consumer = self._follower, self._consumer
        if follower is None or consumer is None:
            return
        self._unsubscribed |= follower.poll()
        now = time.monotonic()
        if not self._unsubscribed or now - self._subscribed_at < _RESUBSCRIBE_S:
            return
        self._unsubscribed, self._subscribed_at = False, now
        consumer.subscribe(
            sorted(follower.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("subscribed to %d table topics", len(follower.topics))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        mine = [tp for tp in partitions if tp.topic not in self._own]
        offsets = self._initial_offsets([partition_name(tp.topic, tp.partition) for tp in mine])
        for tp in partitions:
            if tp.topic in self._own:
                continue
            stored = offsets.get(partition_name(tp.topic, tp.partition))
            # no offset given: from the start of what the partition holds (nothing is committed to
            # Kafka, and auto.offset.reset is "error")
            tp.offset = stored if stored is not None else OFFSET_BEGINNING
            self.assigned.add(partition_name(tp.topic, tp.partition))
            if self._raw is not None and not self._raw.forward(tp.topic, tp.partition):
                # its messages stay on the consumer queue, which poll_chunks reads first
                log.debug("kafka: %s:%d through consume()", tp.topic, tp.partition)
        if mine:
            log.info("assigned %d table partitions", len(mine))
        self.assignment_changed = time.monotonic()
        consumer.incremental_assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(consumer, partitions, lost=False)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(consumer, partitions, lost=True)

    def _release(self, consumer: Consumer, partitions: list[TopicPartition], lost: bool) -> None:
        names = {partition_name(tp.topic, tp.partition) for tp in partitions if tp.topic not in self._own}
        if names and self.on_revoke is not None:
            self.on_revoke(names, lost)
        self.assignment_changed = time.monotonic()
        self.assigned -= names
        self.at_end -= names
        if names:
            log.info("%s %d table partitions", "lost" if lost else "released", len(names))
        consumer.incremental_unassign(partitions)

    def watermarks(self, partitions: list[str]) -> dict[str, Watermarks]:
        """Each partition's log start offset and high watermark (the last stable offset, as a
        read_committed consumer reads), asked of the broker now."""
        timeout = self._config.request_timeout_ms / 1000
        wanted = [TopicPartition(*split_partition(name)) for name in partitions]
        try:
            low = self._offsets(wanted, _EARLIEST, timeout)
            high = self._offsets(wanted, _LATEST, timeout)
        finally:
            self._admin = None
        return {name: Watermarks(low[name], high[name]) for name in partitions}

    def _asking(self) -> AdminClient:
        """The admin client the offsets and partitions are asked of. Not the consuming consumer:
        its requests wait behind its fetch, which the broker holds fetch.wait.max.ms when nothing
        new arrives (default 500 ms: 87-500 ms per offsets call, 383-503 ms per named lookup, about
        0.5 s of every `--until-caught-up` run's end and 2 s of a four-table benchmark run; the
        admin client 1-5 ms). Made for each question and let go after it: its handle holds ~5 MiB,
        which counted in the run's peak RSS when it lived from the first assignment on."""
        if self._admin is None:
            self._admin = admin_client(self._config)
        return self._admin

    def _offsets(self, partitions: list[TopicPartition], spec: OffsetSpec, timeout: float) -> dict[str, int]:
        """``spec``'s offset of each partition (one request per broker)."""
        if not partitions:
            return {}
        asked = self._asking().list_offsets(
            {tp: spec for tp in partitions},
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=timeout,
        )
        out: dict[str, int] = {}
        for tp, answer in asked.items():
            name = partition_name(tp.topic, tp.partition)
            try:
                out[name] = answer.result().offset
            except KafkaException as exc:
                raise StreamUnavailable(f"no offsets of {name} within {timeout:g}s: {exc}") from exc
        return out

    def table_partitions(self) -> set[str]:
        """Every partition of the pipeline's table topics that exists now (whoever consumes it).

        The topics are those of the tables announced on the schema topic (the writer announces a
        table version in the same Kafka transaction as its first change, so every table topic that
        holds a change is among them; the topic is read again only when it grew), each described by
        name (:meth:`_asking`). Listing the broker's every topic took 0.2-0.8 s with the shared dev
        broker's 5,209, once at the end of every `cdc sink --until-caught-up`, which listed them to
        find topics not assigned yet."""
        assert self._consumer is not None, "start() first"
        timeout = self._config.request_timeout_ms / 1000
        schema = self._names.schema
        try:
            high = self._offsets([TopicPartition(schema, 0)], _LATEST, timeout)[f"{schema}:0"]
            out: set[str] = set()
            for topic in sorted({self._names.table(ref) for ref in self._schemas.tables(high)}):
                out.update(partition_name(topic, p) for p in self._partitions_of(topic, timeout))
        except KafkaException as exc:
            raise StreamUnavailable(f"no metadata from {self._config.bootstrap_servers}: {exc}") from exc
        finally:
            self._admin = None
        return out

    def _partitions_of(self, topic: str, timeout: float) -> list[int]:
        """The partitions of an announced table topic. A topic created a moment ago can still be
        unknown to the admin client's broker view (seen under load: the next lookup finds it), so
        an unknown one is asked again for up to a second before it counts as deleted since."""
        for attempt in range(TOPIC_LOOKUPS):
            found = self._asking().list_topics(topic, timeout=timeout).topics.get(topic)
            if found is not None and found.error is None:
                return list(found.partitions)
            if attempt + 1 < TOPIC_LOOKUPS:
                time.sleep(0.1)
        return []

    def poll(self, max_messages: int, timeout_s: float) -> list[ConsumedChange]:
        """:meth:`poll_chunks`'s messages decoded change by change, in order."""
        decode, loads, consumed = self._decode, orjson.loads, _consumed
        return [
            consumed(decode(loads(value)), chunk.partition, next_offset)
            for chunk in self.poll_chunks(max_messages, timeout_s)
            for value, next_offset in zip(chunk.values, chunk.next_offsets, strict=True)
        ]

    def poll_chunks(self, max_messages: int, timeout_s: float) -> list[ChangeChunk]:
        """:meth:`poll`'s messages undecoded, one chunk per partition (each in offset order)."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        self._follow()
        raw = self._raw
        if raw is not None and self.assigned:
            # The group's events first (rebalance callbacks run in here, and consumer-level
            # errors come out; no table message does while every partition is forwarded), then
            # the partitions' messages from the direct queue, waiting for the first at most
            # timeout_s (less when a group event arrives meanwhile). librdkafka also pauses every
            # assigned partition before it queues an incremental rebalance (rdkafka_cgrp.c,
            # "incremental rebalance"): what the direct queue held of them is outdated from then
            # on, so the reverse order would not leak a revoked partition's messages either (tried:
            # with it reversed, the poll made while a revoke waited read none of ~760 prefetched).
            messages = consumer.consume(max_messages, timeout=0)
            chunks = self.chunk_messages(messages, self._partition_state) if messages else []
            room = max_messages - len(messages)
            if room > 0 and self.assigned:
                runs, read = raw.consume(room, 0.0 if messages else timeout_s)
                chunks += chunk_runs(runs, self._partition_state)
                room -= read
            self.backlog = room <= 0
            return chunks
        # With the direct queue, the assignment made in a callback during this wait sends the
        # partitions' messages there, not here: a short wait returns to read them (a whole
        # timeout_s delayed the first data by up to that much).
        wait = timeout_s if raw is None else min(timeout_s, _ASSIGNMENT_WAIT_S)
        messages = consume_ready(consumer, max_messages, wait)
        self.backlog = len(messages) >= max_messages
        return self.chunk_messages(messages, self._partition_state)

    def events(self, values: Sequence[bytes]) -> list[ChangeEvent]:
        """The per-change decode of a chunk's values (what :meth:`poll` does per message)."""
        decode, loads = self._decode, orjson.loads
        return [decode(loads(value)) for value in values]

    def table_schema(self, version: str) -> TableSchema:
        found = self._schemas.known.get(version)
        return (found if found is not None else self._schemas.get(version))[0]

    def _on_error(self, error: KafkaError, name: str) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            self.at_end.add(name)
            return
        if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART and not error.fatal():
            # "Subscribed topic not available": an announced table's topic was deleted since. Not
            # an outage (raised, it retried forever and `--until-caught-up` never ended).
            log.debug("consuming %s: %s", self._pipeline, error.str())
            return
        if error.code() == KafkaError._AUTO_OFFSET_RESET:
            raise StreamGap(
                f"the stream has a gap: {name} no longer holds the messages this process was "
                f"about to consume ({error.str()}); they were deleted (retention) before the "
                f"sinks applied them. {GAP_RECOVERY}"
            )
        raise StreamUnavailable(f"consuming {self._pipeline}: {error.str()}")

    def _decode(self, envelope: Mapping[str, Any]) -> ChangeEvent:
        source = envelope["source"]
        version = source["schema_version"]
        found = self._schemas.known.get(version)
        schema, decode, key_indexes = found if found is not None else self._schemas.get(str(version))
        before, after = decode(envelope["before"]), decode(envelope["after"])
        key: RowImage | None = None
        image = after if after is not None else before
        if image is not None and key_indexes:
            key = tuple([image[i] for i in key_indexes])
        return _change_event(
            _OPS[envelope["op"]],
            schema,
            key,
            before,
            after,
            Position.parse(source["position"]),
            int(source["ts_ms"]),
            str(source["gtid"]),
        )

    def close(self) -> None:
        self._admin = None  # an AdminClient has no close(): its handle goes with the object
        if self._follower is not None:
            self._follower.close()
            self._follower = None
        if self._raw is not None:  # its queue goes before the consumer's handle does
            self._raw.close()
            self._raw = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
