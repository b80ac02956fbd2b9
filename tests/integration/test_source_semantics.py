"""What the MariaDB source emits for the cases issue 8 found unsafe, against the real server.

Each test writes in its own database (``decoder_<random>``) with SESSION settings only, then reads the
binlog range it wrote with a non-blocking reader (replica server_ids 61000-61999).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pymysql.cursors
import pytest

from cdc.core import ChangeEvent, Op, RestartPoint, SchemaChange, TransactionEnd
from cdc.core.errors import SourceSettingsError, SourceUnavailable
from cdc.core.events import SourceProgress, SourceRecord
from cdc.core.schema_evolution import diff_schemas
from cdc.devstack.connections import StackConnections
from cdc.sources.mariadb import ConnectionSettings, MariaDbBinlogReader, ReaderConfig, StartAt
from cdc.sources.mariadb.connection import connect
from cdc.sources.mariadb.table_engines import is_transactional

CAPTURED = ("t", "k", "m")  # "other" is not captured


@dataclass
class Db:
    cur: pymysql.cursors.Cursor
    name: str
    stack: StackConnections

    def coordinates(self) -> StartAt:
        self.cur.execute("SHOW MASTER STATUS")
        row = self.cur.fetchone()
        assert row is not None
        return StartAt.coordinates(str(row[0]), int(row[1]))

    def reader(self, tables: tuple[str, ...] = CAPTURED, blocking: bool = False) -> MariaDbBinlogReader:
        m = self.stack.mariadb
        return MariaDbBinlogReader(
            ReaderConfig(
                ConnectionSettings(m.host, m.port, m.user, m.password),
                server_id=random.randint(61000, 61999),
                tables=tuple(f"{self.name}.{t}" for t in tables),
                blocking=blocking,
                heartbeat_s=1.0,
            )
        )

    def read(self, start: StartAt, tables: tuple[str, ...] = CAPTURED) -> list[SourceRecord]:
        return list(self.reader(tables).records(start))


@pytest.fixture
def db(stack: StackConnections) -> Iterator[Db]:
    name = f"decoder_{uuid.uuid4().hex[:8]}"
    conn = stack.mariadb.connect_root(autocommit=True, charset="utf8mb4")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"CREATE TABLE {name}.t (id INT PRIMARY KEY, v INT, w VARCHAR(10)) ENGINE=InnoDB")
        cur.execute(f"CREATE TABLE {name}.k (a INT, b INT) ENGINE=InnoDB")  # keyless
        cur.execute(f"CREATE TABLE {name}.m (id INT PRIMARY KEY, v INT) ENGINE=MyISAM")
        cur.execute(f"CREATE TABLE {name}.other (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        yield Db(cur, name, stack)
        cur.execute(f"DROP DATABASE {name}")
    conn.close()


def changes(records: Sequence[SourceRecord]) -> list[ChangeEvent]:
    return [r for r in records if isinstance(r, ChangeEvent)]


def summary(records: Sequence[SourceRecord]) -> list[tuple[str, str, object, object, object]]:
    return [(c.op.value, c.table.table, c.key, c.before, c.after) for c in changes(records)]


# -- item 1: statement-logged DML and partial row images on captured tables ---------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO {db}.t VALUES (1, 1, 'a')",
        "REPLACE INTO {db}.t VALUES (0, 1, 'b')",
        "UPDATE {db}.t SET v = 2 WHERE id = 0",
        "UPDATE {db}.other o JOIN {db}.t x ON x.id = o.id SET x.v = 3",
        "DELETE FROM {db}.t WHERE id = 0",
    ],
    ids=["insert", "replace", "update", "multi-table-update", "delete"],
)
def test_statement_logged_dml_on_a_captured_table_stops_naming_table_position_and_fix(
    db: Db, statement: str
) -> None:
    db.cur.execute(f"INSERT INTO {db.name}.t VALUES (0, 0, 'z')")
    start = db.coordinates()
    db.cur.execute("SET SESSION binlog_format = 'STATEMENT'")
    db.cur.execute(f"INSERT INTO {db.name}.other VALUES (1, 1)")  # not captured: ignored
    db.cur.execute(statement.format(db=db.name))
    db.cur.execute("SET SESSION binlog_format = 'ROW'")
    with pytest.raises(SourceSettingsError) as caught:
        db.read(start)
    message = str(caught.value)
    assert f"{db.name}.t" in message and "binlog_format=ROW" in message
    assert "-bin.0" in message and "GTID 0-1-" in message


def test_statement_logged_load_data_on_a_captured_table_stops(db: Db, tmp_path: Path) -> None:
    data = tmp_path / "rows.tsv"
    data.write_text("1\t1\ta\n2\t2\tb\n")
    start = db.coordinates()
    with db.stack.mariadb.connect_root(autocommit=True, local_infile=True) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION binlog_format = 'STATEMENT'")
        cur.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE {db.name}.t", (str(data),))
    with pytest.raises(SourceSettingsError, match=rf"{db.name}\.t: a LOAD statement .*binlog_format=ROW"):
        db.read(start)


def test_statement_logged_dml_on_other_tables_is_ignored(db: Db) -> None:
    start = db.coordinates()
    db.cur.execute("SET SESSION binlog_format = 'STATEMENT'")
    db.cur.execute(f"INSERT INTO {db.name}.other VALUES (1, 1)")
    db.cur.execute(f"UPDATE {db.name}.other SET v = 2")
    db.cur.execute("SET SESSION binlog_format = 'ROW'")
    db.cur.execute(f"INSERT INTO {db.name}.t VALUES (1, 1, 'a')")
    assert summary(db.read(start)) == [("c", "t", (1,), None, (1, 1, "a"))]


@pytest.mark.parametrize(
    "statement",
    ["UPDATE {db}.t SET v = 9 WHERE id = 1", "DELETE FROM {db}.t WHERE id = 1"],
    ids=["update", "delete"],
)
def test_partial_row_image_on_a_captured_table_stops_naming_table_position_and_fix(
    db: Db, statement: str
) -> None:
    db.cur.execute(f"INSERT INTO {db.name}.t VALUES (1, 1, 'a')")
    start = db.coordinates()
    db.cur.execute("SET SESSION binlog_row_image = 'MINIMAL'")
    db.cur.execute(f"INSERT INTO {db.name}.other VALUES (1, 1)")
    db.cur.execute(f"UPDATE {db.name}.other SET v = 2")  # not captured: ignored
    db.cur.execute(statement.format(db=db.name))
    db.cur.execute("SET SESSION binlog_row_image = 'FULL'")
    with pytest.raises(SourceSettingsError) as caught:
        db.read(start)
    message = str(caught.value)
    assert f"{db.name}.t" in message and "binlog_row_image=FULL" in message
    assert "-bin.0" in message and "GTID 0-1-" in message


# -- item 6: primary-key change --------------------------------------------------------------------


def test_primary_key_change_is_a_delete_then_a_create_with_stable_positions(db: Db) -> None:
    db.cur.execute(f"INSERT INTO {db.name}.t VALUES (1, 10, 'a'), (2, 20, 'b')")
    db.cur.execute(f"INSERT INTO {db.name}.k VALUES (1, 1)")
    start = db.coordinates()
    db.cur.execute(f"UPDATE {db.name}.t SET id = id + 10 ORDER BY id DESC")
    db.cur.execute(f"UPDATE {db.name}.t SET v = 11 WHERE id = 11")  # key unchanged: u
    db.cur.execute(f"UPDATE {db.name}.k SET a = 2")  # keyless: u
    records = db.read(start)
    assert summary(records) == [
        ("d", "t", (2,), (2, 20, "b"), None),
        ("c", "t", (12,), None, (12, 20, "b")),
        ("d", "t", (1,), (1, 10, "a"), None),
        ("c", "t", (11,), None, (11, 10, "a")),
        ("u", "t", (11,), (11, 10, "a"), (11, 11, "a")),
        ("u", "k", None, (1, 1), (2, 1)),
    ]
    first_tx = changes(records)[:4]
    assert [c.position.row for c in first_tx] == [0, 1, 2, 3]
    assert len({c.position.offset for c in first_tx}) == 1
    ends = [r for r in records if isinstance(r, TransactionEnd)]
    assert ends[0].last_position == first_tx[-1].position
    assert changes(db.read(start)) == changes(records)  # re-reading gives identical positions
    # a restart between the delete and the create of one key change resumes with the create
    again = db.read(StartAt.at(RestartPoint.after(first_tx[0].position)))
    assert changes(again) == changes(records)[1:]


# -- item 14: ROLLBACK TO SAVEPOINT -------------------------------------------------------------------


def test_rollback_to_savepoint_drops_the_undone_rows_and_keeps_the_rest(db: Db) -> None:
    start = db.coordinates()
    d = db.name
    db.cur.execute("BEGIN")
    db.cur.execute(f"INSERT INTO {d}.m VALUES (1, 1)")  # non-transactional: stays at the source
    db.cur.execute(f"INSERT INTO {d}.t VALUES (1, 1, 'kept')")
    db.cur.execute("SAVEPOINT sp1")
    db.cur.execute(f"INSERT INTO {d}.t VALUES (2, 2, 'undone')")
    db.cur.execute(f"UPDATE {d}.t SET w = 'undone' WHERE id = 1")
    db.cur.execute(f"INSERT INTO {d}.m VALUES (2, 2)")
    db.cur.execute("SAVEPOINT sp2")
    db.cur.execute(f"INSERT INTO {d}.t VALUES (3, 3, 'undone')")
    db.cur.execute("ROLLBACK TO SAVEPOINT sp1")
    db.cur.execute(f"INSERT INTO {d}.t VALUES (4, 4, 'kept')")
    db.cur.execute("SAVEPOINT sp3")
    db.cur.execute(f"INSERT INTO {d}.t VALUES (5, 5, 'kept')")
    db.cur.execute("COMMIT")
    db.cur.execute(f"SELECT id, v, w FROM {d}.t ORDER BY id")
    assert db.cur.fetchall() == ((1, 1, "kept"), (4, 4, "kept"), (5, 5, "kept"))
    records = db.read(start)
    assert summary(records) == [
        ("c", "m", (1,), None, (1, 1)),
        ("c", "m", (2,), None, (2, 2)),
        ("c", "t", (1,), None, (1, 1, "kept")),
        ("c", "t", (4,), None, (4, 4, "kept")),
        ("c", "t", (5,), None, (5, 5, "kept")),
    ]
    kept = changes(records)[2:]
    positions = [c.position for c in kept]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert changes(db.read(start)) == changes(records)  # deterministic across re-reads
    # a restart after the first kept row of the transaction gives exactly the rest
    again = db.read(StartAt.at(RestartPoint.after(positions[0])))
    assert changes(again) == kept[1:]


def test_rollback_to_a_savepoint_at_the_transaction_start_drops_the_undone_rows(db: Db) -> None:
    # The savepoint precedes every logged change: MariaDB logs the undone rows and a final ROLLBACK.
    start = db.coordinates()
    d = db.name
    db.cur.execute("BEGIN")
    db.cur.execute("SAVEPOINT first")
    db.cur.execute(f"INSERT INTO {d}.m VALUES (1, 1)")
    db.cur.execute(f"INSERT INTO {d}.t VALUES (1, 1, 'undone')")
    db.cur.execute("ROLLBACK TO SAVEPOINT first")
    db.cur.execute("COMMIT")
    db.cur.execute(f"INSERT INTO {d}.t VALUES (2, 2, 'kept')")
    assert summary(db.read(start)) == [("c", "m", (1,), None, (1, 1)), ("c", "t", (2,), None, (2, 2, "kept"))]


def test_engine_lookup_tells_myisam_from_innodb(db: Db) -> None:
    m = db.stack.mariadb
    with connect(ConnectionSettings(m.host, m.port, m.user, m.password)) as conn, conn.cursor() as cur:
        assert is_transactional(cur, db.name, "t") and not is_transactional(cur, db.name, "m")
        assert is_transactional(cur, db.name, "no_such_table")


# -- item 3: progress through other tables' transactions and heartbeats ------------------------------


def test_progress_after_foreign_transactions_resumes_without_loss_or_duplicate(db: Db) -> None:
    start = db.coordinates()
    d = db.name
    db.cur.execute(f"INSERT INTO {d}.t VALUES (1, 1, 'a')")
    for i in range(20):
        db.cur.execute(f"INSERT INTO {d}.other VALUES ({i}, {i})")
    db.cur.execute(f"INSERT INTO {d}.t VALUES (2, 2, 'b'), (3, 3, 'c')")
    db.cur.execute(f"INSERT INTO {d}.other VALUES (100, 100)")
    db.cur.execute(f"UPDATE {d}.t SET v = 4 WHERE id = 2")
    reader = db.reader()
    stream = reader.records(start)
    assert reader.decoder is not None
    reader.decoder.progress_interval_s = 0.0  # other sessions write too: no throttle, no flakiness
    records = list(stream)
    first_end = next(i for i, r in enumerate(records) if isinstance(r, TransactionEnd))
    cut = next(i for i, r in enumerate(records) if isinstance(r, SourceProgress) and i > first_end)
    progress = records[cut]
    assert isinstance(progress, SourceProgress) and progress.restart.skip_rows == 0
    previous_end = records[first_end]
    assert isinstance(previous_end, TransactionEnd)
    assert progress.restart.transaction > previous_end.last_position
    # resuming at the progress point gives exactly what followed it: no loss, no duplicate
    again = db.read(StartAt.at(progress.restart))
    after = [r for r in records[cut + 1 :] if not isinstance(r, SourceProgress)]
    assert [r for r in again if not isinstance(r, SourceProgress)] == after
    assert [c.key for c in changes(after)] == [(2,), (3,), (2,)]


def test_progress_while_idle_resumes_there(db: Db) -> None:
    d = db.name
    db.cur.execute(f"INSERT INTO {d}.other VALUES (1, 1)")
    reader = db.reader(blocking=True)
    stream = reader.records(StartAt.current())
    db.cur.execute(f"INSERT INTO {d}.t VALUES (1, 1, 'a')")
    seen: list[SourceRecord] = []
    watchdog = threading.Timer(10, reader.close)  # without progress records nothing else ends the read
    watchdog.start()
    try:
        for record in stream:
            seen.append(record)
            if isinstance(record, SourceProgress) and changes(seen):
                break
    except SourceUnavailable:
        pass
    finally:
        watchdog.cancel()
        reader.close()
    beat = seen[-1]
    assert isinstance(beat, SourceProgress), seen
    assert summary(seen) == [("c", "t", (1,), None, (1, 1, "a"))]
    # On an idle server this is a heartbeat at the server's end; other sessions' transactions on the
    # shared server give progress records too, at or before the end.
    here = db.coordinates()
    point = beat.restart.transaction
    assert (point.file_seq, point.offset) <= (int(str(here.file).rsplit(".", 1)[1]), here.offset)
    assert point > changes(seen)[0].position and point.gtid.seq >= changes(seen)[0].position.gtid.seq
    assert abs(beat.source_ts_ms / 1000 - time.time()) < 30
    db.cur.execute(f"INSERT INTO {d}.t VALUES (2, 2, 'b')")
    assert summary(db.read(StartAt.at(beat.restart))) == [("c", "t", (2,), None, (2, 2, "b"))]


# -- item 7: TRUNCATE as a table's first event after a restart ----------------------------------------


def test_truncate_first_after_a_restart_has_the_empty_schema_and_else_the_last_seen(db: Db) -> None:
    start = db.coordinates()
    db.cur.execute(f"INSERT INTO {db.name}.t VALUES (1, 1, 'a')")
    db.cur.execute(f"TRUNCATE TABLE {db.name}.t")
    records = db.read(start)
    insert, truncate = changes(records)
    assert truncate.op is Op.TRUNCATE and truncate.schema == insert.schema  # seen earlier in the stream
    at_truncate = StartAt.at(RestartPoint(truncate.position.at_row(0)))  # its GTID event: no TABLE_MAP before
    resumed = changes(db.read(at_truncate))
    assert [c.op for c in resumed] == [Op.TRUNCATE]
    empty = resumed[0].schema
    assert empty.ref == truncate.schema.ref and empty.columns == () and empty.primary_key == ()
    assert changes(db.read(at_truncate)) == resumed  # deterministic: the same empty shape and version


# -- item 8: RENAME COLUMN / DROP COLUMN give the next rows a new schema -----------------------------


def test_rename_and_drop_column_reach_the_next_rows_as_new_schema_versions(db: Db) -> None:
    d = db.name
    start = db.coordinates()
    db.cur.execute(f"INSERT INTO {d}.t VALUES (1, 1, 'a')")
    db.cur.execute(f"ALTER TABLE {d}.t RENAME COLUMN v TO v2")
    db.cur.execute(f"INSERT INTO {d}.t VALUES (2, 2, 'b')")
    db.cur.execute(f"ALTER TABLE {d}.t DROP COLUMN v2")
    db.cur.execute(f"UPDATE {d}.t SET w = 'c' WHERE id = 2")
    records = db.read(start)
    rows = changes(records)
    assert [c.schema.column_names for c in rows] == [("id", "v", "w"), ("id", "v2", "w"), ("id", "w")]
    assert rows[2].before == (2, "b") and rows[2].after == (2, "c")
    assert len({c.schema_version for c in rows}) == 3
    ddl = [r for r in records if isinstance(r, SchemaChange)]
    assert [r.previous_version for r in ddl] == [rows[0].schema_version, rows[1].schema_version]
    renamed = diff_schemas(rows[0].schema, rows[1].schema)
    assert [(o.name, n.name) for o, n in renamed.renamed] == [("v", "v2")] and not renamed.dropped
    dropped = diff_schemas(rows[1].schema, rows[2].schema)
    assert [c.name for c in dropped.dropped] == ["v2"] and not dropped.renamed
