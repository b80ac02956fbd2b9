"""The MariaDB reader against a live server: start points, restart inside a transaction, purged binlog."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pymysql
import pytest

from cdc.core import BinlogPurged, ChangeEvent, Gtid, Op, Position, RestartPoint, SchemaChange, TransactionEnd
from cdc.devstack.connections import StackConnections
from cdc.sources.mariadb import ConnectionSettings, MariaDbBinlogReader, ReaderConfig, StartAt


@pytest.fixture
def db(stack: StackConnections) -> Iterator[tuple[pymysql.cursors.Cursor, str]]:
    m = stack.mariadb
    conn = m.connect_root(autocommit=True, charset="utf8mb4")
    schema = f"hw_reader_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {schema}")
        cur.execute(f"CREATE TABLE {schema}.t (id INT PRIMARY KEY, v VARCHAR(20)) DEFAULT CHARSET=utf8mb4")
        cur.execute(f"CREATE TABLE {schema}.other (id INT PRIMARY KEY)")
        yield cur, schema
        cur.execute(f"DROP DATABASE {schema}")
    conn.close()


def _reader(
    stack: StackConnections, schema: str, offset: int = 0, blocking: bool = False
) -> MariaDbBinlogReader:
    m = stack.mariadb
    return MariaDbBinlogReader(
        ReaderConfig(
            ConnectionSettings(m.host, m.port, m.user, m.password),
            server_id=m.server_id + 7310 + offset,
            tables=(f"{schema}.t",),
            blocking=blocking,
            heartbeat_s=1.0,
        )
    )


def test_start_at_current_then_restart_inside_a_transaction(
    stack: StackConnections, db: tuple[pymysql.cursors.Cursor, str]
) -> None:
    cur, schema = db
    # blocking: a non-blocking dump would end at the binlog's end as of connecting, before the writes
    reader = _reader(stack, schema, blocking=True)
    records = reader.records(StartAt.current())
    cur.execute(f"INSERT INTO {schema}.t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    cur.execute(f"INSERT INTO {schema}.other VALUES (1)")  # filtered out
    cur.execute(f"UPDATE {schema}.t SET v = 'z' WHERE id = 2")
    cur.execute(f"ALTER TABLE {schema}.t ADD COLUMN w INT")
    cur.execute(f"DELETE FROM {schema}.t WHERE id = 3")
    got = []
    for record in records:
        got.append(record)
        if isinstance(record, ChangeEvent) and record.op is Op.DELETE:
            break
    reader.close()
    changes = [r for r in got if isinstance(r, ChangeEvent)]
    assert [c.op for c in changes] == [Op.CREATE] * 3 + [Op.UPDATE, Op.DELETE]
    assert [c.key for c in changes] == [(1,), (2,), (3,), (2,), (3,)]
    assert [type(r) for r in got].count(SchemaChange) == 1
    assert changes[-1].schema.column_names == ("id", "v", "w")
    assert changes[-1].schema_version != changes[0].schema_version

    # restart after the second row of the multi-row insert: exactly the rest comes back
    again = list(_reader(stack, schema, 1).records(StartAt.at(RestartPoint.after(changes[1].position))))
    again_changes = [r for r in again if isinstance(r, ChangeEvent)]
    assert again_changes == changes[2:]
    assert isinstance(again[1], TransactionEnd) and again[1].row_count == 3


def test_start_after_gtid(stack: StackConnections, db: tuple[pymysql.cursors.Cursor, str]) -> None:
    cur, schema = db
    cur.execute("SELECT @@gtid_binlog_pos")
    row = cur.fetchone()
    assert row is not None
    cur.execute(f"INSERT INTO {schema}.t VALUES (10, '😀')")
    records = _reader(stack, schema, 2).records(StartAt.gtid(str(row[0])))
    got = [r for r in records if isinstance(r, ChangeEvent)]
    assert len(got) == 1 and got[0].after == (10, "😀")


def test_purged_binlog_is_terminal_and_says_bootstrap(
    stack: StackConnections, db: tuple[pymysql.cursors.Cursor, str]
) -> None:
    _cur, schema = db
    gone = RestartPoint(Position(Gtid(0, 1, 1), "mysql-bin.999999", 4))
    with pytest.raises(BinlogPurged, match="cdc bootstrap"):
        list(_reader(stack, schema, 3).records(StartAt.at(gone)))


def test_rotation_moves_positions_to_the_next_file(
    stack: StackConnections, db: tuple[pymysql.cursors.Cursor, str]
) -> None:
    cur, schema = db
    cur.execute("SELECT @@gtid_binlog_pos")
    row = cur.fetchone()
    assert row is not None
    cur.execute(f"INSERT INTO {schema}.t VALUES (20, 'before')")
    cur.execute("FLUSH BINARY LOGS")
    cur.execute(f"INSERT INTO {schema}.t VALUES (21, 'after')")
    changes = [
        r for r in _reader(stack, schema, 4).records(StartAt.gtid(str(row[0]))) if isinstance(r, ChangeEvent)
    ]
    assert [c.key for c in changes] == [(20,), (21,)]
    before, after = changes[0].position, changes[1].position
    assert after.file_seq == before.file_seq + 1 and after > before
    assert after.to_string() > before.to_string()
