"""Keyset chunks: every row exactly once, in the server's key order, whatever the key's type.

String keys are compared in the column's collation (case- and accent-insensitive ones included, and a
NO PAD one where 'a' and 'a ' are two keys), binary keys byte-wise, unsigned BIGINT across 2^63.
"""

from __future__ import annotations

from collections.abc import Callable

import MySQLdb
import pytest

from cdc.core import ChangeEvent
from cdc.core.errors import TableHasNoKey, TransientError
from cdc.core.events import RowImage
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from cdc.sources.mariadb import ConnectionSettings, MariaDbBinlogReader, ReaderConfig, StartAt, ZeroDatePolicy
from snapshotter.keyset import chunk_sql
from snapshotter.reader import ChunkRead, SnapshotReader
from snapshotter.table_dictionary import COLUMNS_QUERY, KEYS_QUERY, build_dictionary

Sql = Callable[..., list[tuple[object, ...]]]

# name -> (columns, rows); each row's keys chosen so that binary order, case and accents disagree
TABLES = {
    "ci": (
        "s VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci PRIMARY KEY, v INT",
        ["('a',1)", "('B',2)", "('c',3)", "('D',4)", "('é1',5)", "('E2',6)", "('Z',7)", "('',8)", "(' x',9)",
         "('😀',10)", "('zz',11)", "('Ä1',12)", "('bb ',13)"],
    ),
    "comp_ci": (
        "g INT, s VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci, v INT, PRIMARY KEY (g, s)",
        [f"({g},'{s}',{i})" for i, (g, s) in enumerate(
            [(1, "a"), (2, "A"), (3, "á"), (1, "B"), (2, "b"), (1, "c "), (3, "C"), (2, ""), (4, "Ä")])],
    ),
    "nopad": (
        "s VARBINARY(20), t VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin, PRIMARY KEY (t)",
        ["('1','a')", "('2','a ')", "('3','A')", "('4','á')", "('5','a  ')", "('6','')", "('7',' ')"],
    ),
    "latin": (
        "s CHAR(10) CHARACTER SET latin1 COLLATE latin1_swedish_ci, g TINYINT, PRIMARY KEY (g, s)",
        ["('€',1)", "('å',1)", "('Å',2)", "('a',1)", "('z',1)", "('ÿ',2)", "('Ö',1)"],
    ),
    "bin": (
        "b VARBINARY(8), f BINARY(4), PRIMARY KEY (b, f)",
        ["(x'00', x'00')", "(x'', x'01')", "(x'0000', x'00')", "(x'ff', x'ff')", "(x'7f', x'00000001')",
         "(x'00', x'0000000001')" if False else "(x'00', x'02')", "(x'80', x'')"],
    ),
    "ubig": (
        "id BIGINT UNSIGNED PRIMARY KEY, v INT",
        [f"({v},1)" for v in (0, 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 2, 2**64 - 1, 12345)],
    ),
    "mixed": (
        "d DATE, t TIME(6), e ENUM('zeta','alpha','mid'), f DOUBLE, ts TIMESTAMP(3) NOT NULL,"
        " PRIMARY KEY (d, t, e, f, ts)",
        ["('2024-01-01','-01:00:00.5','alpha',0.1,'2024-01-01 00:00:00.001')",
         "('2024-01-01','-01:00:00.5','zeta',0.1,'2024-01-01 00:00:00.001')",
         "('2024-01-01','-01:00:00.5','zeta',0.30000000000000004,'2024-01-01 00:00:00.001')",
         "('2024-01-01','-01:00:00.5','zeta',0.30000000000000004,'2024-01-01 00:00:00.002')",
         "('2024-01-01','00:00:00','mid',0,'1970-01-01 00:00:01')",
         "('2024-01-01','838:59:59','mid',0,'1970-01-01 00:00:01')",
         "('1000-01-01','00:00:00','mid',0,'2038-01-19 03:14:07')"],
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def tables(sql: Sql, database: str) -> dict[str, TableRef]:
    refs = {}
    for name, (columns, rows) in TABLES.items():
        ref = refs[name] = TableRef(database, name)
        sql(f"CREATE TABLE {ref} ({columns})", f"INSERT INTO {ref} VALUES {', '.join(rows)}")
    return refs


@pytest.fixture
def reader(settings: ConnectionSettings) -> SnapshotReader:
    return SnapshotReader(settings, ZeroDatePolicy.NULL)


def _paged(reader: SnapshotReader, ref: TableRef, limit: int) -> list[ChunkRead]:
    chunks: list[ChunkRead] = []
    after: RowImage | None = None
    while not (chunks and chunks[-1].complete):
        chunk = reader.read_chunk(ref, after, limit)
        assert len(chunk.rows) <= limit
        chunks.append(chunk)
        after = chunk.last_key if chunk.rows else after
        assert len(chunks) < 100
    return chunks


@pytest.mark.parametrize("name", list(TABLES))
def test_every_row_once_in_key_order(
    reader: SnapshotReader, sql: Sql, tables: dict[str, TableRef], name: str
) -> None:
    ref = tables[name]
    count = int(str(sql(f"SELECT COUNT(*) FROM {ref}")[0][0]))
    whole = reader.read_chunk(ref, None, 1000).rows  # the server's ORDER BY of the key, in one go
    assert len(whole) == count == len(TABLES[name][1])
    for limit in (1, 2, 3):
        rows = [row for chunk in _paged(reader, ref, limit) for row in chunk.rows]
        assert rows == list(whole), f"limit {limit}"
    reader.close()


def test_chunks_are_bounded_and_complete_is_exact(
    reader: SnapshotReader, tables: dict[str, TableRef]
) -> None:
    ref = tables["ubig"]
    first = reader.read_chunk(ref, None, 4)
    assert len(first.rows) == 4 and not first.complete and first.last_key == (2**63 - 1,)
    second = reader.read_chunk(ref, first.last_key, 4)
    assert len(second.rows) == 4 and not second.complete and second.last_key == (2**64 - 1,)
    last = reader.read_chunk(ref, second.last_key, 4)
    assert last.rows == () and last.complete and last.last_key is None
    reader.close()


def test_keyset_predicate_is_a_primary_key_range(
    stack: StackConnections, tables: dict[str, TableRef]
) -> None:
    db = stack.mariadb
    conn = MySQLdb.connect(host=db.host, port=db.port, user=db.user, password=db.password, charset="utf8mb4")
    try:
        cur = conn.cursor()
        for name, after in (("comp_ci", (1, "B")), ("ubig", (2**63,)), ("latin", (1, "å"))):
            ref = tables[name]
            cur.execute(COLUMNS_QUERY, (ref.db, ref.table))
            columns = cur.fetchall()
            cur.execute(KEYS_QUERY, (ref.db, ref.table))
            d = build_dictionary(ref, columns, cur.fetchall())
            q = chunk_sql(d, after, 10)
            cur.execute("EXPLAIN " + q.sql, q.params)
            (plan,) = cur.fetchall()
            assert plan[3] == "range" and plan[5] == "PRIMARY", plan  # type, key
    finally:
        conn.close()


def test_keyless_table_is_refused_by_name_and_read_whole(
    settings: ConnectionSettings, sql: Sql, database: str
) -> None:
    ref = TableRef(database, "keyless")
    sql(
        f"CREATE TABLE {ref} (a INT, b VARCHAR(10))",
        f"INSERT INTO {ref} SELECT seq, 'x' FROM {database}.seq_1_to_25",
    )
    reader = SnapshotReader(settings, ZeroDatePolicy.NULL)
    try:
        with pytest.raises(TableHasNoKey, match=f"{ref}.*primary key"):
            reader.read_chunk(ref, None, 10)
        batches = list(reader.read_all(ref, batch=10))
        assert [len(b.rows) for b in batches] == [10, 10, 5]
        assert [b.complete for b in batches] == [False, False, True]
        assert len({b.at for b in batches}) == 1 and all(b.last_key is None for b in batches)
        assert sorted(r[0] for b in batches for r in b.rows) == list(range(1, 26))
        exact = list(reader.read_all(ref, batch=25))  # a last batch exactly full: one batch, complete
        assert [(len(b.rows), b.complete) for b in exact] == [(25, True)]
    finally:
        reader.close()


def test_one_view_sees_one_instant_and_separate_views_move_on(
    settings: ConnectionSettings, sql: Sql, database: str
) -> None:
    ref = TableRef(database, "views")
    sql(
        f"CREATE TABLE {ref} (id INT PRIMARY KEY, v INT)",
        f"INSERT INTO {ref} SELECT seq, 0 FROM {database}.seq_1_to_10",
    )
    one = SnapshotReader(settings, ZeroDatePolicy.NULL, one_view=True)
    each = SnapshotReader(settings, ZeroDatePolicy.NULL)
    try:
        a1, e1 = one.read_chunk(ref, None, 5), each.read_chunk(ref, None, 5)
        sql(f"UPDATE {ref} SET v = 1 WHERE id = 8", f"INSERT INTO {ref} VALUES (11, 1)")
        a2, e2 = one.read_chunk(ref, a1.last_key, 100), each.read_chunk(ref, e1.last_key, 100)
        assert a1.at == a2.at  # one view: one boundary
        assert [r[1] for r in a2.rows] == [0] * 5 and a2.complete
        assert e2.at.transaction > e1.at.transaction
        assert [r for r in e2.rows if r[1]] == [(8, 1), (11, 1)]
        one.release_view()
        assert one.read_chunk(ref, None, 100).at.transaction >= e2.at.transaction  # a new view
        keys = each.read_keys(ref, [(11,), (3,), (99,)])
        assert keys.rows == ((3, 0), (11, 1)) and keys.last_key == (11,)
    finally:
        one.close()
        each.close()


def test_schema_equals_the_decoders_for_promoted_and_reordered_keys(
    stack: StackConnections, settings: ConnectionSettings, sql: Sql, database: str
) -> None:
    shapes = {
        "uniq": "a INT NULL, b VARCHAR(5) NOT NULL, c INT NOT NULL, UNIQUE KEY (c, b)",
        "rev": "a INT, b INT, c TEXT, PRIMARY KEY (b, a)",
        "plain": "a INT",
    }
    (start,) = sql("SELECT @@gtid_binlog_pos")[0]
    for name, columns in shapes.items():
        sql(
            f"CREATE TABLE {database}.{name} ({columns})",
            f"INSERT INTO {database}.{name} (a) VALUES (1)"
            if name == "plain"
            else f"INSERT INTO {database}.{name} VALUES (1, '2', 3)",
        )
    cfg = ReaderConfig(settings, server_id=4150, tables=(f"{database}.*",), blocking=False)
    decoded = {
        r.schema.table: r.schema
        for r in MariaDbBinlogReader(cfg).records(StartAt.gtid(str(start)))
        if isinstance(r, ChangeEvent)
    }
    reader = SnapshotReader(settings, ZeroDatePolicy.NULL)
    try:
        for name in shapes:
            assert reader.table_schema(TableRef(database, name)) == decoded[name], name
        assert decoded["uniq"].primary_key == ("c", "b") and decoded["rev"].primary_key == ("b", "a")
    finally:
        reader.close()


def test_boundary_gtid_is_binlog_gtid_pos_of_the_boundary(
    settings: ConnectionSettings, sql: Sql, tables: dict[str, TableRef]
) -> None:
    reader = SnapshotReader(settings, ZeroDatePolicy.NULL)
    try:
        for i in range(4):
            if i % 2:
                sql(f"UPDATE {tables['ubig']} SET v = v + 1 WHERE id = 0")  # the binlog moves on
            tx = reader.read_chunk(tables["ubig"], None, 1).at.transaction
            ((state, domain),) = sql(f"SELECT BINLOG_GTID_POS('{tx.file}', {tx.offset}), @@gtid_domain_id")
            own = [g for g in str(state).split(",") if g.startswith(f"{domain}-")]
            assert str(tx.gtid) == own[-1]
    finally:
        reader.close()


def test_a_lost_connection_is_transient_and_the_next_read_reconnects(
    settings: ConnectionSettings, sql: Sql, tables: dict[str, TableRef]
) -> None:
    reader = SnapshotReader(settings, ZeroDatePolicy.NULL, one_view=True)
    try:
        first = reader.read_chunk(tables["ubig"], None, 2)
        connection_id = reader._conn.thread_id()  # this reader's own session
        sql(f"KILL {connection_id}")
        with pytest.raises(TransientError):
            reader.read_chunk(tables["ubig"], first.last_key, 2)
        again = reader.read_chunk(tables["ubig"], first.last_key, 2)  # a new connection, a new view
        assert len(again.rows) == 2 and again.at.transaction >= first.at.transaction
    finally:
        reader.close()
