"""The binlog reader on a promoted replica (issue 8, item 16), against a primary and its GTID
replica (private servers): a restart point written on the primary, inside a transaction, resumes
on the replica by GTID with exactly the rest, in the next era; a replica whose binlogs no longer
reach the restart point's GTID state stops naming it (never skips ahead)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from cdc.core.events import ChangeEvent, SourceRecord, TransactionEnd
from cdc.core.positions import RestartPoint
from cdc.devstack.private_mariadb import PrivateMariaDb
from cdc.sources.mariadb import ConnectionSettings, MariaDbBinlogReader, ReaderConfig, StartAt
from cdc.sources.mariadb.failover import GtidNotOnServer
from tests.support.failover_rig import server_pair


def _reader(server: PrivateMariaDb) -> MariaDbBinlogReader:
    c = server.connection()
    return MariaDbBinlogReader(
        ReaderConfig(
            ConnectionSettings(c.host, c.port, c.user, c.password),
            server_id=random.randint(4350, 4399),
            tables=("failover_r.t",),
            blocking=False,
        )
    )


def _purge_all_but_the_current_binlog(server: PrivateMariaDb) -> None:
    """A private server: ours to purge. A file still in use (its binlog checkpoint not yet written)
    is kept by the server, so try until only the current one is left."""
    deadline = time.monotonic() + 20
    with server.connection().connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        while True:
            cur.execute("SHOW MASTER STATUS")
            (current, *_rest) = cur.fetchone() or ("",)
            cur.execute(f"PURGE BINARY LOGS TO '{current}'")
            cur.execute("SHOW BINARY LOGS")
            if [str(r[0]) for r in cur.fetchall()] == [str(current)]:
                return
            assert time.monotonic() < deadline, "the replica kept its older binlogs"
            time.sleep(0.5)


def _changes(records: list[SourceRecord]) -> list[ChangeEvent]:
    return [r for r in records if isinstance(r, ChangeEvent)]


def test_failover_reader_resumes_inside_a_transaction_by_gtid(tmp_path: Path) -> None:
    primary, replica = server_pair(tmp_path)
    with primary, replica:
        replica.replicate_from(primary)
        with primary.connection().connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE failover_r")
            cur.execute("CREATE TABLE failover_r.t (id INT PRIMARY KEY, v INT)")
            cur.execute("CREATE TABLE failover_r.other (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO failover_r.t VALUES (1, 1)")
            cur.execute("BEGIN")
            cur.execute("INSERT INTO failover_r.t VALUES (2, 1), (3, 1), (4, 1)")
            cur.execute("INSERT INTO failover_r.other VALUES (1)")
            cur.execute("UPDATE failover_r.t SET v = 2 WHERE id = 1")
            cur.execute("COMMIT")
            cur.execute("DELETE FROM failover_r.t WHERE id = 2")
        first = _changes(list(_reader(primary).records(StartAt.coordinates("mariadb-bin.000001", 4))))
        assert [c.key for c in first] == [(1,), (2,), (3,), (4,), (1,), (2,)]
        assert first[2].position.context is not None and first[2].position.era == 0

        replica.wait_for_gtids(primary)
        resume = RestartPoint.after(first[2].position)  # rows 0-1 of the big transaction handled
        again = list(_reader(replica).records(StartAt.at(resume)))
        rest = _changes(again)
        assert [(c.op, c.key, c.after) for c in rest] == [(c.op, c.key, c.after) for c in first[3:]]
        assert all(c.position.era == 1 for c in rest)
        assert rest[0].position.gtid == first[3].position.gtid and rest[0].position.row == 2
        assert rest[0].position > first[-1].position  # the new era sorts after the old one
        end = next(r for r in again if isinstance(r, TransactionEnd))
        assert end.row_count == 4


def test_failover_reader_stops_when_the_replica_purged_the_gtids(tmp_path: Path) -> None:
    primary, replica = server_pair(tmp_path)
    with primary, replica:
        replica.replicate_from(primary)
        with primary.connection().connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE failover_r")
            cur.execute("CREATE TABLE failover_r.t (id INT PRIMARY KEY, v INT)")
            cur.execute("INSERT INTO failover_r.t VALUES (1, 1)")
        first = _changes(list(_reader(primary).records(StartAt.coordinates("mariadb-bin.000001", 4))))
        with primary.connection().connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO failover_r.t VALUES (2, 1)")
        replica.wait_for_gtids(primary)
        _purge_all_but_the_current_binlog(replica)
        resume = RestartPoint.after(first[0].position)
        with pytest.raises(GtidNotOnServer, match="no longer hold the transactions after it"):
            list(_reader(replica).records(StartAt.at(resume)))
