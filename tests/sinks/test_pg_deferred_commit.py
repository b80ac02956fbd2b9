"""PostgreSQL from Kafka with ``defer_commit``: a batch's COMMIT is sent and its result read at the
sink's next call (sinks/sql/pg_deferred_commit.py).

The same rows and offsets as the synchronous sink; a COMMIT the server refuses surfaces at the next
call, the positions row still holds the batch before, and the batch applied again lands once; a
process that dies with a COMMIT unread leaves the server's outcome, which the positions row states.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.core.errors import SinkError
from cdc.core.events import ChangeEvent, Op
from sinks.contract import SinkBatch
from sinks.sql.columnar_apply import apply_columns
from tests.sinks.sql_targets import SqlTarget, make_pair
from tests.sinks.test_sinkcol_postgres import _chunks, _event, _row, _rows, _state, _stream

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def targets(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[SqlTarget, SqlTarget]]:
    yield from make_pair("postgres", tmp_path, request)


def _third() -> list[ChangeEvent]:
    return [_event(Op.CREATE, 11, i, _row(500 + i, i)) for i in range(30)]


def _batches() -> list[SinkBatch]:
    """The three batches the tests apply: the stream's two, then :func:`_third`'s rows."""
    first, second = _stream()
    third = _third()
    return [
        SinkBatch(_chunks(first, 0), _state(first, 60)),
        SinkBatch(_chunks(second, 60), _state(second, 200)),
        SinkBatch(_chunks(third, 200), _state(third, 260)),
    ]


def test_deferred_commits_leave_the_rows_and_offsets_of_the_synchronous_sink(
    targets: tuple[SqlTarget, SqlTarget],
) -> None:
    deferred_target, sync_target = targets
    batches = _batches()
    a = deferred_target.sink(copy_threshold_rows=10, defer_commit=True)
    b = sync_target.sink(copy_threshold_rows=10)
    for batch in batches:
        assert apply_columns(a, batch)
        assert a.pending_commit is not None  # sent, not read
        assert apply_columns(b, batch)
        assert b.pending_commit is None
    assert a.applied() == b.applied() == batches[2].state  # applied() reads the last one first
    assert a.pending_commit is None
    a.flush()
    assert _rows(deferred_target) == _rows(sync_target)


def test_a_failed_deferred_commit_surfaces_at_the_next_call_and_the_batch_lands_once_again(
    targets: tuple[SqlTarget, SqlTarget],
) -> None:
    deferred_target, sync_target = targets
    batches = _batches()
    a = deferred_target.sink(copy_threshold_rows=10, defer_commit=True)
    b = sync_target.sink(copy_threshold_rows=10)
    assert apply_columns(a, batches[0])
    a.flush()
    schema = deferred_target.settings.schema
    with deferred_target.engine.begin() as conn:
        # the server refuses the second batch at its COMMIT: a deferred constraint trigger on key 110
        conn.execute(sa.text(f'SET search_path TO "{schema}"'))
        conn.execute(
            sa.text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN IF NEW.id = 110 THEN RAISE EXCEPTION 'refused at commit'; END IF; "
                "RETURN NULL; END $$"
            )
        )
        conn.execute(
            sa.text(
                "CREATE CONSTRAINT TRIGGER refuse AFTER INSERT OR UPDATE ON page "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        )
    assert apply_columns(a, batches[1])  # returns before the server has answered
    with pytest.raises(SinkError, match="refused at commit"):
        a.apply(batches[2])  # the next call reads the refusal; nothing of this batch is sent
    assert a.pending_commit is None
    assert a.applied() == batches[0].state  # the positions row: still the first batch
    b.apply(batches[0])
    assert _rows(deferred_target) == _rows(sync_target)
    with deferred_target.engine.begin() as conn:
        conn.execute(sa.text(f'DROP TRIGGER refuse ON "{schema}".page'))
    # the run starts again from the stored offsets: the second and third batches come again
    restarted = deferred_target.sink(copy_threshold_rows=10, defer_commit=True)
    for batch in batches[1:]:
        restarted.apply(batch)
        b.apply(batch)
    restarted.flush()
    assert restarted.applied() == b.applied() == batches[2].state
    assert _rows(deferred_target) == _rows(sync_target)


_CRASH = """
import os, sys
from dataclasses import replace
from sinks.contract import SinkBatch
from sinks.sql import SqlSink, SqlSinkSettings
from sinks.sql.columnar_apply import apply_columns
from tests.sinks.test_sinkcol_postgres import _chunks, _state, _stream

first, second = _stream()
settings = SqlSinkSettings(url=sys.argv[1], pipeline=sys.argv[2], schema=sys.argv[3],
                           copy_threshold_rows=10, defer_commit=True)
sink = SqlSink(settings)
sink.open()
assert apply_columns(sink, SinkBatch(_chunks(first, 0), _state(first, 60)))
assert apply_columns(sink, SinkBatch(_chunks(second, 60), _state(second, 200)))
assert sink.pending_commit is not None
os._exit(0)  # dies with the second batch's COMMIT sent and unread: no flush, no close
"""


def test_a_process_that_dies_with_a_commit_unread_leaves_what_the_positions_row_says(
    targets: tuple[SqlTarget, SqlTarget],
) -> None:
    deferred_target, sync_target = targets
    settings = deferred_target.settings
    url = sa.engine.make_url(settings.url).render_as_string(hide_password=False)
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CRASH), url, settings.pipeline, str(settings.schema)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        timeout=60,
    )
    first, second = _stream()
    b = sync_target.sink(copy_threshold_rows=10)
    b.apply(SinkBatch(_chunks(first, 0), _state(first, 60)))
    restarted = deferred_target.sink(copy_threshold_rows=10, defer_commit=True)
    held = restarted.applied()
    # the server had the COMMIT: it committed the batch (or, had it not, the row says the first)
    assert held in (_state(first, 60), _state(second, 200))
    if held == _state(second, 200):
        b.apply(SinkBatch(_chunks(second, 60), _state(second, 200)))
    assert _rows(deferred_target) == _rows(sync_target)
    third = _third()
    batch = SinkBatch(_chunks(third, 200), _state(third, 260))
    restarted.apply(batch)
    b.apply(batch)
    restarted.close()
    assert b.applied() == batch.state
    assert _rows(deferred_target) == _rows(sync_target)


def test_a_connection_the_server_dropped_between_batches_is_replaced(
    targets: tuple[SqlTarget, SqlTarget],
) -> None:
    deferred_target, sync_target = targets
    batches = _batches()[:2]
    a = deferred_target.sink(copy_threshold_rows=10, defer_commit=True)
    b = sync_target.sink(copy_threshold_rows=10)
    a.apply(batches[0])
    a.flush()  # the connection is back in the pool, checked in just now (not pinged at checkout)
    with deferred_target.engine.connect() as conn:
        # the sink's connection alone: its last statement wrote this test's own schema's positions
        killed = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle' "
                "AND query LIKE 'UPDATE %' || :schema || '%_headwater_positions%'"
            ),
            {"schema": deferred_target.settings.schema},
        ).all()
    assert killed == [(True,)]
    a.apply(batches[1])  # found dead at its first statement: the batch goes on a new connection
    for batch in batches:
        b.apply(batch)
    assert a.applied() == b.applied() == batches[1].state
    assert _rows(deferred_target) == _rows(sync_target)
