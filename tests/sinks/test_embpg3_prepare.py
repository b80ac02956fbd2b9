"""A batch worked out ahead (``SqlSink.prepare_columns``, the embedded daemon's thread) is applied
from that work, and leaves exactly what the per-change path leaves.

The embedded daemon prepares batch N+1 while batch N is applied: so here each batch is prepared
before the one before it is applied, and the first ones find no target table yet (the apply makes
their tables after the schema sync). A prepared batch whose table shapes were replaced meanwhile
is made again on the apply; one prepared for another batch object is not used.
``tests/sinks/test_embcol_apply.py`` has the stream.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdc.core.events import ChangeEvent
from cdc.daemon.embedded_columns import event_chunks
from sinks.contract import SinkBatch
from sinks.sql import columnar_apply, schema_follow
from tests.sinks.apply_thread import apply_as_daemon
from tests.sinks.sql_targets import SqlTarget, make_pair
from tests.sinks.test_embcol_apply import _batches, _rows, _state


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgres", marks=pytest.mark.integration),
    ]
)
def targets(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[SqlTarget, SqlTarget]]:
    yield from make_pair(request.param, tmp_path, request)


class _Calls:
    """Calls of the pre-transaction steps, by thread name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[str, str]] = []
        for module, name in (
            (columnar_apply, "_by_target"),
            (columnar_apply, "_last_per_key"),
            (columnar_apply, "_columns_fit"),
        ):
            monkeypatch.setattr(module, name, self._counted(getattr(module, name), name))
        monkeypatch.setattr(
            columnar_apply, "unfollowed", self._counted(schema_follow.unfollowed, "unfollowed")
        )

    def _counted(self, work: Callable[..., Any], name: str) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.seen.append((threading.current_thread().name, name))
            return work(*args, **kwargs)

        return counted

    def on(self, thread: str) -> list[str]:
        return [name for where, name in self.seen if where == thread]


def test_prepared_ahead_equals_the_per_change_path(
    targets: tuple[SqlTarget, SqlTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    columns_target, events_target = targets
    a, b = columns_target.sink(copy_threshold_rows=10), events_target.sink(copy_threshold_rows=10)
    calls = _Calls(monkeypatch)
    batches: list[list[ChangeEvent]] = _batches()
    handed = [SinkBatch(event_chunks(batch), _state(batch)) for batch in batches]
    apply_as_daemon(a, handed, b, [SinkBatch(tuple(batch), _state(batch)) for batch in batches])
    assert _rows(columns_target) == _rows(events_target)
    assert a.applied() == b.applied() == _state(batches[3])
    # the first two batches were prepared before their table existed: their tables were made on
    # the apply; from the third on, the apply thread found them made
    applied = calls.on("embedded-apply")
    assert applied.count("_by_target") == 2
    assert "_columns_fit" not in applied and "unfollowed" not in applied
    # the third made ahead; the fourth (a key moves) has no columns: per change
    assert calls.on(threading.current_thread().name).count("_by_target") == 1
    assert not a._prepared  # each taken once


def test_replaced_shapes_or_another_batch_are_made_again(
    targets: tuple[SqlTarget, SqlTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    columns_target, events_target = targets
    a, b = columns_target.sink(copy_threshold_rows=10), events_target.sink(copy_threshold_rows=10)
    first, second, third, _ = _batches()
    for batch in (first, second):
        a.apply(SinkBatch(event_chunks(batch), _state(batch)))
        b.apply(SinkBatch(tuple(batch), _state(batch)))
    calls = _Calls(monkeypatch)
    handed = SinkBatch(event_chunks(third), _state(third))
    a.prepare_columns(handed)
    assert calls.seen.count((threading.current_thread().name, "_by_target")) == 1
    # the shapes read again (equal, but other objects): what was prepared is not trusted
    a._shapes = {target: dataclasses.replace(shape) for target, shape in a._shapes.items()}
    a.apply(handed)
    assert calls.seen.count((threading.current_thread().name, "_by_target")) == 2
    b.apply(SinkBatch(tuple(third), _state(third)))
    # prepared for one batch object, applied with another: made again
    again = SinkBatch(event_chunks(third), _state(third))
    a.prepare_columns(SinkBatch(again.records, again.state))
    a.apply(again)
    assert calls.seen.count((threading.current_thread().name, "_by_target")) == 4
    assert len(a._prepared) == 1  # (held until two newer ones are prepared, or one after it is taken)
    assert _rows(columns_target) == _rows(events_target)
    assert a.applied() == b.applied() == _state(third)
