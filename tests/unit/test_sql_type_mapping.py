"""SQL sink type mapping, value codecs and schema-change policy (no database needed)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy.dialects import mysql, postgresql, sqlite

from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from sinks.sql.positions_table import TableShape
from sinks.sql.schema_sync import (
    AddColumn,
    DropColumn,
    RenameColumn,
    ReplaceColumn,
    ReplaceKey,
    WidenColumn,
    evolve,
)
from sinks.sql.type_mapping import Dialect, decoder, encoder, is_widening, problem, sa_type, target_type

ENGINES = {
    Dialect.POSTGRESQL: postgresql.dialect(),
    Dialect.MARIADB: mysql.dialect(),
    Dialect.SQLITE: sqlite.dialect(),
}


def c(name: str, source: str, kind: ArrowKind, p: int = 0, s: int = 0) -> Column:
    return Column(name, source, ArrowType(kind, p, s))


@pytest.mark.parametrize(
    ("column", "pg", "maria", "lite"),
    [
        (c("x", "bigint unsigned", ArrowKind.UINT64), "NUMERIC(20, 0)", "BIGINT UNSIGNED", "BLOB"),
        (c("x", "int unsigned", ArrowKind.UINT32), "BIGINT", "INTEGER UNSIGNED", "INTEGER"),
        (c("x", "tinyint", ArrowKind.INT8), "SMALLINT", "TINYINT", "INTEGER"),
        (c("x", "decimal(65,30)", ArrowKind.DECIMAL, 65, 30), "NUMERIC(65, 30)", "NUMERIC(65, 30)", "TEXT"),
        (c("x", "float", ArrowKind.FLOAT32), "DOUBLE PRECISION", "DOUBLE", "DOUBLE"),
        (
            c("x", "datetime(6)", ArrowKind.TIMESTAMP),
            "TIMESTAMP(6) WITHOUT TIME ZONE",
            "DATETIME(6)",
            "DATETIME",
        ),
        (
            c("x", "timestamp(6)", ArrowKind.TIMESTAMP_UTC),
            "TIMESTAMP(6) WITH TIME ZONE",
            "DATETIME(6)",
            "DATETIME",
        ),
        (c("x", "time(6)", ArrowKind.DURATION), "INTERVAL (6)", "TIME(6)", "BIGINT"),
        (c("x", "varbinary(255)", ArrowKind.BINARY), "BYTEA", "VARBINARY(255)", "BLOB"),
        (c("x", "blob", ArrowKind.BINARY), "BYTEA", "LONGBLOB", "BLOB"),
        (
            c("x", "varchar(20)", ArrowKind.STRING),
            "VARCHAR(20)",
            "VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin",
            "TEXT",
        ),
        (
            c("x", "json", ArrowKind.STRING),
            "TEXT",
            "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin",
            "TEXT",
        ),
    ],
)
def test_type_per_dialect(column: Column, pg: str, maria: str, lite: str) -> None:
    got = [sa_type(target_type(column), d, False).compile(dialect=ENGINES[d]) for d in Dialect]
    assert got == [pg, maria, lite]


def test_text_key_on_mariadb_is_an_indexable_varchar() -> None:
    compiled = sa_type(target_type(c("k", "text", ArrowKind.STRING)), Dialect.MARIADB, True).compile(
        dialect=ENGINES[Dialect.MARIADB]
    )
    assert compiled.startswith("VARCHAR(768)")


def test_sqlite_uint64_is_exact_and_order_preserving() -> None:
    enc = encoder(ArrowType(ArrowKind.UINT64), Dialect.SQLITE)
    dec = decoder(ArrowType(ArrowKind.UINT64), Dialect.SQLITE)
    assert enc is not None and dec is not None
    values = [0, 2**63 - 1, 2**63, 10**19, 2**64 - 1]
    stored = [enc(v) for v in values]
    assert stored[:2] == [0, 2**63 - 1] and all(isinstance(s, str) for s in stored[2:])
    assert sorted(stored[2:]) == stored[2:]  # text order = numeric order above INT64_MAX
    assert [dec(s) for s in stored] == values


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.timedelta(hours=-1, minutes=-30), "-01:30:00.000000"),
        (-dt.timedelta(hours=838, minutes=59, seconds=59), "-838:59:59.000000"),
        (dt.timedelta(hours=100, microseconds=1), "100:00:00.000001"),
        (dt.timedelta(0), "00:00:00.000000"),
    ],
)
def test_mariadb_time_encoding(value: dt.timedelta, text: str) -> None:
    enc = encoder(ArrowType(ArrowKind.DURATION), Dialect.MARIADB)
    assert enc is not None and enc(value) == text


def test_sqlite_decimal_and_time_round_trip() -> None:
    d = ArrowType(ArrowKind.DECIMAL, 65, 30)
    value = Decimal("-1.000000000000000000000000000001")
    enc, dec = encoder(d, Dialect.SQLITE), decoder(d, Dialect.SQLITE)
    assert enc is not None and dec is not None and dec(enc(value)) == value
    t = ArrowType(ArrowKind.DURATION)
    enc, dec = encoder(t, Dialect.SQLITE), decoder(t, Dialect.SQLITE)
    assert enc is not None and dec is not None
    assert dec(enc(dt.timedelta(days=-40, microseconds=3))) == dt.timedelta(days=-40, microseconds=3)


@pytest.mark.parametrize(
    ("old", "new", "widening"),
    [
        (c("x", "int", ArrowKind.INT32), c("x", "bigint", ArrowKind.INT64), True),
        (c("x", "int unsigned", ArrowKind.UINT32), c("x", "bigint", ArrowKind.INT64), True),
        (c("x", "bigint", ArrowKind.INT64), c("x", "bigint unsigned", ArrowKind.UINT64), False),
        (c("x", "bigint", ArrowKind.INT64), c("x", "int", ArrowKind.INT32), False),
        (
            c("x", "decimal(10,2)", ArrowKind.DECIMAL, 10, 2),
            c("x", "decimal(12,4)", ArrowKind.DECIMAL, 12, 4),
            True,
        ),
        (
            c("x", "decimal(10,2)", ArrowKind.DECIMAL, 10, 2),
            c("x", "decimal(10,4)", ArrowKind.DECIMAL, 10, 4),
            False,
        ),
        (c("x", "varchar(10)", ArrowKind.STRING), c("x", "varchar(20)", ArrowKind.STRING), True),
        (c("x", "varchar(20)", ArrowKind.STRING), c("x", "varchar(10)", ArrowKind.STRING), False),
        (c("x", "varchar(20)", ArrowKind.STRING), c("x", "text", ArrowKind.STRING), True),
        (c("x", "text", ArrowKind.STRING), c("x", "varchar(10)", ArrowKind.STRING), False),
        (c("x", "int", ArrowKind.INT32), c("x", "varchar(10)", ArrowKind.STRING), False),
        (c("x", "date", ArrowKind.DATE), c("x", "datetime", ArrowKind.TIMESTAMP), False),
    ],
)
def test_widening_rules(old: Column, new: Column, widening: bool) -> None:
    assert is_widening(target_type(old), target_type(new)) is widening


REF = TableRef("db", "t")
ID = Column("id", "int", ArrowType(ArrowKind.INT32), False)


def shape_of(schema: TableSchema) -> TableShape:
    return TableShape(str(schema.ref), schema.columns, schema.primary_key, (schema.version,))


POS = Position(Gtid(0, 1, 5), "bin.000001", 500, 0)


def test_evolve_adds_columns_and_widens() -> None:
    v1 = TableSchema.build(REF, (ID, c("a", "int", ArrowKind.INT32)), ("id",))
    v2 = TableSchema.build(
        REF, (ID, c("a", "bigint", ArrowKind.INT64), c("b", "text", ArrowKind.STRING)), ("id",)
    )
    ev = evolve("t", shape_of(v1), v2, POS, accepted=False)
    assert [type(s) for s in ev.steps] == [WidenColumn, AddColumn] and not ev.unsafe
    assert ev.shape.versions == (v1.version, v2.version)
    # rows of the older shape arriving late (Kafka) are taken without steps
    again = evolve("t", ev.shape, v1, Position(Gtid(0, 1, 4), "bin.000001", 400, 0), accepted=False)
    assert again.shape == ev.shape and again.steps == ()


@pytest.mark.parametrize(
    ("columns", "pk", "steps", "unsafe"),
    [
        ((ID,), ("id",), [DropColumn], ""),  # dropped: dropped from the target too
        ((ID, c("a", "tinyint", ArrowKind.INT8)), ("id",), [], ""),  # narrowed: the target keeps int
        ((ID, c("b", "int", ArrowKind.INT32)), ("id",), [RenameColumn], ""),  # renamed
        ((ID, c("a", "varchar(5)", ArrowKind.STRING)), ("id",), [ReplaceColumn], "change a"),  # other family
        ((ID, c("a", "int", ArrowKind.INT32)), ("id", "a"), [ReplaceKey], "primary key changed"),
    ],
)
def test_evolve_classifies_each_change(
    columns: tuple[Column, ...], pk: tuple[str, ...], steps: list[type], unsafe: str
) -> None:
    v1 = TableSchema.build(REF, (ID, c("a", "int", ArrowKind.INT32)), ("id",))
    ev = evolve("t", shape_of(v1), TableSchema.build(REF, columns, pk), POS, accepted=False)
    assert [type(s) for s in ev.steps] == steps
    assert ev.unsafe.startswith(unsafe) and bool(ev.unsafe) == bool(unsafe)


def test_problems() -> None:
    text = target_type(c("x", "varchar(3)", ArrowKind.STRING))
    assert problem("a\x00b", text, Dialect.POSTGRESQL) is not None
    assert problem("a\x00b", text, Dialect.MARIADB) is None
    assert problem("\ud800", text, Dialect.SQLITE) is not None
    assert problem("abcd", text, Dialect.MARIADB) is not None
    assert problem(None, text, Dialect.POSTGRESQL) is None
