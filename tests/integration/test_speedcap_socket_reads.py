"""The binlog stream is read from its socket in large reads (issue 11, capture speed).

Every socket read releases the GIL, and getting it back while the capture daemon's writer thread is
busy takes up to the interpreter's switch interval (5 ms). With pymysql's 8 KiB buffer that was one
wait per 8 KiB of binlog: the profile of 1,000,000 rows in 1000-row statements showed the reading
thread in ``recv_into`` for 85 of its 187 seconds (benchmarks/results/profiles/capture_bulk.binlog.txt)
while the writer waited for it. So the stream asks the socket for up to a mebibyte at a time.
"""

from __future__ import annotations

import random
import socket
from typing import Any

import pytest

from cdc.devstack.connections import StackConnections
from cdc.sources.mariadb.connection import BinlogConnection, ConnectionSettings, DumpStart


def test_the_binlog_stream_asks_its_socket_for_large_reads(
    stack: StackConnections, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = stack.mariadb
    with m.connect_root() as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    assert row is not None
    asked: list[int] = []
    original = socket.SocketIO.readinto

    def readinto(self: socket.SocketIO, buffer: Any) -> int | None:
        asked.append(len(buffer))
        return original(self, buffer)

    monkeypatch.setattr(socket.SocketIO, "readinto", readinto)
    binlog = BinlogConnection(
        ConnectionSettings(m.host, m.port, m.user, m.password),
        random.randrange(7500, 7600),
        blocking=False,
    )
    binlog.open(DumpStart(file=str(row[0]), offset=int(str(row[1]))))
    try:
        events = list(binlog.events())  # non-blocking: ends at the binlog's end as of now
    finally:
        binlog.close()
    assert events  # at least the ROTATE and FORMAT_DESCRIPTION that open every dump
    reads = asked[-1:]  # the dump's reads come after the session set-up's
    assert reads and reads[0] >= 1 << 20, f"socket reads of {asked} bytes"
