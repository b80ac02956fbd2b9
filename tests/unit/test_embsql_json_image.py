"""SQLite's and MariaDB's column-wise checks and binding read only the envelope forms they use.

An embedded chunk makes each column's envelope form (``json_image``) when first read, one Python
call per value (base64 for binary, isoformat for times, text for decimals): reading all of them in
``sent_forms_fit``/``collapse_arrays``/``mariadb_columnar.fits`` cost ~2.5 us per change of an
embedded SQLite apply of revision-like rows, for forms nothing bound from. Only text, decimals and
floats are bound from the envelope's forms (``sqlite_columnar._AS_SENT``).
"""

from __future__ import annotations

from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind
from cdc.daemon.embedded_columns import events_as_columns
from cdc.stream.arrow_changes import ChangeColumns
from sinks.sql import mariadb_columnar, sqlite_columnar
from tests.sinks.test_sinkcol_postgres import PAGE, _row

_SENT = {ArrowKind.STRING, ArrowKind.DECIMAL, ArrowKind.FLOAT32, ArrowKind.FLOAT64}


def _columns() -> ChangeColumns:
    events = []
    for i in range(50):
        pos = Position(Gtid(0, 1, 1), "bin.000001", 1000, i)
        events.append(ChangeEvent(Op.CREATE, PAGE, (i,), None, _row(i, i), pos, 1_700_000_000_000, "0-1-1"))
    columns = events_as_columns(events)
    assert columns is not None
    return columns


def _made(columns: ChangeColumns) -> set[ArrowKind]:
    made = columns.json_image._made  # type: ignore[attr-defined]  # the embedded chunk's lazy forms
    return {c.arrow_type.kind for c, m in zip(PAGE.columns, made, strict=True) if m is not None}


def test_sqlite_fits_and_collapse_make_only_the_forms_bound() -> None:
    columns = _columns()
    assert sqlite_columnar.fits(columns)
    arrays = sqlite_columnar.collapse_arrays(columns)
    assert _made(columns) <= _SENT
    for column, array, typed, sent in zip(
        PAGE.columns, arrays, columns.image, columns.json_image, strict=True
    ):
        assert array is (sent if column.arrow_type.kind in _SENT else typed)


def test_mariadb_fits_makes_only_the_forms_bound() -> None:
    columns = _columns()
    assert mariadb_columnar.fits(columns)
    sqlite_columnar.collapse_arrays(columns)
    assert _made(columns) <= _SENT
