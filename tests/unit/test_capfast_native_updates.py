"""The compiled maker of an update rows event's ChangeEvents (``EVENT_MAKER.updates``, events.rs)
against what the stream decoder's Python loop makes of the same ``(before, after)`` pairs: an update
where the key stays, else a delete of the old key then a create of the new one, each with its own
row index (and always an update for a keyless table)."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, GtidState, Position, ReadContext
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.sources.mariadb.compiled_table import key_getter
from cdc.sources.mariadb.native_rows import EVENT_MAKER

OPS = (Op.UPDATE, Op.DELETE, Op.CREATE)


def _schema(key: tuple[int, ...]) -> TableSchema:
    names = ("a", "b", "c")
    return TableSchema.build(
        TableRef("db", "t"),
        tuple(Column(n, "int", ArrowType(ArrowKind.INT64)) for n in names),
        tuple(names[k] for k in key),
    )


def _python_loop(
    schema: TableSchema, key: tuple[int, ...], pairs: list[Any], tx_pos: Position, row: int
) -> list[ChangeEvent]:
    """stream_decoder._python_path's loop over an update event's pairs (no held or skipped rows)."""
    key_of = key_getter(key)
    out: list[ChangeEvent] = []
    for before, after in pairs:
        k = key_of(after)
        if k == key_of(before):
            out.append(ChangeEvent(Op.UPDATE, schema, k, before, after, tx_pos.at_row(row), 99, "0-7-42"))
            row += 1
            continue
        out.append(
            ChangeEvent(Op.DELETE, schema, key_of(before), before, None, tx_pos.at_row(row), 99, "0-7-42")
        )
        row += 1
        out.append(ChangeEvent(Op.CREATE, schema, k, None, after, tx_pos.at_row(row), 99, "0-7-42"))
        row += 1
    return out


@pytest.mark.parametrize("key", [(), (0,), (2, 0)])
def test_compiled_updates_equal_the_python_loops(key: tuple[int, ...]) -> None:
    schema = _schema(key)
    context = ReadContext(7, GtidState.parse("0-7-41"))
    tx_pos = Position(Gtid(0, 7, 42), "mariadb-bin.000003", 1234, 0, 2, context)
    pairs = [
        ((1, "x", 10), (1, "y", 10)),  # the key stays (whatever it is made of)
        ((2, "x", 20), (3, "x", 20)),  # a changes: a new key where a is in it
        ((4, None, 1), (4, None, 2)),  # c changes: a new key where c is in it
        ((float("nan"), "n", 5), (float("nan"), "n", 5)),  # NaN: different objects, not equal
        ((5, "z", 5), (5, "z", 5)),  # nothing changes
    ]
    made = EVENT_MAKER.updates(OPS, schema, key, pairs, tx_pos, 3, 99, "0-7-42")
    expected = _python_loop(schema, key, pairs, tx_pos, 3)
    assert made is not None
    assert [e.op for e in made] == [e.op for e in expected]
    assert repr(made) == repr(expected)  # NaN keys: == of the events would be False on both sides
    for ours, theirs in zip(made, expected, strict=True):
        assert type(ours) is ChangeEvent and type(ours.position) is Position
        assert ours.key == theirs.key or repr(ours.key) == repr(theirs.key)
        assert ours.position == theirs.position and ours.position._key == theirs.position._key
        assert ours.position.context is context
        assert ours.position.to_string() == theirs.position.to_string()
        assert hash(ours.position) == hash(theirs.position)
    if key:  # the changed keys are a delete and a create; the NaN pair's keys are two objects
        assert [e.op for e in made].count(Op.DELETE) == (2 if key == (0,) else 3)
    else:
        assert [e.op for e in made] == [Op.UPDATE] * len(pairs)


def test_the_same_key_object_is_one_key() -> None:
    """A value compared to itself is equal (tuple ==: identity first), as in the Python loop."""
    schema = _schema((0,))
    tx_pos = Position(Gtid(0, 7, 42), "mariadb-bin.000003", 1234, 0, 0)
    nan = float("nan")
    pairs = [((nan, "a", 1), (nan, "b", 1))]
    made = EVENT_MAKER.updates(OPS, schema, (0,), pairs, tx_pos, 0, 99, "0-7-42")
    assert made is not None and [e.op for e in made] == [Op.UPDATE]
    assert repr(made) == repr(_python_loop(schema, (0,), pairs, tx_pos, 0))


def test_no_pairs_and_row_indexes_past_the_maximum() -> None:
    schema = _schema((0,))
    tx_pos = Position(Gtid(0, 7, 42), "mariadb-bin.000003", 1234, 0, 0)
    assert EVENT_MAKER.updates(OPS, schema, (0,), [], tx_pos, 0, 99, "0-7-42") == []
    pairs = [((1, "a", 1), (1, "b", 1))]
    # two row indexes may be needed per pair: the Python loop is left to raise its own error
    assert EVENT_MAKER.updates(OPS, schema, (0,), pairs, tx_pos, 9_999_999_999, 99, "0-7-42") is None
    made = EVENT_MAKER.updates(OPS, schema, (0,), pairs, tx_pos, 9_999_999_998, 99, "0-7-42")
    assert made is not None and made[0].position.row == 9_999_999_998
    with pytest.raises(IndexError):
        EVENT_MAKER.updates(OPS, schema, (3,), pairs, tx_pos, 0, 99, "0-7-42")
