"""BinlogConnection.input_ready answers from what is already buffered, without a syscall.

The reading thread asks it after every transaction (to cut a chunk where nothing more waits). Asking
the kernel each time (select, which releases the GIL) cost single-row transactions a GIL hand-over to
the busy writer thread each, while the stream sat in the 1 MiB read buffer."""

from __future__ import annotations

import random
import select
import time
import uuid

import pytest

from cdc.devstack.connections import StackConnections
from cdc.sources.mariadb.connection import BinlogConnection, ConnectionSettings, DumpStart


def test_input_ready_asks_the_kernel_only_when_the_buffer_is_drained(
    stack: StackConnections, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = stack.mariadb
    db = f"capwrite_{uuid.uuid4().hex[:8]}"
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
        assert row is not None
        cur.execute(f"CREATE DATABASE {db}")
        try:
            cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY)")
            for i in range(40):  # 40 small transactions: a few KiB of binlog
                cur.execute(f"INSERT INTO {db}.t VALUES ({i})")
        finally:
            cur.execute(f"DROP DATABASE {db}")
    selects: list[object] = []
    original = select.select

    def counting(*args: object) -> object:
        selects.append(args)
        return original(*args)  # type: ignore[arg-type]

    binlog = BinlogConnection(
        ConnectionSettings(m.host, m.port, m.user, m.password), random.randrange(7600, 7700), blocking=False
    )
    binlog.open(DumpStart(file=str(row[0]), offset=int(str(row[1]))))
    try:
        events = binlog.events()
        next(events)
        deadline = time.monotonic() + 10
        raw = getattr(binlog, "_raw", None)  # (the code before had none: it always asked select)
        while raw is not None and raw.received <= binlog._consumed:
            assert time.monotonic() < deadline, "the server sent nothing after the first event"
            next(events)
        monkeypatch.setattr(select, "select", counting)
        assert binlog.input_ready()  # the rest of the first read waits in the buffer
        assert selects == []
        rest = list(events)  # non-blocking: up to the end of the binlog as of now
        assert len(rest) > 40
        binlog.input_ready()
        assert len(selects) == 1  # drained: now the socket is asked
    finally:
        binlog.close()
