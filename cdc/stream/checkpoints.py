"""Checkpoints: where capture resumes, written in the same Kafka transaction as the events before it.

``<pipeline>.__checkpoints`` is compacted with one partition, keyed by the pipeline name. A record's
value::

    {"pipeline": "wiki", "server_id": 5401, "restart_point": "<RestartPoint string>",
     "position": "<Position string>", "gtid": "0-1-42", "committed_at": "2024-05-01T12:00:00.123456Z",
     "counts": {"events": 1200, "source_transactions": 3, "tables": {"wikidb.page": 1200}}}

Each transaction also opens with a tombstone keyed ``<pipeline>:open`` on the same partition (the
writer's begin(): the partition joins the transaction before the commit); readers skip that key.
``counts`` describe the Kafka transaction that carried the checkpoint; ``server_id`` is the writer's
replica id on the source. A restart point read from a server also records that server's
``@@server_id`` and the GTID state at its transaction's start (in its text, ``+source=..+gtids=..``,
and, for people reading the topic, as ``source_server_id`` and ``gtid_state``): `cdc run` pointed at
another server (a promoted replica) resumes there by that GTID state (issue 8, item 16).

Reading the checkpoint back uses a read_committed consumer up to the end of the partition (its
tail first, see :func:`read_checkpoint`): aborted or still open transactions are invisible, so the
last value seen is the last committed checkpoint.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from cdc.config.models import KafkaStreamConfig
from cdc.core.errors import PositionFormatError, StreamUnavailable
from cdc.core.positions import RestartPoint
from cdc.stream.kafka_clients import consumer_config
from cdc.stream.topics import TopicNames

__all__ = ["Checkpoint", "checkpoint_record", "parse_checkpoint", "read_checkpoint"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last committed checkpoint of a pipeline."""

    restart: RestartPoint
    position: str  # the restart point's transaction position, sortable
    gtid: str
    committed_at: dt.datetime  # UTC, when the writer produced it (just before the commit)
    events: int = 0  # change events in the Kafka transaction that carried it
    source_transactions: int = 0
    tables: tuple[tuple[str, int], ...] = field(default=())  # ("db.table", events), sorted
    server_id: int | None = None  # the writer's replica id on the source (config source.server_id)
    snapshot: str | None = None  # the snapshotter's state (SnapshotProgress.state) as of this commit


def _utc_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def checkpoint_record(
    pipeline: str,
    restart: RestartPoint,
    committed_at: dt.datetime,
    events: int,
    source_transactions: int,
    tables: Mapping[str, int],
    server_id: int | None = None,
    snapshot: str | None = None,
) -> bytes:
    extra: dict[str, object] = {} if snapshot is None else {"snapshot": snapshot}
    context = restart.context
    if context is not None:
        extra |= {"source_server_id": context.server_id, "gtid_state": str(context.gtid_state)}
    return orjson.dumps(
        {
            **extra,
            "pipeline": pipeline,
            "server_id": server_id,
            "restart_point": restart.to_string(),
            "position": restart.transaction.to_string(),
            "gtid": str(restart.transaction.gtid),
            "committed_at": _utc_text(committed_at),
            "counts": {
                "events": events,
                "source_transactions": source_transactions,
                "tables": dict(sorted(tables.items())),
            },
        }
    )


def parse_checkpoint(value: bytes) -> Checkpoint:
    """Load a checkpoint record; refuses incomplete input (PositionFormatError)."""
    try:
        data: Any = orjson.loads(value)
        restart = RestartPoint.parse(data["restart_point"])
        committed_at = dt.datetime.strptime(data["committed_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=dt.UTC
        )
        counts = data.get("counts") or {}
        tables = tuple(sorted((str(k), int(v)) for k, v in (counts.get("tables") or {}).items()))
        return Checkpoint(
            restart=restart,
            position=str(data["position"]),
            gtid=str(data["gtid"]),
            committed_at=committed_at,
            events=int(counts.get("events", 0)),
            source_transactions=int(counts.get("source_transactions", 0)),
            tables=tables,
            server_id=None if data.get("server_id") is None else int(data["server_id"]),
            snapshot=None if data.get("snapshot") is None else str(data["snapshot"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PositionFormatError(f"malformed checkpoint record: {value[:200]!r}") from exc


def read_checkpoint(config: KafkaStreamConfig, pipeline: str) -> Checkpoint | None:
    """The last committed checkpoint of ``pipeline``, or None if it never committed one.

    Reads the (compacted, one-partition) checkpoints topic with a read_committed consumer: first only
    its tail (every Kafka transaction puts three offsets there: the tombstone it opens with, under
    ``<pipeline>:open``, which this skips; its checkpoint; its commit marker; so the last committed
    checkpoint is almost always among the last few offsets), and the whole topic only
    if the tail holds none (a long run of aborted transactions). A transaction still open on the
    topic holds the read back; the writer calls this after ``init_transactions``, which settles any
    transaction a previous instance left open. Raises StreamUnavailable when the end is not reached
    in time.
    """
    topic = TopicNames(pipeline).checkpoints
    timeout = config.request_timeout_ms / 1000
    deadline = time.monotonic() + timeout
    consumer = Consumer(consumer_config(config, f"headwater-{pipeline}-checkpoint-{uuid.uuid4().hex}"))
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=timeout)
            described = metadata.topics.get(topic)
            if described is None or described.error is not None or not described.partitions:
                return None  # the topic does not exist yet: nothing was ever committed
            low, high = _watermarks(consumer, topic, deadline)
        except KafkaException as exc:
            raise StreamUnavailable(
                f"no Kafka metadata for {topic} from {config.bootstrap_servers} within {timeout:g}s: {exc}"
            ) from exc
        if high <= low:
            return None
        key = pipeline.encode()
        start = max(low, high - _TAIL_OFFSETS)
        found, last = _scan(consumer, topic, start, key, deadline, config, high)
        if not found and start > low:
            found, last = _scan(consumer, topic, low, key, deadline, config, high)
        return None if last is None else parse_checkpoint(last)
    finally:
        consumer.close()


_TAIL_OFFSETS = 64
# a topic created a moment ago (the writer's first start) may have no leader yet in the broker's
# metadata: seen once in CI as NOT_LEADER_FOR_PARTITION from get_watermark_offsets
_NO_LEADER_YET = frozenset(
    (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._UNKNOWN_PARTITION)
)


def _watermarks(consumer: Consumer, topic: str, deadline: float) -> tuple[int, int]:
    """The checkpoints partition's low and high offsets, asked again while it has no leader yet."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, 0), timeout=max(deadline - time.monotonic(), 0.1)
            )
            return low, high
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not isinstance(error, KafkaError) or error.code() not in _NO_LEADER_YET:
                raise
            if time.monotonic() + 0.1 >= deadline:
                raise
            time.sleep(0.1)


def _scan(
    consumer: Consumer,
    topic: str,
    start: int,
    key: bytes,
    deadline: float,
    config: KafkaStreamConfig,
    high: int,
) -> tuple[bool, bytes | None]:
    """Read partition 0 of ``topic`` from ``start`` to its end (or past ``high``, its end when the
    read began: under a writer that always has a transaction open, a read_committed consumer never
    sees the partition's end): (a record for key seen, its last value)."""
    partition = TopicPartition(topic, 0, start)
    consumer.assign([partition])
    found, last = False, None
    while True:
        if consumer.position([partition])[0].offset >= high:
            return found, last
        if time.monotonic() > deadline:
            raise StreamUnavailable(
                f"reading {topic} from {config.bootstrap_servers} did not reach its end "
                f"within {config.request_timeout_ms / 1000:g}s"
            )
        message = consumer.poll(0.2)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return found, last
            raise StreamUnavailable(f"reading {topic}: {error.str()}")
        if message.key() == key:
            found, last = True, message.value()
