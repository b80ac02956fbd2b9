"""The history sink and issue 8: keyless tables, truncates without a schema, key changes, empty batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.config.models import IcebergSinkConfig
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Position
from cdc.core.schemas import TableSchema
from sinks.contract import AppliedState, SinkBatch
from sinks.iceberg import history_rows_as_of, read_history, state_as_of
from sinks.iceberg.history_sink import IcebergHistorySink
from tests.sinks.builders import ITEMS, REF, Writer, schema
from tests.sinks.harness import SinkUnderTest
from tests.sinks.iceberg_factory import make_iceberg_sink_under_test

KEYLESS = schema(*ITEMS.columns, pk=())
EMPTY = TableSchema.build(REF, (), ())  # what the source knows of a table it has no TABLE_MAP for


@pytest.fixture
def sut(tmp_path: Path) -> Iterator[SinkUnderTest]:
    under_test = make_iceberg_sink_under_test(tmp_path)
    under_test.sink.open()
    try:
        yield under_test
    finally:
        under_test.cleanup()


def _catalog(tmp_path: Path) -> dict[str, str]:
    return {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path / 'iceberg-catalog.db'}",
        "warehouse": (tmp_path / "warehouse").as_uri(),
    }


def sut_config(tmp_path: Path) -> IcebergSinkConfig:
    return IcebergSinkConfig(catalog=_catalog(tmp_path), namespace="behaviour")


def _multiset(tmp_path: Path, at: Position) -> Counter[tuple[object, ...]]:
    rows = state_as_of(_catalog(tmp_path), "behaviour", REF, at)
    return Counter(tuple(r.values()) for r in rows.to_pylist())


def test_a_keyless_table_keeps_both_images_and_counts_copies(tmp_path: Path, sut: SinkUnderTest) -> None:
    """Identical rows inserted twice, one deleted, one updated: the history rebuilds each copy."""
    w = Writer()
    sut.sink.apply(w.insert(1, "a", 1, table=KEYLESS).insert(1, "a", 1, table=KEYLESS).batch())
    both = w.clock.current
    sut.sink.apply(w.delete(1, "a", 1, table=KEYLESS).batch())
    one_left = w.clock.current
    sut.sink.apply(w.insert(1, "a", 1, table=KEYLESS).batch())
    sut.sink.apply(w.update((1, "a", 1), (1, "a", 5), table=KEYLESS).batch())
    updated = w.clock.current
    sut.sink.flush()

    assert sut.history is not None
    history = [(r["_op"], r["qty"]) for r in sut.history(REF)]
    assert history == [("c", 1), ("c", 1), ("d", 1), ("c", 1), ("d", 1), ("u", 5)]
    pair = [r for r in sut.history(REF) if r["_position"] == updated.to_string()]
    assert [(r["_op"], r["qty"]) for r in pair] == [("d", 1), ("u", 5)]  # one position, both images

    assert _multiset(tmp_path, both) == Counter({(1, "a", 1): 2})
    assert _multiset(tmp_path, one_left) == Counter({(1, "a", 1): 1})
    assert _multiset(tmp_path, updated) == Counter({(1, "a", 1): 1, (1, "a", 5): 1})
    # `cdc history` prints the same rows, duplicates included
    printed = history_rows_as_of(sut_config(tmp_path), "behaviour", "shop.items", updated.to_string())
    assert sorted(tuple(r.values()) for r in printed.to_pylist()) == [(1, "a", 1), (1, "a", 5)]


def test_a_keyless_truncate_empties_every_copy(tmp_path: Path, sut: SinkUnderTest) -> None:
    w = Writer()
    sut.sink.apply(w.insert(1, "a", 1, table=KEYLESS).insert(1, "a", 1, table=KEYLESS).batch())
    sut.sink.apply(w.truncate(table=KEYLESS).insert(2, "b", 2, table=KEYLESS).batch())
    sut.sink.flush()
    assert _multiset(tmp_path, w.clock.current) == Counter({(2, "b", 2): 1})


def _truncate(pos: Position, table: TableSchema = EMPTY) -> ChangeEvent:
    return ChangeEvent(Op.TRUNCATE, table, None, None, None, pos, 1_700_000_000_000, str(pos.gtid))


def test_a_truncate_with_an_empty_schema_lands_on_the_known_table(tmp_path: Path, sut: SinkUnderTest) -> None:
    """A TRUNCATE that is the table's first event after a restart carries no columns and no key."""
    w = Writer()
    sut.sink.apply(w.insert(1, "a", 1).insert(2, "b", 2).batch())
    sut.sink.flush()
    sut.sink.close()
    restarted = sut.reopen() if sut.reopen is not None else sut.sink
    restarted.open()
    try:
        pos = w.clock.txn()
        restarted.apply(SinkBatch([_truncate(pos)], AppliedState(pos)))
        restarted.flush()
        found = read_history(_catalog(tmp_path), "behaviour", REF)
        assert found.primary_key == ("id",)  # the empty schema did not overwrite what the table knows
        assert found.rows.column_names[:3] == ["id", "name", "qty"]
        assert sut.current_rows(REF) == {}
        restarted.apply(w.insert(3, "c", 3).batch())
        restarted.flush()
        assert restarted.applied() == AppliedState(w.clock.current)
        assert sut.current_rows(REF) == {(3,): {"id": 3, "name": "c", "qty": 3}}
        assert sut.history is not None
        assert [r["_op"] for r in sut.history(REF)] == ["c", "c", "t", "c"]
    finally:
        restarted.close()


def test_a_truncate_with_an_empty_schema_in_the_same_run_keeps_the_table(sut: SinkUnderTest) -> None:
    w = Writer()
    sut.sink.apply(w.insert(1, "a", 1).batch())
    pos = w.clock.txn()
    sut.sink.apply(SinkBatch([_truncate(pos)], AppliedState(pos)))
    sut.sink.apply(w.insert(2, "b", 2).batch())
    sut.sink.flush()
    assert sut.current_rows(REF) == {(2,): {"id": 2, "name": "b", "qty": 2}}


def test_a_truncate_of_a_table_never_seen_creates_nothing(tmp_path: Path, sut: SinkUnderTest) -> None:
    w = Writer()
    pos = w.clock.txn()
    sut.sink.apply(SinkBatch([_truncate(pos)], AppliedState(pos)))
    sut.sink.flush()
    assert sut.sink.applied() == AppliedState(pos)  # the position moves on: nothing was missed
    assert sut.history is not None and sut.history(REF) == []
    sink = sut.sink
    assert isinstance(sink, IcebergHistorySink) and sink._catalog is not None
    assert sink._catalog.list_tables("behaviour") == [("behaviour", "_headwater_progress__behaviour")]


def test_a_key_change_as_delete_and_create_is_recorded_as_such(sut: SinkUnderTest) -> None:
    """The decoder emits a key change as a delete of the old key and a create of the new one."""
    w = Writer()
    sut.sink.apply(w.insert(1, "a", 1).batch())
    w.delete(1, "a", 1).insert(7, "a", 1)
    sut.sink.apply(w.batch())
    # an old stream's single 'u' that moves the key is still split, into two rows, not four
    sut.sink.apply(w.update((7, "a", 1), (8, "a", 1)).batch())
    sut.sink.flush()
    assert sut.history is not None
    history = [(r["_op"], r["id"]) for r in sut.history(REF)]
    assert history == [("c", 1), ("d", 1), ("c", 7), ("d", 7), ("u", 8)]
    assert sut.current_rows(REF) == {(8,): {"id": 8, "name": "a", "qty": 1}}


def test_a_batch_with_only_a_state_stores_it(sut: SinkUnderTest) -> None:
    w = Writer()
    sut.sink.apply(w.insert(1, "a", 1).batch())
    sut.sink.flush()
    later = w.clock.txn()
    sut.sink.apply(SinkBatch([], AppliedState(later)))
    sut.sink.flush()
    assert sut.sink.applied() == AppliedState(later)
    sut.sink.close()
    reopened = sut.reopen() if sut.reopen is not None else sut.sink
    reopened.open()
    try:
        assert reopened.applied() == AppliedState(later)
        reopened.apply(SinkBatch([], AppliedState(later, {"t:0": 4})))  # Kafka mode: offsets only
        reopened.flush()
        assert reopened.applied() == AppliedState(later, {"t:0": 4})
    finally:
        reopened.close()
