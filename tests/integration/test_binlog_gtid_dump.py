"""Regression: python-mysql-replication 1.0.17 mis-frames MariaDB's COM_BINLOG_DUMP (length 14 for 15
bytes). The server resets the connection mid-stream and the library reconnects from the same GTID,
so a non-blocking read never reaches the end of the stream. Our framing fixes it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent

from cdc.devstack.connections import StackConnections
from cdc.sources.mariadb.dump_command import FixedBinLogStreamReader, mariadb_binlog_dump

ROWS = 2000
TIME_BOUND_S = 10.0


def test_dump_packet_is_framed_from_its_real_length() -> None:
    packet = mariadb_binlog_dump(server_id=77, flags=1)
    assert int.from_bytes(packet[:3], "little") == len(packet) - 4 == 15


@pytest.fixture(scope="module")
def tail(stack: StackConnections) -> Iterator[tuple[str, str]]:
    """ROWS single-row transactions written after GTID state ``start``."""
    db = stack.mariadb
    conn = db.connect_root(autocommit=True)
    schema = f"hw_gtid_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {schema}")
        cur.execute(f"CREATE TABLE {schema}.t (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
        cur.execute("SELECT @@gtid_binlog_pos")
        row = cur.fetchone()
        assert row is not None
        start = str(row[0])
        for i in range(ROWS):
            cur.execute(f"INSERT INTO {schema}.t (v) VALUES (%s)", (i,))
    yield start, schema
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE {schema}")
    conn.close()


def _read_tail(
    cls: type[BinLogStreamReader], stack: StackConnections, start: str, schema: str
) -> tuple[int, bool]:
    """(rows seen, reached the end of the stream) within TIME_BOUND_S."""
    db = stack.mariadb
    reader = cls(
        {"host": db.host, "port": db.port, "user": db.user, "password": db.password},
        server_id=db.server_id + 7301,
        blocking=False,
        is_mariadb=True,
        auto_position=start,
        only_events=[WriteRowsEvent],
        only_schemas=[schema],
        enable_logging=False,
    )
    rows, deadline = 0, time.monotonic() + TIME_BOUND_S
    try:
        while time.monotonic() < deadline:
            event = reader.fetchone()
            if event is None:
                return rows, True
            rows += len(event.rows)
        return rows, False
    finally:
        reader.close()


def test_fixed_reader_reads_the_whole_tail_non_blocking(
    stack: StackConnections, tail: tuple[str, str]
) -> None:
    rows, finished = _read_tail(FixedBinLogStreamReader, stack, *tail)
    assert finished and rows == ROWS


def test_unpatched_reader_does_not(stack: StackConnections, tail: tuple[str, str]) -> None:
    # Documents the upstream bug this module works around; if it starts passing, the pin moved.
    rows, finished = _read_tail(BinLogStreamReader, stack, *tail)
    assert not (finished and rows == ROWS), "upstream fixed the framing bug: drop FixedBinLogStreamReader"
