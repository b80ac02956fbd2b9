"""Topic naming (cdc.stream.topics) and checkpoint records (cdc.stream.checkpoints)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

import cdc.stream
from cdc.core.errors import PositionFormatError
from cdc.core.positions import Gtid, Position, RestartPoint
from cdc.core.schemas import TableRef
from cdc.stream.checkpoints import checkpoint_record, parse_checkpoint
from cdc.stream.kafka_reader import table_topic_pattern
from cdc.stream.topics import MAX_TOPIC_LENGTH, MESSAGE_HEADROOM, TopicNames, sanitize_name_part

KAFKA_LEGAL = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def test_plain_names() -> None:
    names = TopicNames("wiki")
    assert names.table(TableRef("wikidb", "page")) == "wiki.wikidb.page"
    assert names.schema == "wiki.__schema"
    assert names.checkpoints == "wiki.__checkpoints"
    assert names.transactions == "wiki.__transactions"


@pytest.mark.parametrize(
    "name", ["my table", "caf\u00e9", "a.b", "weird$name", "\U0001f600", "x" * 300, "a/b\\c", "-_-"]
)
def test_any_identifier_maps_to_a_legal_topic(name: str) -> None:
    topic = TopicNames("wiki-prod_1").table(TableRef(name, name))
    assert KAFKA_LEGAL.match(topic), topic
    assert len(topic) <= MAX_TOPIC_LENGTH
    assert topic.count(".") == 2  # a '.' in a name never makes the topic name ambiguous


def test_mapped_names_do_not_collide_with_valid_ones() -> None:
    assert sanitize_name_part("my_table") == "my_table"
    assert sanitize_name_part("my table").startswith("my_table_")
    assert sanitize_name_part("my table") != sanitize_name_part("my_table")
    assert sanitize_name_part("my.table") != sanitize_name_part("my table")
    assert sanitize_name_part("x" * 300) != sanitize_name_part("x" * 301)


def test_own_topic_specs() -> None:
    specs = {s.name: s for s in TopicNames("wiki").own_specs(3, transaction_metadata=True)}
    assert dict(specs["wiki.__checkpoints"].config)["cleanup.policy"] == "compact"
    assert specs["wiki.__checkpoints"].partitions == 1
    assert dict(specs["wiki.__schema"].config)["retention.ms"] == "-1"
    assert all(s.replication_factor == 3 for s in specs.values())
    assert "wiki.__transactions" in specs
    assert len(TopicNames("wiki").own_specs(1, transaction_metadata=False)) == 2


def test_table_topics_fit_the_largest_change_plus_key_and_framing() -> None:
    spec = TopicNames("wiki").table_spec(TableRef("db", "t"), 3, 1, 16 * 1024 * 1024)
    assert dict(spec.config)["max.message.bytes"] == str(16 * 1024 * 1024 + MESSAGE_HEADROOM)
    assert spec.partitions == 3


def test_table_topics_are_the_only_ones_the_sink_subscribes_to() -> None:
    # never the pipeline's own topics, nor another pipeline whose name starts with this one's
    names = TopicNames("wiki")
    pattern = re.compile(table_topic_pattern("wiki"))
    assert pattern.match(names.table(TableRef("db", "t")))
    assert pattern.match(names.table(TableRef("my db", "a.b")))
    for own in (names.schema, names.checkpoints, names.transactions, "wiki.x.db.t"):
        assert not pattern.match(own), own


def test_checkpoint_record_round_trip() -> None:
    restart = RestartPoint(Position(Gtid(0, 1, 99), "bin.000012", 777), 0)
    moment = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    value = checkpoint_record("wiki", restart, moment, 10, 2, {"db.b": 4, "db.a": 6})
    checkpoint = parse_checkpoint(value)
    assert checkpoint.restart == restart
    assert checkpoint.position == restart.transaction.to_string()
    assert checkpoint.gtid == "0-1-99"
    assert checkpoint.committed_at == moment
    assert (checkpoint.events, checkpoint.source_transactions) == (10, 2)
    assert checkpoint.tables == (("db.a", 6), ("db.b", 4))


@pytest.mark.parametrize("value", [b"", b"{}", b'{"restart_point": "nope"}', b"[1]"])
def test_malformed_checkpoint_is_refused(value: bytes) -> None:
    with pytest.raises(PositionFormatError):
        parse_checkpoint(value)


def test_public_api_is_pinned() -> None:
    assert set(cdc.stream.__all__) == {
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
    }
