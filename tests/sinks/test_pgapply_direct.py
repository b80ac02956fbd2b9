"""PostgreSQL column-wise: a batch's inserts COPYed straight into the table, or, when the table
already holds some of their keys (a replay after a bootstrap), the batch rolled back and written
again by upsert. Either way the table ends as the per-change path leaves it."""

from __future__ import annotations

import pyarrow as pa
import pytest
import sqlalchemy as sa

from cdc.core.events import ChangeEvent, Op
from sinks.contract import SinkBatch
from sinks.sql.columnar_apply import apply_columns
from sinks.sql.pg_columnar import bytea_hex
from tests.sinks.sql_targets import SqlTarget
from tests.sinks.test_sinkcol_postgres import _chunks, _event, _row, _rows, _state, targets
from tests.unit.test_sinkcol_columns import _reader, _values

__all__ = ["targets"]  # the fixture, shared with test_sinkcol_postgres

pytestmark = pytest.mark.integration


def _inserts(seq: int, keys: range, v: int) -> list[ChangeEvent]:
    events = [_event(Op.CREATE, seq, i, _row(k, k + v)) for i, k in enumerate(keys)]
    # an empty binary value and an empty text: hex '\x' and a quoted empty CSV field
    events[0] = _event(Op.CREATE, seq, 0, (keys[0], 1, True, "", b"", *_row(keys[0], v)[5:]))
    return events


def _both(a_target: SqlTarget, b_target: SqlTarget, events: list[ChangeEvent], start: int) -> None:
    """``events`` column-wise into a's sink, per change into b's; then the tables must be equal."""
    a, b = a_target.opened[0], b_target.opened[0]
    batch = SinkBatch(_chunks(events, start), _state(events, start + len(events)))
    assert apply_columns(a, batch)
    b.apply(SinkBatch(_reader(events[0].schema).events(_values(events)), batch.state))
    assert _rows(a_target) == _rows(b_target)
    assert a.applied() == b.applied()


def test_inserts_of_keys_the_table_holds_end_as_upserts(targets: tuple[SqlTarget, SqlTarget]) -> None:
    columns_target, events_target = targets
    a = columns_target.sink(copy_threshold_rows=10)
    events_target.sink(copy_threshold_rows=10)
    _both(columns_target, events_target, _inserts(1, range(0, 50), 0), 0)
    assert a._pg_upserting == {}  # new keys only: COPYed straight in
    # a replay: the same keys inserted again (other values), and new ones after them
    _both(columns_target, events_target, _inserts(2, range(0, 80), 7), 50)
    assert a._pg_upserting == {"page": 16}  # the next batches of the table go by upsert
    _both(columns_target, events_target, _inserts(3, range(80, 100), 3), 130)
    assert a._pg_upserting == {"page": 15}
    assert len(_rows(columns_target)) == 100


def test_binary_values_as_postgresql_hex() -> None:
    values = pa.array([b"", None, b"\x00\xff\n", b"abc"], pa.binary())
    assert bytea_hex(values).to_pylist() == ["\\x", None, "\\x00ff0a", "\\x616263"]
    assert bytea_hex(values.slice(2)).to_pylist() == ["\\x00ff0a", "\\x616263"]


@pytest.mark.parametrize("ahead", [False, True], ids=["", "streams-made-ahead"])
def test_a_connection_the_server_dropped_since_the_last_batch_is_replaced(
    targets: tuple[SqlTarget, SqlTarget], ahead: bool
) -> None:
    """The pool pings only a connection idle for a second: one the server dropped right after a
    batch is found dead by the next batch's first statement, which goes again on a new one. With
    ``ahead`` the batch was prepared first, its COPY streams made (embedded mode): the batch that
    goes again is worked out again (what was prepared is taken once), and no row is lost."""
    columns_target, _ = targets
    a = columns_target.sink(copy_threshold_rows=10)
    first, second = _inserts(1, range(0, 20), 0), _inserts(2, range(20, 40), 0)
    assert apply_columns(a, SinkBatch(_chunks(first, 0), _state(first, 20)))
    engine = a._require_engine()
    with engine.connect() as conn:  # the pool's one connection, the batch's
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    with columns_target.engine.connect() as admin:
        assert admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    batch = SinkBatch(_chunks(second, 20), _state(second, 40))
    if ahead:
        a.prepare_columns(batch)
        prepared = a._prepared[-1].tables
        assert prepared is not None and all(t.ahead is not None for t in prepared)
    a.apply(batch)
    assert len(_rows(columns_target)) == 40
    assert a.applied() == _state(second, 40)
