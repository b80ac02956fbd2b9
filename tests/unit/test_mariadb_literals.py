"""MariaDB's column-wise upserts reach the server as the very statements pymysql's executemany sends.

``sinks.sql.mariadb_literals`` spells each column's SQL literals with Arrow kernels and cuts the rows
into statements by pymysql's rule; here the same rows go through pymysql's own ``executemany``
(``Cursor._do_execute_many``, its ``execute`` recording instead of sending) and the statement bytes
must be equal: every kind the column-wise path binds, NULLs, every escaped character, binary
values with every byte, zero and non-zero fractions, rows cut into several statements.
"""

from __future__ import annotations

import datetime as dt
import decimal
from functools import partial
from typing import Any

import pyarrow as pa
import pymysql
import pytest
import sqlalchemy as sa
from pymysql.cursors import Cursor
from sqlalchemy.dialects.mysql import pymysql as mysql_pymysql

from cdc.core.events import ChangeEvent, ColumnValue, Op
from cdc.core.positions import Gtid, Position
from cdc.daemon.embedded_columns import events_as_columns
from sinks.sql import mariadb_columnar, mariadb_literals, sqlite_columnar
from sinks.sql.driver_rows import _prepare
from sinks.sql.table_writer import upsert_statement
from sinks.sql.type_mapping import Dialect
from tests.sinks.test_sinkcol_postgres import PAGE

_TEXTS = [
    "",
    "plain",
    "it's",
    'say "hi"',
    "back\\slash",
    "nul\0byte",
    "line\nfeed\r\n",
    "ctrl\x1az",
    "50% off",
    "✓ ünï",
]


def _row(i: int) -> tuple[ColumnValue, ...]:
    return (
        2**64 - 1 - i if i % 11 == 0 else i,
        None if i % 5 == 0 else i - 50,
        None if i % 7 == 3 else i % 2 == 0,
        None if i % 9 == 4 else _TEXTS[i % len(_TEXTS)] * (1 + i % 4),
        None if i % 6 == 0 else bytes((i * 37 + k) % 256 for k in range(i % 9)),
        None if i % 8 == 1 else decimal.Decimal(f"{i - 500}.{i % 10000:04d}"),
        None if i % 10 == 2 else dt.date(1 + i % 3000, 1 + i % 12, 1 + i % 28),
        dt.datetime(2024, 1, 1, 0, 0, i % 60, 0 if i % 3 else (i * 997) % 1_000_000),
        None if i % 4 == 1 else dt.datetime(2024, 6, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=i),
    )


def _piece(n: int) -> pa.Table:
    events = [
        ChangeEvent(
            Op.CREATE, PAGE, (i,), None, _row(i), Position(Gtid(0, 1, 1), "bin.000001", 100, i), 0, "0-1-1"
        )
        for i in range(n)
    ]
    columns = events_as_columns(events)
    assert columns is not None and mariadb_columnar.fits(columns)
    arrays = sqlite_columnar.collapse_arrays(columns)
    return pa.table(arrays, names=[f"c{i}" for i in range(len(arrays))])


class _Recording(Cursor):
    def execute(self, query: Any, args: Any = None) -> int:
        assert args is None
        self.connection.sent.append(bytes(query))  # type: ignore[attr-defined]
        return 1


class _Conn:
    """What send_upserts uses of a SQLAlchemy connection: its driver connection and exec_driver_sql."""

    def __init__(self) -> None:
        driver: Any = pymysql.connect(defer_connect=True, charset="utf8mb4")
        driver.server_status = 0
        driver.sent = []
        self.connection = type("Fairy", (), {"dbapi_connection": driver})()
        self.dialect = mysql_pymysql.dialect()
        self.sent: list[bytes] = []

    def exec_driver_sql(self, statement: str, execution_options: dict[str, Any]) -> None:
        assert execution_options == {"no_parameters": True}
        self.sent.append(statement.encode("utf8"))


def _sql(conn: _Conn) -> tuple[str, tuple[int, ...]]:
    names = [c.name for c in PAGE.columns]
    table = sa.Table("page", sa.MetaData(), *(sa.Column(n, sa.Integer, primary_key=n == "id") for n in names))
    stmt = partial(upsert_statement, table, names, ["id"], Dialect.MARIADB)()
    prepared = _prepare(conn, stmt, names)  # type: ignore[arg-type]
    assert prepared is not None
    return prepared[0], prepared[1]


def _pymysql_sends(conn: _Conn, sql: str, order: tuple[int, ...], piece: pa.Table) -> list[bytes]:
    bound = [mariadb_columnar._values(piece.column(i), c) for i, c in enumerate(PAGE.columns)]
    rows = list(zip(*(bound[i] for i in order), strict=True))
    driver = conn.connection.dbapi_connection
    driver.sent = []
    _Recording(driver).executemany(sql, rows)
    return list(driver.sent)


@pytest.mark.parametrize("max_length", [Cursor.max_stmt_length, 3_000, 1])
def test_the_statements_are_pymysqls_byte_for_byte(monkeypatch: pytest.MonkeyPatch, max_length: int) -> None:
    monkeypatch.setattr(Cursor, "max_stmt_length", max_length)
    conn = _Conn()
    sql, order = _sql(conn)
    piece = _piece(400)
    expected = _pymysql_sends(conn, sql, order, piece)
    assert mariadb_literals.send_upserts(conn, sql, order, PAGE.columns, piece)  # type: ignore[arg-type]
    assert conn.sent == expected
    assert len(expected) == {Cursor.max_stmt_length: 1, 3_000: len(expected), 1: 400}[max_length]
    if max_length == 3_000:
        assert len(expected) > 5


def test_a_slice_of_the_rows_is_sent_as_pymysql_sends_it() -> None:
    conn = _Conn()
    sql, order = _sql(conn)
    piece = _piece(300).slice(37, 101)
    assert mariadb_literals.send_upserts(conn, sql, order, PAGE.columns, piece)  # type: ignore[arg-type]
    assert conn.sent == _pymysql_sends(conn, sql, order, piece)


def test_no_backslash_escapes_and_odd_decimals_are_left_to_pymysql() -> None:
    conn = _Conn()
    sql, order = _sql(conn)
    conn.connection.dbapi_connection.server_status = 512
    assert not mariadb_literals.send_upserts(conn, sql, order, PAGE.columns, _piece(10))  # type: ignore[arg-type]
    conn.connection.dbapi_connection.server_status = 0
    piece = _piece(10)
    odd = piece.set_column(5, "c5", pa.array(["1E-8"] * 10, pa.string()))
    assert not mariadb_literals.send_upserts(conn, sql, order, PAGE.columns, odd)  # type: ignore[arg-type]
    assert conn.sent == []
