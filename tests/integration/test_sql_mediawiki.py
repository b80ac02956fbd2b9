"""MediaWiki's real schema (62 tables, among them `collation`, `user` and the keyless `user_newtalk`)
through the embedded pipeline into PostgreSQL: every table created, every row equal to the source.

The schema file sits in the shared folder beside the repository (CI has a copy there too). It is
loaded as MediaWiki's installer does: empty table prefix, ``ENGINE=InnoDB, DEFAULT CHARSET=binary``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from cdc.config import load_config
from cdc.config.models import SqlSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from sinks.sql import create_sql_sink
from tests.support.sqlsink_pipeline import PASSWORD_ENV, SqlPipeline

SCHEMA_FILE = Path(__file__).resolve().parents[2].parent / "shared/data/mediawiki/tables-generated.sql"
ROWS = (1, 2, 3)


def mediawiki_statements() -> list[str]:
    text = SCHEMA_FILE.read_text()
    text = text.replace("/*_*/", "").replace("/*$wgDBTableOptions*/", "ENGINE=InnoDB, DEFAULT CHARSET=binary")
    lines = [line for line in text.splitlines() if not line.startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def value(column: dict[str, Any], i: int) -> object:
    """A value of row ``i`` for a column, distinct per row (unique indexes hold)."""
    data_type, column_type = column["DATA_TYPE"], column["COLUMN_TYPE"]
    length = column["CHARACTER_MAXIMUM_LENGTH"]
    if data_type in ("tinyint", "smallint", "mediumint", "int", "bigint"):
        return i
    if data_type in ("double", "float"):
        return i + 0.5
    if data_type == "enum":
        return re.findall(r"'([^']*)'", column_type)[i % 2]
    if data_type in ("timestamp", "datetime"):
        return dt.datetime(2026, 1, i, 12, 30, 15)
    if data_type == "binary":
        return f"2026010{i}123015".encode()[:length].ljust(length, b"0")
    if data_type in ("varbinary", "varchar", "char"):
        return f"{column['COLUMN_NAME'][:6]}-{i}-\u00e9".encode()[:length]
    if data_type.endswith(("blob", "text")):
        return f"{column['COLUMN_NAME']} row {i} \u00fcn\u00efcode".encode()
    raise AssertionError(f"no test value for {column['COLUMN_NAME']} {column_type}")


def normalized(row: dict[str, object]) -> tuple[tuple[str, object], ...]:
    out = []
    for name, v in sorted(row.items()):
        if isinstance(v, dt.datetime) and v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
        if isinstance(v, str):
            v = v.encode()  # binary-charset columns come back from pymysql as bytes
        out.append((name, v))
    return tuple(out)


@pytest.fixture
def pipeline(stack: StackConnections, tmp_path: Path) -> Iterator[SqlPipeline]:
    made = SqlPipeline.create(stack, tmp_path)
    try:
        yield made
    finally:
        made.drop()


def test_mediawiki_schema_lands_in_postgres_row_for_row(pipeline: SqlPipeline) -> None:
    with pipeline.source(pipeline.db) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        for statement in mediawiki_statements():
            cur.execute(statement)
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_MAXIMUM_LENGTH, COLUMN_KEY "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (pipeline.db,),
        )
        columns: dict[str, list[dict[str, Any]]] = {}
        for column in cur.fetchall():
            columns.setdefault(column["TABLE_NAME"], []).append(column)
    assert len(columns) == 62 and {"collation", "user", "user_newtalk", "searchindex"} <= columns.keys()
    # MediaWiki's keyless tables get their whole row as the serving key (identical rows collapse)
    keyless = sorted(t for t, cols in columns.items() if not any(c["COLUMN_KEY"] == "PRI" for c in cols))
    assert "user_newtalk" in keyless
    key_columns = ", ".join(
        f"'{pipeline.db}.{t}': [{', '.join(c['COLUMN_NAME'] for c in columns[t])}]" for t in keyless
    )
    # its own database, no `schema`: CREATE TABLE collation unqualified, as a user's sink would say it
    sink = f"  - {{type: sql, url: '{pipeline.pg_database()}', key_columns: {{{key_columns}}}}}\n"
    config = pipeline.write_config(sink)
    pipeline.run_until_caught_up(config)  # the pipeline starts here

    def write(*statements: tuple[str, tuple[object, ...]]) -> None:
        with pipeline.source(pipeline.db) as conn, conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            for statement, args in statements:
                cur.execute(statement, args)

    inserts = []
    for table, cols in columns.items():
        names = ", ".join(f"`{c['COLUMN_NAME']}`" for c in cols)
        marks = ", ".join(["%s"] * len(cols))
        for i in ROWS:
            inserts.append(
                (f"INSERT INTO `{table}` ({names}) VALUES ({marks})", tuple(value(c, i) for c in cols))
            )
    write(*inserts)
    pipeline.run_until_caught_up(config)  # a restart between the inserts and the changes below
    changes: list[tuple[str, tuple[object, ...]]] = []
    for table, cols in columns.items():
        first = cols[0]
        changes.append((f"DELETE FROM `{table}` WHERE `{first['COLUMN_NAME']}` = %s", (value(first, 1),)))
        rest = [c for c in cols if c["COLUMN_KEY"] != "PRI"]
        if rest:
            target = rest[-1]
            new = value(target, 9 if target["DATA_TYPE"] != "binary" else 4)
            where = f"`{first['COLUMN_NAME']}` = %s"
            changes.append(
                (f"UPDATE `{table}` SET `{target['COLUMN_NAME']}` = %s WHERE {where}", (new, value(first, 3)))
            )
    write(*changes)
    pipeline.run_until_caught_up(config)

    loaded = load_config(config, {PASSWORD_ENV: pipeline.stack.mariadb.password})
    sink_config = loaded.sinks[0]
    assert isinstance(sink_config, SqlSinkConfig)
    serving = create_sql_sink(sink_config, loaded.name)
    serving.open()
    differing = []
    try:
        with pipeline.source(pipeline.db) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SET time_zone = '+00:00'")
            for table in columns:
                cur.execute(f"SELECT * FROM `{table}`")
                want = sorted(normalized(dict(row)) for row in cur.fetchall())
                got = sorted(normalized(row) for row in serving.read_rows(TableRef(pipeline.db, table)))
                assert len(want) == len(ROWS) - 1, table
                if got != want:
                    differing.append((table, want, got))
    finally:
        serving.close()
    assert not differing, differing[:2]
