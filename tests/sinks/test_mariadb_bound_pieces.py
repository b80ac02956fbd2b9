"""MariaDB from Kafka, a batch larger than one piece (sinks/sql/bound_pieces.py): applied whole, in
order, in one transaction.

The batch's rows go to the driver in several executemany calls (pieces of bounded rows and bytes).
Its rows must still be what the per-change path leaves (the last change of each key, whichever piece
it falls in), its positions row must move with them, and a piece that fails must leave nothing of the
batch, not the pieces before it (a trigger on the real table refuses one row of the last piece).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from cdc.core.errors import SinkError
from cdc.core.events import ChangeEvent, ColumnValue, Op
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from sinks.contract import SinkBatch
from sinks.sql import bound_pieces, driver_rows, mariadb_literals, sqlite_columnar
from sinks.sql.columnar_apply import apply_columns
from tests.sinks.sql_targets import SqlTarget, make_pair
from tests.sinks.test_sinkcol_sqlite import _chunks, _event, _state
from tests.unit.test_sinkcol_columns import _reader, _values

pytestmark = pytest.mark.integration

WIDE = TableSchema.build(
    TableRef("sinkcol", "wide"),
    (
        Column("id", "bigint", ArrowType(ArrowKind.INT64), False),
        Column("body", "mediumtext", ArrowType(ArrowKind.STRING), True),
        Column("n", "int", ArrowType(ArrowKind.INT32), True),
    ),
    ("id",),
)
INSERTS = 2_400
REFUSED = INSERTS - 3  # a key the last piece of upserts carries


def _row(key: int, v: int) -> tuple[ColumnValue, ...]:
    return (key, f"{v}:" + "é ~ 'quoted' \\ " * (40 + key % 40), v)


def _batch() -> list[ChangeEvent]:
    """2,400 inserts of ~1 KB rows (~2.4 MB, several pieces by bytes), then updates
    of keys from every piece (twice for some: the second wins), deletes, and a key deleted and
    inserted again, all in one batch."""
    e = _event
    out = [e(WIDE, Op.CREATE, 2, i, _row(100 + i, i)) for i in range(INSERTS)]
    out += [
        e(WIDE, Op.UPDATE, 3, i, _row(100 + k, 5000 + k), _row(100 + k, k))
        for i, k in enumerate(range(0, INSERTS, 7))
    ]
    out += [
        e(WIDE, Op.UPDATE, 4, i, _row(100 + k, 9000 + k), _row(100 + k, 5000 + k))
        for i, k in enumerate(range(0, INSERTS, 14))
    ]
    out += [e(WIDE, Op.DELETE, 5, i, _row(100 + k, k)) for i, k in enumerate(range(5, INSERTS, 50))]
    out += [e(WIDE, Op.DELETE, 6, 0, _row(7, 7)), e(WIDE, Op.CREATE, 6, 1, _row(7, 77))]
    return out


@pytest.fixture
def targets(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[SqlTarget, SqlTarget]]:
    yield from make_pair("mariadb", tmp_path, request)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of each piece the column-wise path sends: by executemany (the deletes) or as
    pymysql's statements made from the columns (the upserts, mariadb_literals); the real ones run."""
    made: list[int] = []
    real = driver_rows.executemany_columns
    real_upserts = mariadb_literals.send_upserts

    def counted(
        conn: sa.Connection, table: sa.Table, kind: str, build: Any, names: Any, columns: Any
    ) -> None:
        made.append(len(columns[0]))
        real(conn, table, kind, build, names, columns)

    def counted_upserts(conn: sa.Connection, sql: str, order: Any, columns: Any, rows: pa.Table) -> bool:
        sent = real_upserts(conn, sql, order, columns, rows)
        assert sent  # every value of this table has its literal
        made.append(rows.num_rows)
        return sent

    monkeypatch.setattr(sqlite_columnar, "executemany_columns", counted)
    monkeypatch.setattr(mariadb_literals, "send_upserts", counted_upserts)
    return made


def _rows(target: SqlTarget) -> list[tuple[object, ...]]:
    with target.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT id, body, n FROM wide ORDER BY id"))]


def _first(target: SqlTarget) -> Any:
    """A sink with the table and its first rows (keys 0-99), applied the usual way."""
    sink = target.sink(copy_threshold_rows=10)
    first = [_event(WIDE, Op.CREATE, 1, i, _row(i, i)) for i in range(100)]
    sink.apply(SinkBatch(first, _state(first, 100, WIDE)))
    return sink


def test_a_batch_of_many_pieces_leaves_the_rows_and_position_of_the_per_change_path(
    targets: tuple[SqlTarget, SqlTarget], calls: list[int]
) -> None:
    columns_target, events_target = targets
    a, b = _first(columns_target), _first(events_target)
    second = _batch()
    batch = SinkBatch(_chunks(second, 100, WIDE), _state(second, 3000, WIDE))
    assert apply_columns(a, batch)
    b.apply(SinkBatch(_reader(WIDE).events(_values(second)), batch.state))
    assert len(calls) >= 4 and max(calls) <= bound_pieces.PIECE_ROWS, calls  # deletes, then upserts
    rows = _rows(columns_target)
    assert len(rows) == 100 + INSERTS - len(range(5, INSERTS, 50))
    assert rows == _rows(events_target)
    assert dict((r[0], r[2]) for r in rows)[100] == 9000  # the second update of a key won
    assert dict((r[0], r[2]) for r in rows)[7] == 77  # deleted, then inserted again
    assert a.applied() == b.applied() == batch.state


def test_a_piece_that_fails_leaves_nothing_of_the_batch(
    targets: tuple[SqlTarget, SqlTarget], calls: list[int]
) -> None:
    target, _ = targets
    sink = _first(target)
    before, held = _rows(target), sink.applied()
    with target.engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TRIGGER refuse BEFORE INSERT ON wide FOR EACH ROW IF NEW.id = {100 + REFUSED} THEN"
                " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'; END IF"
            )
        )
    second = _batch()
    batch = SinkBatch(_chunks(second, 100, WIDE), _state(second, 3000, WIDE))
    with pytest.raises(SinkError, match="refused by the test"):
        sink.apply(batch)
    assert len(calls) >= 4  # the pieces before the refused one were sent
    assert _rows(target) == before
    assert sink.applied() == held
    with target.engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER refuse"))
    sink.apply(batch)  # the same batch again: all of it
    assert len(_rows(target)) == 100 + INSERTS - len(range(5, INSERTS, 50))
    assert sink.applied() == batch.state
