"""The integer-key compare asks for the next slice's digests while the current one is compared
(reconciler/digest_feed.py). A compare killed with such a slice in flight resumes exactly: the
progress holds only the slices compared to their end. Drift in every digest range (the dense-drift
skip drops a slice asked for ahead) is still found exactly. Nothing of a slice is asked before its
lag pause ends."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.core.schemas import ArrowKind, TableRef
from cdc.devstack.connections import StackConnections
from reconciler.canonical import Engine
from reconciler.compare import CompareSettings, Found, Resumed, ResumedChunks, compare
from reconciler.model import CompareColumn, KeyRange, RowDrift
from reconciler.progress import SliceProgress
from reconciler.stores import SqlRunner, Store

ROWS = 24_000
DRIFT = (100, 5_000, 9_000, 13_000, 20_000)  # a slice is ~4,000 keys: drift before and after the kill
SETTINGS = CompareSettings(slice_rows=4_000, digest_rows=1_000)
COLUMNS = (
    CompareColumn("id", ArrowKind.INT32, nullable=False),
    CompareColumn("v", ArrowKind.INT32, nullable=False),
    CompareColumn("s", ArrowKind.STRING, nullable=False),
)


@dataclass
class Asked:
    """The key range of each digest query asked of a store, as it starts (on the feed's threads)."""

    spans: list[KeyRange] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    events: list[tuple[str, int]] | None = None  # shared with the lag pause's record (in order)

    def add(self, span: KeyRange) -> None:
        with self.changed:
            self.spans.append(span)
            if self.events is not None:
                self.events.append(("asked", span.lo))
            self.changed.notify_all()

    def wait_for(self, lo: int) -> KeyRange | None:
        with self.changed:
            self.changed.wait_for(lambda: any(s.lo == lo for s in self.spans), timeout=10)
            return next((s for s in self.spans if s.lo == lo), None)


@dataclass(frozen=True)
class _Watched(Store):
    asked: Asked = field(default_factory=Asked)

    def digests(self, ranges: Sequence[KeyRange]) -> list[tuple[int, str] | None]:
        self.asked.add(KeyRange(ranges[0].lo, ranges[-1].hi))
        return super().digests(ranges)


@dataclass(frozen=True)
class Pair:
    maria: sa.Engine
    pg: sa.Engine

    def stores(self, events: list[tuple[str, int]] | None = None) -> tuple[_Watched, _Watched]:
        maria, pg = (
            SqlRunner(self.maria, Engine.MARIADB, utc_session=True),
            SqlRunner(self.pg, Engine.POSTGRESQL),
        )
        return (
            _Watched(maria, "t", COLUMNS[:1], COLUMNS, Asked(events=events)),
            _Watched(pg, "t", COLUMNS[:1], COLUMNS, Asked(events=events)),
        )


@pytest.fixture(scope="module")
def pair(stack: StackConnections) -> Iterator[Pair]:
    db = f"reconpre_{uuid.uuid4().hex[:8]}"
    m = stack.mariadb
    with m.connect_root(autocommit=True) as mconn, mconn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"USE `{db}`")
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(20) NOT NULL)")
        cur.execute(f"INSERT INTO t SELECT seq, seq * 3, CONCAT('r', seq) FROM seq_1_to_{ROWS}")
    admin = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    pg = sa.create_engine(stack.postgres.sqlalchemy_url(db))
    with pg.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, s TEXT NOT NULL)"))
        conn.execute(sa.text(f"INSERT INTO t SELECT n, n * 3, 'r' || n FROM generate_series(1, {ROWS}) n"))
        conn.execute(sa.text("UPDATE t SET v = -1 WHERE id = ANY(:ids)"), {"ids": list(DRIFT)})
        conn.execute(sa.text("ANALYZE t"))
    url = sa.URL.create("mysql+pymysql", username=m.root_user, password=m.root_password or None, host=m.host,
                        port=m.port, database=db)  # fmt: skip
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


class Killed(BaseException):
    """The kill, at a slice's end: nothing after it runs (not caught as an error)."""


class _KillAfter(SliceProgress):
    """Real progress; after the ``slices``-th slice is recorded, the run dies, once the next slice's
    digests (asked for ahead) have started on both sides."""

    def __init__(self, folder: Path, slices: int, source: _Watched, copy: _Watched) -> None:
        super().__init__(folder, TableRef("reconpre", "t"), "pg")
        self._left, self._stores = slices, (source, copy)
        self.in_flight: KeyRange | None = None

    def finished(
        self, done_until: int, drift: tuple[RowDrift, ...], copy_rows: int, source_rows: int
    ) -> None:
        super().finished(done_until, drift, copy_rows, source_rows)
        self._left -= 1
        if self._left == 0:
            spans = {s.asked.wait_for(done_until) for s in self._stores}
            assert None not in spans, "no slice was asked for ahead"
            (self.in_flight,) = spans
            raise Killed


def _keys(found: Found) -> list[tuple[str, tuple[str, ...]]]:
    return [(d.kind.value, d.key) for d in found.drift]


def test_a_compare_killed_with_a_prefetched_slice_in_flight_resumes_exactly(
    pair: Pair, tmp_path: Path
) -> None:
    whole = compare(*pair.stores(), SETTINGS)
    assert _keys(whole) == [("different", (str(k),)) for k in DRIFT]
    assert (whole.rows_source, whole.rows_copy) == (ROWS, ROWS)

    source, copy = pair.stores()
    killer = _KillAfter(tmp_path, 2, source, copy)
    with pytest.raises(Killed):
        compare(source, copy, SETTINGS, killer)
    assert killer.in_flight is not None
    done_until = killer.in_flight.lo
    kept = SliceProgress(tmp_path, TableRef("reconpre", "t"), "pg").resumed(1)
    assert kept is not None and kept.done_until == done_until
    assert [d.key for d in kept.drift] == [(str(k),) for k in DRIFT if k < done_until]

    source, copy = pair.stores()
    resumed = compare(source, copy, SETTINGS, SliceProgress(tmp_path, TableRef("reconpre", "t"), "pg"))
    assert min(s.lo for s in source.asked.spans) == done_until  # nothing below the progress is read again
    assert _keys(resumed) == _keys(whole)
    assert (resumed.rows_source, resumed.rows_copy) == (ROWS, ROWS)


def test_dense_drift_drops_the_slice_asked_for_ahead_and_finds_every_row(pair: Pair) -> None:
    with pair.pg.begin() as conn:  # every row of the first two slices differs, undone below
        conn.execute(sa.text("UPDATE t SET s = s || 'x' WHERE id <= 8000"))
    try:
        source, copy = pair.stores()
        found = compare(source, copy, SETTINGS)
    finally:
        with pair.pg.begin() as conn:
            conn.execute(sa.text("UPDATE t SET s = 'r' || id WHERE id <= 8000"))
    keys = {int(d.key[0]) for d in found.drift}
    assert keys == set(range(1, 8001)) | set(DRIFT)
    assert (found.rows_source, found.rows_copy) == (ROWS, ROWS)


class _PausingSlices:
    """A lag pause before every slice (50 ms), recorded with the slices' ends."""

    def __init__(self, events: list[tuple[str, int]]) -> None:
        self.events, self.ends = events, [1]

    def before(self) -> None:
        self.events.append(("pause", 0))
        time.sleep(0.05)
        self.events.append(("go", 0))

    def resumed(self, lo: int) -> Resumed | None:
        return None

    def finished(
        self, done_until: int, drift: tuple[RowDrift, ...], copy_rows: int, source_rows: int
    ) -> None:
        self.ends.append(done_until)

    def resumed_chunks(self) -> ResumedChunks | None:
        return None

    def finished_chunks(self, done: ResumedChunks) -> None:
        pass


def test_nothing_of_a_slice_is_asked_before_its_lag_pause_ends(pair: Pair) -> None:
    events: list[tuple[str, int]] = []
    slices = _PausingSlices(events)
    found = compare(*pair.stores(events), SETTINGS, slices)
    assert len(found.drift) == len(DRIFT)
    pauses = [i for i, (kind, _) in enumerate(events) if kind == "pause"]
    assert len(pauses) == len(slices.ends) - 1 > 2  # one per slice
    for n, at in enumerate(pauses):
        start = slices.ends[n]  # the n-th pause comes before the slice starting here
        waited = events[at : events.index(("go", 0), at)]
        asked = [lo for kind, lo in waited if kind == "asked"]
        # only earlier slices' digests run during a pause (asked before it), none of this slice's
        assert all(lo < start for lo in asked), (n, start, asked)
