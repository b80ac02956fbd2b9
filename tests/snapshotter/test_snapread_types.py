"""THE value test of issue 9: a snapshot row equals the binlog decoder's image of the same row.

Over the differential test's type table (every column type the decoder handles, with max, min, NULL
and zero-date rows, emoji and empty strings): read the rows as a snapshot chunk, then UPDATE another
column of each row and decode the ``u`` events from the chunk's own boundary with MariaDbBinlogReader.
Every column of the ``r`` row must equal the ``u`` event's after image (type and value), and the chunk's
schema must be the decoder's (same version).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

import pytest

from cdc.core import ChangeEvent, Op
from cdc.core.errors import ZeroDateError
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from cdc.sources.mariadb import ConnectionSettings, MariaDbBinlogReader, ReaderConfig, StartAt, ZeroDatePolicy
from snapshotter.reader import SnapshotReader
from tests.integration.test_binlog_decoder_differential import (
    COLUMNS,
    EMOJI,
    ROW_MAX,
    ROW_MIN,
    ROW_NULLS,
    ROW_ZERO,
)

Sql = Callable[..., list[tuple[object, ...]]]
SERVER_IDS = iter(range(4100, 4200))
# more edge rows than the differential test's: empty and whitespace-only strings, NUL bytes, astral
# emoji in CHAR, negative zero-ish decimals, a time past 24h, the float32 values SELECT rounds
EXTRA = (
    "(5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '0.000000000000000000000000000001', 0.00, 0, 0.333333343267,"
    " 0.1, b'0', b'1000000000', b'1', '2024-02-29', '2024-02-29 00:00:00', '2024-02-29 00:00:00.000',"
    " '2024-02-29 00:00:00.000000', '2024-02-29 23:59:59', '2024-02-29 23:59:59.500000', '25:00:00',"
    " '-00:00:00.000001', 0, ' ', '😀', ' a ', '  ', '\\n', '\\0', x'00', x'0000', x'', x'00',"
    " 'medium', 'red,green,blue', 'null', ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))'),"
    " 'ffffffff-ffff-ffff-ffff-ffffffffffff', '10.0.0.1', '::ffff:1.2.3.4')"
)


def _table(sql: Sql, database: str) -> TableRef:
    ref = TableRef(database, "alltypes")
    columns = COLUMNS.rstrip() + ",\n  touched INT"
    sql(
        f"CREATE TABLE {ref} ({columns}) DEFAULT CHARSET=latin1",
        "SET SESSION sql_mode = ''",
        f"INSERT INTO {ref} VALUES "
        + ", ".join(r[:-1] + ", NULL)" for r in (ROW_MAX, ROW_MIN, ROW_NULLS, ROW_ZERO, EXTRA)),
        "SET SESSION sql_mode = DEFAULT",
    )
    return ref


@pytest.fixture(scope="module")
def alltypes(sql: Sql, database: str) -> TableRef:
    return _table(sql, database)


def _updates(
    stack: StackConnections,
    settings: ConnectionSettings,
    ref: TableRef,
    start: StartAt,
    policy: ZeroDatePolicy,
) -> list[ChangeEvent]:
    cfg = ReaderConfig(
        settings, server_id=next(SERVER_IDS), tables=(str(ref),), blocking=False, zero_dates=policy
    )
    return [r for r in MariaDbBinlogReader(cfg).records(start) if isinstance(r, ChangeEvent)]


@pytest.mark.parametrize("policy", [ZeroDatePolicy.NULL, ZeroDatePolicy.STRING])
def test_snapshot_row_equals_update_after_image_for_every_type(
    stack: StackConnections,
    settings: ConnectionSettings,
    sql: Sql,
    alltypes: TableRef,
    policy: ZeroDatePolicy,
) -> None:
    reader = SnapshotReader(settings, policy)
    try:
        chunk = reader.read_chunk(alltypes, None, 100)
    finally:
        reader.close()
    assert [r[0] for r in chunk.rows] == [1, 2, 3, 4, 5] and chunk.complete and chunk.last_key == (5,)
    sql(f"UPDATE {alltypes} SET touched = COALESCE(touched, 0) + 1")
    # from the chunk's own boundary: the rows' inserts are before it, so only the update follows
    events = _updates(stack, settings, alltypes, StartAt.at(chunk.at), policy)
    assert [e.op for e in events] == [Op.UPDATE] * 5
    assert all(e.position.file >= chunk.at.transaction.file for e in events)
    names = chunk.schema.column_names
    assert events[0].schema == chunk.schema and events[0].schema.version == chunk.schema.version
    problems = []
    for row, event in zip(chunk.rows, events, strict=True):
        assert event.after is not None
        for name, mine, theirs in zip(names, row, event.after, strict=True):
            if name == "touched":
                continue
            if type(mine) is not type(theirs) or mine != theirs:
                problems.append(f"id={row[0]!r} {name}: snapshot={mine!r} binlog={theirs!r}")
    assert problems == [], "\n".join(problems)
    # spot checks that the comparison compared something real
    by = dict(zip(names, chunk.rows[0], strict=True))
    assert (
        by["biu"] == 2**64 - 1 and by["d65"] == Decimal("9" * 35 + "." + "9" * 30) and by["vc_utf"] == EMOJI
    )
    assert by["ts6"] == dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=dt.UTC)
    zero = dict(zip(names, chunk.rows[3], strict=True))
    assert zero["dte"] == (None if policy is ZeroDatePolicy.NULL else "0000-00-00")


def test_zero_date_under_error_policy_names_the_column(
    settings: ConnectionSettings, alltypes: TableRef
) -> None:
    reader = SnapshotReader(settings, ZeroDatePolicy.ERROR)
    try:
        with pytest.raises(ZeroDateError, match=rf"{alltypes}\.dte"):
            reader.read_chunk(alltypes, (3,), 10)
    finally:
        reader.close()
