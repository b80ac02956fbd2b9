"""The consume path's hand-built objects equal the ones their constructors build."""

from __future__ import annotations

from cdc.core.events import Op
from cdc.stream.kafka_reader import ConsumedChange, _consumed
from tests.sinks.builders import Clock, event


def test_consumed_change_built_by_its_slots_equals_the_constructed_one() -> None:
    change = event(Op.CREATE, Clock().txn(), (1, "a", 2))
    built = _consumed(change, "pipe.db.t:3", 42)
    assert built == ConsumedChange(change, "pipe.db.t:3", 42)
    assert (built.event, built.partition, built.next_offset) == (change, "pipe.db.t:3", 42)
    assert hash(built) == hash(ConsumedChange(change, "pipe.db.t:3", 42))


def test_fewer_collections_applies_inside_and_puts_everything_back() -> None:
    import gc

    from cdc.daemon.gc_settings import YOUNG_THRESHOLD, fewer_collections

    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    try:
        with fewer_collections():
            assert gc.get_threshold()[0] == YOUNG_THRESHOLD
            assert gc.get_freeze_count() > frozen
            raise RuntimeError("the daemon's loop fails")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
