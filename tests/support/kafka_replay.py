"""Reading a pipeline's topics back as a read_committed consumer would, for golden and fault tests."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: Any  # decoded JSON, or None
    value: Any  # decoded JSON, or None for a tombstone

    @property
    def position(self) -> str:
        return str(self.value["source"]["position"]) if self.value else ""


def _decode_key(raw: bytes | None) -> Any:
    """Table topics are keyed by JSON; the schema topic by plain "db.table" text."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def pipeline_topics(bootstrap: str, pipeline: str) -> list[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = admin.list_topics(timeout=10).topics
    prefix = f"{pipeline}."
    return sorted(t for t in names if t.startswith(prefix))


def consume_all(bootstrap: str, topics: list[str], timeout_s: float = 30.0) -> list[Consumed]:
    """Every committed record of ``topics``, read to the current end of each partition."""
    if not topics:
        return []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(metadata.topics[t].partitions)]
        ends: dict[tuple[str, int], int] = {}
        for tp in partitions:
            # read_committed: the high watermark is the last stable offset
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            ends[(tp.topic, tp.partition)] = high
        pending = {k for k, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
        out: list[Consumed] = []
        import time

        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error():
                    continue
                tp = (msg.topic(), msg.partition())
                raw_key, raw_value = msg.key(), msg.value()
                out.append(
                    Consumed(
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        _decode_key(raw_key),
                        json.loads(raw_value) if raw_value else None,
                    )
                )
                if msg.offset() + 1 >= ends[tp]:
                    pending.discard(tp)
            # transaction markers take offsets too: a partition is done once its position reaches the end
            for t, p in list(pending):
                pos = consumer.position([TopicPartition(t, p)])[0].offset
                if pos >= ends[(t, p)]:
                    pending.discard((t, p))
        if pending:
            raise AssertionError(f"could not read to the end of {sorted(pending)} in {timeout_s}s")
        return out
    finally:
        consumer.close()


def change_events(records: list[Consumed]) -> list[Consumed]:
    """The change envelopes (no tombstones), in source position order (string order is position order)."""
    events = [r for r in records if r.value is not None and "op" in r.value]
    return sorted(events, key=lambda r: (r.position, r.value["op"] == "t" and r.partition))


def replay(records: list[Consumed]) -> dict[str, dict[str, dict[str, Any]]]:
    """Current rows per "db.table", keyed by the JSON of the key: what a consumer rebuilds."""
    state: dict[str, dict[str, dict[str, Any]]] = {}
    seen_truncates: set[str] = set()
    for r in change_events(records):
        value = r.value
        table = f"{value['source']['db']}.{value['source']['table']}"
        rows = state.setdefault(table, {})
        op = value["op"]
        if op == "t":
            marker = f"{table}@{r.position}"
            if marker not in seen_truncates:  # sent to every partition: apply once
                seen_truncates.add(marker)
                rows.clear()
            continue
        key = json.dumps(r.key, sort_keys=True)
        if op == "d":
            rows.pop(key, None)
        else:
            rows[key] = value["after"]
    return state
