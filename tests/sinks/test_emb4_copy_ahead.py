"""PostgreSQL COPY streams made ahead (``SqlSink.prepare_columns`` on the embedded daemon's thread,
sinks/sql/pg_copy_ahead.py) are sent as they are, and leave exactly what the per-change path leaves.

Each batch is prepared before the one before it is applied, as the daemon does, and applied on a
thread named as the daemon's apply thread; another sink takes the same batches as plain events.
The stream: inserts only, inserts and updates mixed, a batch with deletes (encoded on the apply, as
before), and inserts of keys the table already holds (a replay: the straight COPY fails, the batch
is written again by upsert alone, encoded again on the apply: each stream is let go once sent). The
apply thread encodes no other row of a batch whose streams were made ahead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from cdc.core.events import ChangeEvent, Op
from cdc.core.schemas import ArrowKind, ArrowType
from cdc.daemon.embedded_columns import event_chunks
from sinks.contract import SinkBatch
from sinks.sql import pg_binary_copy, pg_columnar, pg_copy_ahead
from sinks.sql.pg_copy_ahead import encode_ahead, stream
from tests.sinks.apply_thread import apply_as_daemon, on_apply_thread
from tests.sinks.sql_targets import SqlTarget, make_pair
from tests.sinks.test_embcol_apply import _event, _rows, _state
from tests.sinks.test_sinkcol_postgres import _row


@pytest.fixture
def targets(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[SqlTarget, SqlTarget]]:
    yield from make_pair("postgres", tmp_path, request)


def _batches() -> list[list[ChangeEvent]]:
    inserts = [_event(Op.CREATE, 1, i, _row(i, i)) for i in range(40)]
    mixed = [_event(Op.CREATE, 2, i, _row(100 + i, i)) for i in range(30)]
    mixed += [_event(Op.UPDATE, 3, i, _row(i, 300 + i), before=_row(i, i)) for i in range(20)]
    # updates only: no insert goes straight in
    updates = [_event(Op.UPDATE, 4, i, _row(i, 400 + i), before=_row(i, 300 + i)) for i in range(20)]
    deletes = [_event(Op.CREATE, 5, i, _row(200 + i, i)) for i in range(20)]
    deletes += [_event(Op.DELETE, 6, i, _row(100 + i, i)) for i in range(10)]
    # inserts of keys the table holds (as after a bootstrap): by upsert, after the COPY's refusal
    replay = [_event(Op.CREATE, 7, i, _row(i, 700 + i)) for i in range(10)]
    replay += [_event(Op.CREATE, 7, 10 + i, _row(300 + i, i)) for i in range(15)]
    return [inserts, mixed, updates, deletes, replay]


class _Encodes:
    """The rows each thread encodes for COPY (``rows_binary``), by thread name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: dict[str, int] = {}
        counted = self._counted(pg_binary_copy.rows_binary)
        for module in (pg_columnar, pg_copy_ahead):  # where the streams are made
            monkeypatch.setattr(module, "rows_binary", counted)

    def _counted(self, work: Callable[..., Any]) -> Callable[..., Any]:
        def counted(columns: Any, types: Any) -> Any:
            name = threading.current_thread().name
            self.rows[name] = self.rows.get(name, 0) + (len(columns[0]) if columns else 0)
            return work(columns, types)

        return counted


@pytest.mark.integration
def test_streams_made_ahead_equal_the_per_change_path(
    targets: tuple[SqlTarget, SqlTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    columns_target, events_target = targets
    a, b = columns_target.sink(copy_threshold_rows=10), events_target.sink(copy_threshold_rows=10)
    batches = _batches()
    # the tables exist before the batches are prepared (else the first ones are made on the apply)
    a.apply(SinkBatch(tuple(batches[0][:1]), _state(batches[0][:1])))
    b.apply(SinkBatch(tuple(batches[0][:1]), _state(batches[0][:1])))
    rest = [batches[0][1:], *batches[1:]]
    encodes = _Encodes(monkeypatch)
    handed = [SinkBatch(event_chunks(batch), _state(batch)) for batch in rest]
    apply_as_daemon(a, handed, b, [SinkBatch(tuple(batch), _state(batch)) for batch in rest])
    assert _rows(columns_target) == _rows(events_target)
    assert a.applied() == b.applied() == _state(rest[-1])
    assert a._pg_upserting  # the replay went by upsert
    # on the apply thread: the batch with deletes (10 deleted keys, 20 inserts) and the replay's
    # retry (25 rows, whose streams were let go when the straight COPY was sent)
    assert encodes.rows.get("embedded-apply") == 10 + 20 + 25
    # ahead: the inserts (39), inserts and updates (30 + 20), updates (20), the replay (25)
    assert encodes.rows[threading.current_thread().name] == 39 + 30 + 20 + 20 + 25


def test_streams_are_the_writes_streams() -> None:
    types = [ArrowType(ArrowKind.INT32), ArrowType(ArrowKind.STRING)]
    rows = pa.table(
        {
            "c0": pa.array([1, 2, 3, 4], pa.int32()),
            "c1": pa.array(["a", None, "ccc", ""], pa.string()),
            "_op": pa.array(["c", "u", "c", "r"]),
        }
    )
    ahead = encode_ahead(rows, ["id", "title"], types)
    assert ahead is not None and (ahead.inserted, ahead.other_rows) == (2, 2)
    values = ["c0", "c1"]
    inserted = pa.compute.equal(rows.column("_op"), "c")
    assert b"".join(ahead.inserts) == b"".join(stream(rows.filter(inserted).select(values), types))
    others = rows.filter(pa.compute.invert(inserted)).select(values)
    assert b"".join(ahead.others) == b"".join(pg_binary_copy.rows_binary(others.columns, types))
    only = rows.filter(inserted)
    every = encode_ahead(only, ["id", "title"], types)
    assert every is not None and every.every_inserted and every.others == []
    assert b"".join(every.inserts) == b"".join(stream(only.select(values), types))
    with_delete = rows.set_column(2, "_op", pa.array(["c", "d", "c", "u"]))
    assert encode_ahead(with_delete, ["id", "title"], types) is None


@pytest.mark.integration
def test_without_streams_the_apply_encodes(
    targets: tuple[SqlTarget, SqlTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon asks for no streams when the apply thread is idle (it would wait for them)."""
    columns_target, events_target = targets
    a, b = columns_target.sink(copy_threshold_rows=10), events_target.sink(copy_threshold_rows=10)
    first, mixed = _batches()[:2]
    for sink, records in ((a, tuple(first[:1])), (b, tuple(first[:1]))):
        sink.apply(SinkBatch(records, _state(first[:1])))
    encodes = _Encodes(monkeypatch)
    for batch in (first[1:], mixed):
        handed = SinkBatch(event_chunks(batch), _state(batch))
        a.prepare_columns(handed, copy_streams=False)
        on_apply_thread(lambda handed=handed: a.apply(handed))  # type: ignore[misc]
        b.apply(SinkBatch(tuple(batch), _state(batch)))
    assert _rows(columns_target) == _rows(events_target)
    assert encodes.rows == {"embedded-apply": 39 + 30 + 20}
