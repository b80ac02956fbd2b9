"""Copy a captured pipeline's topics under another pipeline name, with another producer compression.

    .venv/bin/python -m benchmarks.ice4_recompress --pipeline NAME --to NEW --compression none

Every topic ``NAME.*`` is created as ``NEW.*`` (same partitions and non-default configs) and its
committed messages are produced there in order (same partition, key, value, headers, timestamp),
with ``compression.type`` as given: so that ``cdc sink``'s consume side can be compared across
compression codecs on the same changes (benchmarks/ice4_threads.py --pipeline NEW).
"""

from __future__ import annotations

import argparse
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--compression", default="none")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args(argv)
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    topics = admin.list_topics(timeout=10).topics
    names = sorted(t for t in topics if t.startswith(args.pipeline + "."))
    configs = admin.describe_configs([ConfigResource("topic", t) for t in names])
    new = []
    for resource, future in configs.items():
        cfg = {k: v.value for k, v in future.result().items() if not v.is_default and not v.is_read_only}
        cfg = {k: v for k, v in cfg.items() if v is not None}
        name = args.to + resource.name[len(args.pipeline) :]
        new.append(NewTopic(name, len(topics[resource.name].partitions), 1, config=cfg))
    for future in admin.create_topics(new).values():
        future.result()
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"ice4-copy-{args.to}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "compression.type": args.compression,
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "message.max.bytes": 16_842_752,
        }
    )
    parts = [TopicPartition(t, p, 0) for t in names for p in topics[t].partitions]
    consumer.assign(parts)
    ended, copied = 0, 0
    while ended < len(parts):
        for msg in consumer.consume(10_000, 1.0):
            if msg.error():
                ended += 1
                continue
            source, partition = msg.topic(), msg.partition()
            assert source is not None and partition is not None
            producer.produce(
                args.to + source[len(args.pipeline) :],
                msg.value(),
                msg.key(),
                partition=partition,
                headers=msg.headers(),
                timestamp=msg.timestamp()[1],
            )
            copied += 1
            producer.poll(0)
    producer.flush(60)
    consumer.close()
    print(f"copied {copied} messages of {len(names)} topics to {args.to}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
