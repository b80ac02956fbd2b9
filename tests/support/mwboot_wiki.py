"""MediaWiki's real schema filled with awkward values, and an embedded pipeline over it (PostgreSQL and
SQLite serving sinks, the Iceberg history) driven through the real `cdc` CLI.

The values are the ones real wikis hold and engines disagree on: binary strings with 0x00 and invalid
UTF-8, '' beside NULL, the largest unsigned integers, binary(14) timestamps (one short enough that the
server pads it with 0x00), long blobs, and keys that differ only in case (a case-insensitive collation
would merge them). Row ``i`` of a table takes ``value(column, i)`` in every column, distinct per row,
so every unique index holds.

Only a representative subset of MediaWiki's 62 tables is created (:data:`TABLES`, chosen and
explained in tests/integration/test_mwboot_mediawiki.py): each table costs the CLI about a second to
bootstrap and to compare on a loaded machine, and the other tables repeat the same column kinds and
key shapes. A second wiki may share the database under a table prefix (MediaWiki's ``$wgDBprefix``):
the same DDL, its tables named ``w2_page`` and so on.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import re
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pymysql.cursors
import sqlalchemy as sa

from cdc.devstack.connections import StackConnections
from tests.integration.test_sql_mediawiki import mediawiki_statements

SERVER_IDS = (5500, 5599)  # this area's replica server_ids (other tests run at the same time)
PASSWORD_ENV = "MWBOOT_SOURCE_PASSWORD"
ROWS = 4  # rows per table: the four special cases of each column kind
CHUNKED_TABLE = "l10n_cache"  # the table read in several chunks (a small chunk size, not many rows)
CHUNKED_ROWS = 100
CHUNK_ROWS = 32  # bootstrap.max_chunk_rows and `cdc reconcile --chunk-rows`: l10n_cache spans 4+ chunks

PREFIX = "w2_"  # the second wiki's table prefix
# the tables created (why each: the module docstring of tests/integration/test_mwboot_mediawiki.py)
TABLES = (
    "actor",
    "categorylinks",
    "content_models",
    "image",
    "l10n_cache",
    "objectcache",
    "page",
    "page_props",
    "revision",
    "searchindex",
    "sites",
    "user",
    "user_newtalk",
)

_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}
# case-differing keys (binary collation: distinct), a NUL byte, and invalid UTF-8 (0xff, 0xc3 '(')
_STRINGS = (b"", b"Main_Page\x00\xff", b"main_page\x00\xff", b"MAIN_PAGE\xc3(")
_BLOB_MAX = {"tinyblob": 255, "blob": 65_535, "mediumblob": 100_000, "longblob": 100_000}


@dataclass(frozen=True)
class Column:
    table: str
    name: str
    data_type: str
    column_type: str
    length: int | None
    nullable: bool
    key: bool  # part of the primary key


def value(c: Column, i: int) -> object:
    """Row ``i``'s value of a column: rows 0-3 are the special cases, later rows plain and distinct."""
    nullable = c.nullable and not c.key and i == 3
    if c.data_type in _INT_BITS:
        bits = _INT_BITS[c.data_type]
        unsigned = "unsigned" in c.column_type
        top = (1 << bits) - 1 if unsigned else (1 << (bits - 1)) - 1
        if nullable:
            return None
        return (1, top, 2 if unsigned else -(1 << (bits - 1)), top - 1)[i] if i < 4 else 10 + i % (top - 20)
    if nullable:
        return None
    if c.data_type in ("double", "float"):
        return (0.0, 0.5, 1234.25, 3.0)[i] if i < 4 else i + 0.5
    if c.data_type == "enum":
        choices = re.findall(r"'([^']*)'", c.column_type)
        return (choices[0], choices[-1], choices[1], choices[0])[i] if i < 4 else choices[i % len(choices)]
    if c.data_type in ("timestamp", "datetime"):
        special = (
            dt.datetime(1970, 1, 1, 0, 0, 1),
            dt.datetime(2038, 1, 19, 3, 14, 7),
            dt.datetime(2026, 3, 29, 1, 30),  # a DST change in Europe: the session is in UTC
            dt.datetime(2000, 2, 29, 23, 59, 59),
        )
        return special[i] if i < 4 else dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i)
    if c.data_type == "binary":
        n = c.length or 1
        # a binary(14) timestamp, all NUL bytes, the last second of 9999, one the server pads with NUL
        stamps = (b"20260101123015", b"\x00" * n, b"99991231235959", b"2026")
        raw = stamps[i] if i < 4 else f"2026{i:010d}".encode()
        return raw[:n].ljust(n, b"\x00")
    if c.data_type in ("varbinary", "varchar", "char"):
        raw = _STRINGS[i] if i < 4 else b"%d:" % i + _STRINGS[i % 4]
        return raw[: c.length or 255]
    if c.data_type.endswith("text"):  # searchindex: utf8mb4 text, MyISAM
        texts = (
            "",
            "\U0001f600 \u00e9t\u00e9 " * 2000,
            "tab\tnewline\n",
            "Main_Page",
        )  # no NUL: PostgreSQL text cannot hold it
        return texts[i] if i < 4 else f"t{i}"
    if c.data_type.endswith("blob"):
        if i == 1:
            return random.Random(c.name).randbytes(_BLOB_MAX[c.data_type])  # long, every byte value
        return (b"", b"", b"\x00\xff\xfe binary", b"\xc3(")[i] if i < 4 else b"b\x00%d" % i
    raise AssertionError(f"no test value for {c.table}.{c.name} {c.column_type}")


def unprefixed(table: str) -> str:
    """The MediaWiki table a (possibly second-wiki) table is."""
    return table.removeprefix(PREFIX)


def chunked_row(j: int) -> tuple[bytes, bytes, bytes]:
    """Row ``j`` of l10n_cache (lc_lang, lc_key, lc_value): under each language, the same key in
    three cases, plus languages that are '', hold a NUL byte or are not UTF-8."""
    lang = (b"en", b"EN", b"", b"de\x00", b"\xff")[j % 5]
    key = (b"msg-", b"MSG-", b"Msg-")[(j // 5) % 3] + b"%d" % (j // 15)
    return lang, key, b"v\x00%d" % j


@dataclass
class MwPipeline:
    """A MediaWiki source database on the dev stack and one embedded pipeline over it."""

    stack: StackConnections
    tmp: Path
    db: str
    name: str
    columns: dict[str, list[Column]] = field(default_factory=dict)
    replica_id: int = field(default_factory=lambda: random.randint(*SERVER_IDS))
    _pg_database: str | None = None

    @classmethod
    def create(
        cls,
        stack: StackConnections,
        tmp: Path,
        tables: tuple[str, ...] = TABLES,
        second: tuple[str, ...] = (),
    ) -> MwPipeline:
        """A source database holding these MediaWiki tables as its installer creates them, and the
        ``second`` ones again under :data:`PREFIX` (a second wiki in the same database)."""
        statements = {}
        for statement in mediawiki_statements():
            named = re.match(r"CREATE TABLE (\w+)", statement)
            assert named is not None, statement[:200]  # every index is declared inside its table
            statements[named.group(1)] = statement
        assert set(tables + second) <= statements.keys(), set(tables + second) - statements.keys()
        suffix = uuid.uuid4().hex[:8]
        made = cls(stack, tmp, f"mwboot_{suffix}", f"mwboot-{suffix}")
        with made.source() as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(f"CREATE DATABASE `{made.db}`")
            cur.execute(f"USE `{made.db}`")
            for table in tables:
                cur.execute(statements[table])
            for table in second:
                cur.execute(re.sub(r"^CREATE TABLE \w+", f"CREATE TABLE {PREFIX}{table}", statements[table]))
            cur.execute(
                "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_MAXIMUM_LENGTH, "
                "IS_NULLABLE, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                "ORDER BY TABLE_NAME, ORDINAL_POSITION",
                (made.db,),
            )
            for r in cur.fetchall():
                made.columns.setdefault(r["TABLE_NAME"], []).append(
                    Column(
                        r["TABLE_NAME"],
                        r["COLUMN_NAME"],
                        r["DATA_TYPE"],
                        r["COLUMN_TYPE"],
                        r["CHARACTER_MAXIMUM_LENGTH"],
                        r["IS_NULLABLE"] == "YES",
                        r["COLUMN_KEY"] == "PRI",
                    )
                )
        return made

    @property
    def keyless(self) -> list[str]:
        return sorted(t for t, cols in self.columns.items() if not any(c.key for c in cols))

    @property
    def keyed(self) -> list[str]:
        return sorted(t for t in self.columns if t not in self.keyless)

    def source(self, database: str = "") -> pymysql.Connection[pymysql.cursors.Cursor]:
        return self.stack.mariadb.connect_root(database=database or None, autocommit=True)

    def insert_sql(self, table: str) -> str:
        cols = self.columns[table]
        names = ", ".join(f"`{c.name}`" for c in cols)
        return f"INSERT INTO `{table}` ({names}) VALUES ({', '.join(['%s'] * len(cols))})"

    def fill(self) -> None:
        """Rows 0-3 in every table (keyless ones too), and the chunked table's further rows."""
        with self.source(self.db) as conn, conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            for table, cols in self.columns.items():
                rows = [tuple(value(c, i) for c in cols) for i in range(ROWS)]
                cur.executemany(self.insert_sql(table), rows)
            for table in self.columns:
                if unprefixed(table) == CHUNKED_TABLE:
                    cur.executemany(
                        f"INSERT INTO `{table}` (lc_lang, lc_key, lc_value) VALUES (%s, %s, %s)",
                        [chunked_row(j) for j in range(CHUNKED_ROWS)],
                    )

    def pg_url(self, database: str | None = None) -> str:
        return self.stack.postgres.sqlalchemy_url(database)

    @property
    def wide_keyed(self) -> list[str]:
        """Tables keyed by one BIGINT UNSIGNED column (their keys reach 2**64-1)."""
        return sorted(
            t
            for t, cols in self.columns.items()
            if [c.column_type for c in cols if c.key] == ["bigint(20) unsigned"]
        )

    def write_config(
        self,
        *,
        pg: bool = True,
        sqlite: bool = True,
        lite_exclude: tuple[str, ...] = (),
        file: str = "cdc.yaml",
    ) -> Path:
        """Embedded mode; serving sinks `pg` (its own PostgreSQL database) and `lite`, history `hist`.
        The keyless tables get their whole row as the serving key, as MediaWiki users configure it."""
        key_columns = ", ".join(
            f"'{self.db}.{t}': [{', '.join(c.name for c in self.columns[t])}]" for t in self.keyless
        )
        sinks = ""
        if pg:
            if self._pg_database is None:
                engine = sa.create_engine(self.pg_url(), isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    conn.execute(sa.text(f'CREATE DATABASE "{self.db}"'))
                engine.dispose()
                self._pg_database = self.db
            url = self.pg_url(self.db)
            sinks += f"  - {{name: pg, type: sql, url: '{url}', key_columns: {{{key_columns}}}}}\n"
        if sqlite:
            url = f"sqlite:///{self.tmp / 'serving.db'}"
            exclude = ", ".join(f"'{self.db}.{t}'" for t in lite_exclude)
            sinks += (
                f"  - {{name: lite, type: sql, url: '{url}', key_columns: {{{key_columns}}},"
                f" exclude_tables: [{exclude}]}}\n"
            )
        sinks += (
            f"  - {{name: hist, type: iceberg, namespace: {self.db}, commit_rows: 5000, commit_seconds: 1,"
            f" catalog: {{type: sql, uri: 'sqlite:///{self.tmp / 'catalog.db'}',"
            f" warehouse: '{(self.tmp / 'wh').as_uri()}'}}}}\n"
        )
        m = self.stack.mariadb
        path = self.tmp / file
        path.write_text(
            f"name: {self.name}\n"
            f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{{PASSWORD_ENV}}}',"
            f" server_id: {self.replica_id}, tables: ['{self.db}.*'], heartbeat_seconds: 1}}\n"
            f"sinks:\n{sinks}"
            "batch: {max_events: 2000, max_ms: 100, idle_flush_seconds: 1}\n"
            f"bootstrap: {{mode: never, min_chunk_rows: 16, max_chunk_rows: {CHUNK_ROWS},"
            " chunk_seconds: 0.2}\n"
            f"state_dir: {self.tmp / 'state'}\n"
        )
        return path

    def env(self) -> dict[str, str]:
        return {**os.environ, PASSWORD_ENV: self.stack.mariadb.password}

    def cdc(self, config: Path, command: str, *args: str) -> CdcResult:
        """A one-shot `cdc` command (bootstrap, reconcile), run in this process through click's runner
        as the other CLI tests do: a fresh interpreter costs 3-7 s of imports per command on a loaded
        machine. `cdc run` is a process of its own (:meth:`start`)."""
        from click.testing import CliRunner

        from cdc.cli import main

        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level  # the CLI replaces them with its own
        started = time.monotonic()
        try:
            done = CliRunner().invoke(
                main, [command, "-c", str(config), *args], env={PASSWORD_ENV: self.stack.mariadb.password}
            )
        finally:
            for handler in list(root.handlers):
                root.removeHandler(handler)
            for handler in handlers:
                root.addHandler(handler)
            root.setLevel(level)
        stderr = done.stderr
        if (
            done.exc_info is not None
            and done.exception is not None
            and not isinstance(done.exception, SystemExit)
        ):
            stderr += "".join(traceback.format_exception(*done.exc_info))  # what the process would print
        result = CdcResult(done.exit_code, done.stdout, stderr, time.monotonic() - started)
        with (self.tmp / f"{command}.log").open("a") as log:
            log.write(f"$ cdc {command} {' '.join(args)}  [{result.seconds:.1f} s]\n{result.output}\n")
        return result

    def start(self, config: Path, command: str = "run") -> subprocess.Popen[bytes]:
        with (self.tmp / f"{command}-daemon.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "cdc.cli", command, "-c", str(config)],
                stdout=log,
                stderr=log,
                env=self.env(),
            )

    def drop(self) -> None:
        with self.source() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.db}`")
        if self._pg_database is not None:
            engine = sa.create_engine(self.pg_url(), isolation_level="AUTOCOMMIT")
            with engine.connect() as pg:
                pg.execute(sa.text(f'DROP DATABASE IF EXISTS "{self._pg_database}" WITH (FORCE)'))
            engine.dispose()


@dataclass(frozen=True)
class CdcResult:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class WikiWorkload:
    """Inserts, updates and deletes of awkward rows in some tables of a filled wiki, one small
    transaction at a time, until stopped (in a thread). Rows ``i >= ROWS`` are new; l10n_cache takes
    rows ``j`` of :func:`chunked_row` all over its key span, so that it changes inside every chunk."""

    wiki: MwPipeline
    tables: tuple[str, ...]
    seed: int
    stop: threading.Event = field(default_factory=threading.Event)
    transactions: int = 0
    error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(self.seed)
        live = {t: list(range(ROWS)) for t in self.tables if unprefixed(t) != CHUNKED_TABLE}
        chunked = list(range(CHUNKED_ROWS))
        fresh = 100
        try:
            with self.wiki.source(self.wiki.db) as conn, conn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
                while not self.stop.is_set():
                    cur.execute("BEGIN")
                    for _ in range(rng.randint(1, 4)):
                        fresh += 1
                        table = rng.choice(self.tables)
                        op = rng.random()
                        if unprefixed(table) == CHUNKED_TABLE:
                            self._chunked(cur, table, rng, chunked, op, fresh)
                            continue
                        cols = self.wiki.columns[table]
                        keys = [c for c in cols if c.key]
                        if op < 0.4 or not live[table]:
                            cur.execute(self.wiki.insert_sql(table), tuple(value(c, fresh) for c in cols))
                            live[table].append(fresh)
                            continue
                        i = rng.choice(live[table])
                        where = " AND ".join(f"`{c.name}` = %s" for c in keys)
                        key = tuple(value(c, i) for c in keys)
                        if op < 0.8:
                            target = rng.choice([c for c in cols if not c.key])
                            cur.execute(
                                f"UPDATE `{table}` SET `{target.name}` = %s WHERE {where}",
                                (value(target, fresh), *key),
                            )
                        else:
                            cur.execute(f"DELETE FROM `{table}` WHERE {where}", key)
                            live[table].remove(i)
                    cur.execute("COMMIT")
                    self.transactions += 1
                    time.sleep(rng.random() * 0.01)
        except BaseException as exc:  # noqa: BLE001 - the test thread reports it
            self.error = exc

    @staticmethod
    def _chunked(
        cur: pymysql.cursors.Cursor, table: str, rng: random.Random, live: list[int], op: float, fresh: int
    ) -> None:
        if op < 0.3:
            j = CHUNKED_ROWS + fresh
            cur.execute(
                f"INSERT INTO `{table}` (lc_lang, lc_key, lc_value) VALUES (%s, %s, %s)", chunked_row(j)
            )
            live.append(j)
            return
        j = rng.choice(live)
        lang, key, _ = chunked_row(j)
        if op < 0.8:
            cur.execute(
                f"UPDATE `{table}` SET lc_value = %s WHERE lc_lang = %s AND lc_key = %s",
                (b"u\x00\xff%d" % fresh, lang, key),
            )
        else:
            cur.execute(f"DELETE FROM `{table}` WHERE lc_lang = %s AND lc_key = %s", (lang, key))
            live.remove(j)
