"""The stream: source records to Kafka, exactly once (DESIGN.md, "Delivery guarantees").

- :mod:`cdc.stream.json_values`  column values -> JSON values (the documented mapping table)
- :mod:`cdc.stream.envelope`     ChangeEvent -> Debezium-shaped key/value bytes
- :mod:`cdc.stream.json_schema`  JSON Schema per table version; schema-topic records
- :mod:`cdc.stream.topics`       topic names (Kafka-safe) and how each topic is created
- :mod:`cdc.stream.checkpoints`  checkpoint records; ``read_checkpoint`` for ``cdc status``
- :mod:`cdc.stream.kafka_writer` ``KafkaStreamWriter``, the transactional producer the daemon drives

Imports only the vocabulary (``cdc.core``) and the stream's config model.
"""

from cdc.stream.checkpoints import Checkpoint, read_checkpoint
from cdc.stream.envelope import EnvelopeEncoder, TransactionOrder
from cdc.stream.kafka_writer import KafkaStreamWriter, KafkaTopicAdmin, TopicAdmin
from cdc.stream.topics import TopicNames, TopicSpec, sanitize_name_part

__all__ = [
    "Checkpoint",
    "EnvelopeEncoder",
    "KafkaStreamWriter",
    "KafkaTopicAdmin",
    "TopicAdmin",
    "TopicNames",
    "TopicSpec",
    "TransactionOrder",
    "read_checkpoint",
    "sanitize_name_part",
]
