"""The in-sync compare's cheaper digests and its source row count (issue 10, recon2x).

The digest text (``canonical.digest_text``) joins fields with a binary separator and gives a text
column as its character count and its UTF-8 text: equal across MariaDB (any character set) and
PostgreSQL, and different when a value's end moves. The source's rows are no longer counted before
the compare (the table statistics size the slices): a wrong estimate, or a resumed run's progress
without the source's count, must still give the exact count and find exactly the drift.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from cdc.core.schemas import ArrowKind, TableRef
from cdc.devstack.connections import StackConnections
from reconciler.canonical import Engine, digest_text
from reconciler.compare import CompareSettings, Resumed, ResumedChunks, compare
from reconciler.model import CompareColumn, DriftKind, KeyRange, RowDrift
from reconciler.stores import SqlRunner, Store

ROWS = 30_000
TEXTS = [  # (a: latin1, b: utf8mb4 NULL, c: utf8mb4 TEXT)
    ("é", "é😀", "x"),
    ("a\x1f1", None, ""),
    ("", "", "\n"),
    ("x", None, "1\x1fy"),  # a and c: the copy moves the separator (below)
    ("\x1f", "~", "=:"),
]
COLUMNS = (  # c before b: a and c joined as "x", 0x1F, "1", 0x1F, "y" without their lengths
    CompareColumn("id", ArrowKind.INT32, nullable=False),
    CompareColumn("a", ArrowKind.STRING, nullable=False),
    CompareColumn("c", ArrowKind.STRING, nullable=False),
    CompareColumn("b", ArrowKind.STRING),
)


@dataclass(frozen=True)
class Pair:
    maria: sa.Engine
    pg: sa.Engine

    def stores(self, source: type[Store] = Store) -> tuple[Store, Store]:
        return (
            source(SqlRunner(self.maria, Engine.MARIADB, utc_session=True), "t", COLUMNS[:1], COLUMNS),
            Store(SqlRunner(self.pg, Engine.POSTGRESQL), "t", COLUMNS[:1], COLUMNS),
        )


@pytest.fixture(scope="module")
def pair(stack: StackConnections) -> Iterator[Pair]:
    """ROWS rows in MariaDB and PostgreSQL; ids 1-5 hold TEXTS, the others plain text."""
    db = f"recon2x_{uuid.uuid4().hex[:8]}"
    m = stack.mariadb
    with m.connect_root(autocommit=True) as mconn, mconn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"USE `{db}`")
        cur.execute(
            "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20) CHARACTER SET latin1 NOT NULL, "
            "b VARCHAR(20) CHARACTER SET utf8mb4 NULL, c TEXT CHARACTER SET utf8mb4 NOT NULL)"
        )
        cur.execute(f"INSERT INTO t SELECT seq, CONCAT('r', seq), NULL, 'c' FROM seq_6_to_{ROWS}")
        cur.executemany("INSERT INTO t VALUES (%s, %s, %s, %s)", [(i + 1, *v) for i, v in enumerate(TEXTS)])
    admin = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    pg = sa.create_engine(stack.postgres.sqlalchemy_url(db))
    with pg.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INT PRIMARY KEY, a TEXT, b TEXT, c TEXT)"))
        conn.execute(
            sa.text(f"INSERT INTO t SELECT n, 'r' || n, NULL, 'c' FROM generate_series(6, {ROWS}) n")
        )
        conn.execute(
            sa.text("INSERT INTO t VALUES (:i, :a, :b, :c)"),
            [{"i": i + 1, "a": a, "b": b, "c": c} for i, (a, b, c) in enumerate(TEXTS)],
        )
        conn.execute(sa.text("ANALYZE t"))
    url = sa.URL.create("mysql+pymysql", username=m.root_user, password=m.root_password or None, host=m.host,
                        port=m.port, database=db, query={"charset": "utf8mb4"})  # fmt: skip
    maria = sa.create_engine(url)
    try:
        yield Pair(maria, pg)
    finally:
        maria.dispose()
        pg.dispose()
        with m.connect_root(autocommit=True) as mconn, mconn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


def test_text_digests_equal_in_any_character_set_differ_when_a_value_ends_elsewhere(
    pair: Pair,
) -> None:
    source, copy = pair.stores()
    ranges = [KeyRange(1, 6)] + [KeyRange(i, i + 1) for i in range(1, 6)]
    expected = source.digests(ranges)
    assert None not in expected
    assert copy.digests(ranges) == expected
    with pair.pg.begin() as conn:  # the same characters in a and c, split at another place
        conn.execute(sa.text("UPDATE t SET a = :a, c = 'y' WHERE id = 4"), {"a": "x\x1f1"})
    try:
        assert copy.digests(ranges[4:5]) != expected[4:5]
    finally:
        with pair.pg.begin() as conn:
            conn.execute(sa.text("UPDATE t SET a = 'x', c = :c WHERE id = 4"), {"c": "1\x1fy"})


class _Misjudged(Store):
    """A source whose table statistics are wrong by ``factor``."""

    factor = 0.1

    def row_estimate(self) -> int:
        return max(1, int(ROWS * self.factor))


class _Overjudged(_Misjudged):
    factor = 8.0


@pytest.mark.parametrize("source_kind", [Store, _Misjudged, _Overjudged])
def test_source_rows_are_counted_by_the_compare_whatever_the_estimate(
    pair: Pair, source_kind: type[Store]
) -> None:
    source, copy = pair.stores(source_kind)
    settings = CompareSettings(slice_rows=6_000, digest_rows=2_000)
    found = compare(source, copy, settings)
    assert (found.drift, found.rows_source, found.rows_copy) == ((), ROWS, ROWS)
    with pair.pg.begin() as conn:  # drift in the copy, undone below
        conn.execute(sa.text("UPDATE t SET c = 'changed' WHERE id = 15000"))
        conn.execute(sa.text("DELETE FROM t WHERE id = 29000"))
        conn.execute(sa.text("INSERT INTO t VALUES (40000, 'e', NULL, 'c')"))
    try:
        found = compare(source, copy, settings)
    finally:
        with pair.pg.begin() as conn:
            conn.execute(sa.text("UPDATE t SET c = 'c' WHERE id = 15000"))
            conn.execute(sa.text("INSERT INTO t VALUES (29000, 'r29000', NULL, 'c')"))
            conn.execute(sa.text("DELETE FROM t WHERE id = 40000"))
    assert [(d.kind, d.key) for d in found.drift] == [
        (DriftKind.DIFFERENT, ("15000",)), (DriftKind.MISSING, ("29000",)), (DriftKind.EXTRA, ("40000",)),
    ]  # fmt: skip
    assert (found.rows_source, found.rows_copy) == (ROWS, ROWS)


class _OldProgress:
    """A resumed run's progress as an older version kept it: no source count."""

    def before(self) -> None:
        pass

    def resumed(self, lo: int) -> Resumed | None:
        return Resumed(done_until=10_001, drift=(), copy_rows=10_000)

    def finished(
        self, done_until: int, drift: tuple[RowDrift, ...], copy_rows: int, source_rows: int
    ) -> None:
        pass

    def resumed_chunks(self) -> ResumedChunks | None:
        return None

    def finished_chunks(self, done: ResumedChunks) -> None:
        pass


def test_a_resumed_run_without_the_source_count_counts_the_compared_part(pair: Pair) -> None:
    source, copy = pair.stores()
    found = compare(source, copy, CompareSettings(slice_rows=6_000, digest_rows=2_000), _OldProgress())
    assert (found.drift, found.rows_source, found.rows_copy) == ((), ROWS, ROWS)


def test_utf8_source_columns_are_digested_as_stored_with_the_same_digests(pair: Pair) -> None:
    """reconpre: a utf8mb4 column of the source is read without a CONVERT per row; its digests are
    the ones the converted text gave (and PostgreSQL gives); a latin1 column is still converted, and
    a copy's columns never skip it (the copy may hold another character set)."""
    from reconciler.targets import _as_held, open_source

    runner = SqlRunner(pair.maria, Engine.MARIADB, utc_session=True)
    table = open_source(runner, TableRef(str(pair.maria.url.database), "t"))
    flags = {c.name: c.utf8 for c in table.store.columns}
    assert flags == {"id": False, "a": False, "b": True, "c": True}
    assert not any(_as_held(c).utf8 for c in table.store.columns)
    flagged = tuple(dataclasses.replace(c, utf8=flags[c.name]) for c in COLUMNS)
    text = digest_text(Engine.MARIADB, flagged)
    assert "CONVERT(`a`" in text and "CONVERT(`b`" not in text and "CONVERT(`c`" not in text, text
    source, copy = pair.stores()
    ranges = [KeyRange(1, 6), KeyRange(1, ROWS + 1), *(KeyRange(i, i + 1) for i in range(1, 6))]
    expected = source.digests(ranges)
    assert Store(source.runner, "t", flagged[:1], flagged).digests(ranges) == expected
    assert copy.digests(ranges) == expected
