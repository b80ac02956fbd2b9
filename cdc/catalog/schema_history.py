"""Each table's schema versions, oldest first, with their JSON Schemas and what changed between them.

Kafka pipelines: the ``<pipeline>.__schema`` topic (every version the capture published, kept
forever). Embedded pipelines: ``<state_dir>/<pipeline>.schema-versions.jsonl``, which `cdc run`
writes (cdc.daemon.schema_guard). Changes are classified here with the same rule the daemon applies
(cdc.core.schema_compatibility), so both modes show the same verdicts.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from cdc.config.models import KafkaStreamConfig, PipelineConfig
from cdc.core.errors import HeadwaterError, StreamUnavailable
from cdc.core.schema_compatibility import classify_diff
from cdc.core.schema_evolution import diff_schemas
from cdc.core.schemas import Column, TableRef, TableSchema

__all__ = ["SchemaVersion", "TableVersions", "read_versions"]


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    version: str
    position: str  # of the first change seen with it
    schema: TableSchema
    value_schema: str  # JSON Schema (draft 2020-12) of the table topic's values, as JSON text
    change: str = ""  # from the previous version ("" for the first)
    compatibility: str = ""  # "backward" | "breaking" | "" (the first)
    breaking: str = ""  # which parts break it, and why
    held: bool = False  # `cdc run` stopped on it (compatibility policy); not let through yet


@dataclass(frozen=True, slots=True)
class TableVersions:
    table: str
    versions: tuple[SchemaVersion, ...]
    source: str  # where they were read: "topic wiki.__schema", "state file ..."


def read_versions(config: PipelineConfig) -> tuple[dict[str, TableVersions], str | None]:
    """Per ``db.table``: its versions; and an error text if they could not be read."""
    try:
        if config.stream is not None:
            found = _from_topic(config.stream, config.name)
            where = f"topic {config.name}.__schema"
        else:
            found = _from_state_file(config)
            where = f"{config.state_dir}/{config.name}.schema-versions.jsonl"
            from cdc.catalog.sink_versions import latest_from_sinks

            for name, (schema, position) in latest_from_sinks(config).items():
                found.setdefault(name, [(schema, position, False)])  # kept by a sink: the latest only
    except HeadwaterError as exc:
        return {}, str(exc)
    return {t: TableVersions(t, _classified(config.name, v), where) for t, v in found.items()}, None


def _classified(pipeline: str, raw: list[tuple[TableSchema, str, bool]]) -> tuple[SchemaVersion, ...]:
    from cdc.stream.json_schema import value_schema

    out: list[SchemaVersion] = []
    previous: TableSchema | None = None
    for schema, position, held in raw:
        change = compatibility = breaking = ""
        if previous is not None:
            diff = diff_schemas(previous, schema)
            verdict = classify_diff(diff)
            change, compatibility, breaking = diff.describe(), verdict.label, verdict.describe_breaking()
        text = json.dumps(value_schema(pipeline, schema), indent=2)
        out.append(
            SchemaVersion(schema.version, position, schema, text, change, compatibility, breaking, held)
        )
        if not held:
            previous = schema
    return tuple(out)


def _from_state_file(config: PipelineConfig) -> dict[str, list[tuple[TableSchema, str, bool]]]:
    from cdc.daemon.schema_versions_file import SchemaVersionsFile

    entries = SchemaVersionsFile(config.state_dir, config.name).read()
    through = {(e.table, e.version) for e in entries if e.kind == "version"}
    out: dict[str, list[tuple[TableSchema, str, bool]]] = {}
    shown: set[tuple[str, str]] = set()
    for e in entries:
        key = (e.table, e.version)
        if e.kind == "accepted" or key in shown or (e.kind == "held" and key in through):
            continue
        shown.add(key)
        out.setdefault(e.table, []).append((e.schema(), e.position, e.kind == "held"))
    return out


def _from_topic(stream: KafkaStreamConfig, pipeline: str) -> dict[str, list[tuple[TableSchema, str, bool]]]:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    from cdc.stream.json_decode import parse_arrow_type
    from cdc.stream.kafka_clients import consumer_config
    from cdc.stream.topics import TopicNames

    topic = TopicNames(pipeline).schema
    timeout = stream.request_timeout_ms / 1000
    consumer = Consumer(consumer_config(stream, f"headwater-{pipeline}-catalog-{uuid.uuid4().hex}"))
    out: dict[str, list[tuple[TableSchema, str, bool]]] = {}
    seen: set[tuple[str, str]] = set()
    try:
        try:
            described = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
            if described is None or described.error is not None or not described.partitions:
                return {}
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout)
        except KafkaException as exc:
            raise StreamUnavailable(
                f"no Kafka metadata for {topic} from {stream.bootstrap_servers}: {exc}"
            ) from exc
        if high <= low:
            return {}
        consumer.assign([TopicPartition(topic, 0, low)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return out
                raise StreamUnavailable(f"reading {topic}: {error.str()}")
            record = json.loads(message.value() or b"null")
            if not isinstance(record, dict) or record.get("type") != "table_schema":
                continue
            name = f"{record['db']}.{record['table']}"
            if (name, record["version"]) in seen:
                continue  # published again by a later run
            seen.add((name, record["version"]))
            columns = tuple(
                Column(c["name"], c["source_type"], parse_arrow_type(c["arrow_type"]), bool(c["nullable"]))
                for c in record["columns"]
            )
            ref = TableRef(record["db"], record["table"])
            schema = TableSchema(ref, columns, tuple(record["primary_key"]), record["version"])
            out.setdefault(name, []).append((schema, str(record.get("position", "")), False))
        raise StreamUnavailable(f"reading {topic} did not reach its end within {timeout:g}s")
    finally:
        consumer.close()
