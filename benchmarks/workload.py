"""A MediaWiki-like workload written into MariaDB, each part in a known binlog range.

Tables (``hw_bench`` database, the one ``decode_bench`` filters on): ``actor``, ``page``, ``revision``
and ``text``, with the column mix of a wiki: unsigned integers, VARBINARY titles and hashes,
DATETIME(6), DECIMAL, JSON and TEXT. Rows are produced by the server (``INSERT ... SELECT`` over the
Sequence engine's ``seq_<a>_to_<b>`` tables) so that generating a million rows costs seconds.

Ranges (each starts in a fresh binlog file, so ``mariadb-binlog`` reads one file):

- ``bulk``: multi-row statements of 1000 rows, one transaction each, rotating over the tables
  (50% revision, 30% text, 10% page, 5% actor inserts, 5% page updates);
- ``single``: single-row transactions (one revision insert per transaction);
- ``txn_<n>``: one transaction of ``n`` rows (memory against transaction size).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pymysql
from pymysql.constants import CLIENT

from benchmarks.decode_bench import DB, Range, Server, _coords

STATEMENT_ROWS = 1000

SCHEMA = (
    f"""CREATE TABLE {DB}.actor (
  actor_id BIGINT UNSIGNED NOT NULL PRIMARY KEY, actor_user INT UNSIGNED,
  actor_name VARBINARY(255) NOT NULL, actor_registered DATETIME(6))""",
    f"""CREATE TABLE {DB}.page (
  page_id INT UNSIGNED NOT NULL PRIMARY KEY, page_namespace INT NOT NULL,
  page_title VARBINARY(255) NOT NULL, page_is_redirect TINYINT UNSIGNED NOT NULL,
  page_touched DATETIME(6) NOT NULL, page_latest BIGINT UNSIGNED NOT NULL,
  page_len INT UNSIGNED NOT NULL, page_content_model VARBINARY(32))""",
    f"""CREATE TABLE {DB}.revision (
  rev_id BIGINT UNSIGNED NOT NULL PRIMARY KEY, rev_page INT UNSIGNED NOT NULL,
  rev_actor BIGINT UNSIGNED NOT NULL, rev_timestamp DATETIME(6) NOT NULL,
  rev_minor_edit TINYINT UNSIGNED NOT NULL, rev_len INT UNSIGNED, rev_sha1 VARBINARY(32) NOT NULL,
  rev_score DECIMAL(10,4), rev_comment TEXT, rev_meta JSON)""",
    f"""CREATE TABLE {DB}.text (
  old_id BIGINT UNSIGNED NOT NULL PRIMARY KEY, old_text MEDIUMTEXT, old_flags VARBINARY(255))""",
)

# SELECT lists over a Sequence table's ``seq``: one row of each table per value
_SELECT = {
    "actor": "seq, seq % 100000, CONCAT('User ', seq), TIMESTAMPADD(MICROSECOND, seq * 997, '2020-01-01')",
    "page": (
        "seq, seq % 16, CONCAT('Page_title_number_', seq), seq % 9 = 0,"
        " TIMESTAMPADD(MICROSECOND, seq * 1013, '2024-01-01'), seq * 3, 500 + seq % 20000, 'wikitext'"
    ),
    "revision": (
        "seq, 1 + seq % 50000, 1 + seq % 5000, TIMESTAMPADD(MICROSECOND, seq * 1009, '2024-01-01'),"
        " seq % 2, 100 + seq % 5000, UNHEX(SHA1(seq)), (seq % 1000000) / 10000,"
        " CONCAT('/* section ', seq % 40, ' */ copyedit, fixed typos and links'),"
        " JSON_OBJECT('tags', JSON_ARRAY('mobile edit', 'visualeditor'), 'bot', seq % 7 = 0, 'size', seq)"
    ),
    "text": (
        "seq, CONCAT('{{Infobox|name=', seq, '}} ', REPEAT('Lorem ipsum dolor sit amet. ', 6)), 'utf-8,gzip'"
    ),
}
# the bulk range's statement rotation: 20 statements of STATEMENT_ROWS rows
_ROTATION = ("revision",) * 10 + ("text",) * 6 + ("page",) * 2 + ("actor", "page-update")


@dataclass
class Workload:
    """Writes the workload; keeps the next free id of each table across ranges."""

    server: Server
    next_id: dict[str, int]

    @classmethod
    def create(cls, server: Server) -> Workload:
        """A fresh ``hw_bench`` database with the wiki tables."""
        with _connect(server) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {DB}")
            cur.execute(f"CREATE DATABASE {DB}")
            for ddl in SCHEMA:
                cur.execute(ddl)
        return cls(server, {"actor": 1, "page": 1, "revision": 1, "text": 1})

    def _insert_select(self, cur: pymysql.cursors.Cursor, table: str, rows: int) -> None:
        first = self.next_id[table]
        last = first + rows - 1
        cur.execute(f"INSERT INTO {DB}.{table} SELECT {_SELECT[table]} FROM mysql.seq_{first}_to_{last}")
        self.next_id[table] = last + 1

    def bulk(self, rows: int) -> Range:
        """``rows`` row changes in multi-row statements of ``STATEMENT_ROWS`` rows."""
        with _connect(self.server) as conn, conn.cursor() as cur:
            file, start = _fresh_file(cur)
            done = 0
            last_pages = (1, 0)
            for kind in itertools.cycle(_ROTATION):
                if done >= rows:
                    break
                n = min(STATEMENT_ROWS, rows - done)
                if kind == "page-update" and last_pages[1] >= last_pages[0]:
                    low, high = last_pages[0], min(last_pages[1], last_pages[0] + n - 1)
                    cur.execute(
                        f"UPDATE {DB}.page SET page_latest = page_latest + 1, page_len = page_len + 7,"
                        " page_touched = TIMESTAMPADD(SECOND, 1, page_touched)"
                        f" WHERE page_id BETWEEN {low} AND {high}"
                    )
                    done += high - low + 1
                    continue
                table = "page" if kind == "page-update" else kind
                if table == "page":
                    last_pages = (self.next_id["page"], self.next_id["page"] + n - 1)
                self._insert_select(cur, table, n)
                done += n
            return _closed(cur, "bulk", file, start, done)

    def single(self, transactions: int, per_round_trip: int = 200) -> Range:
        """``transactions`` single-row transactions (one revision insert each, autocommit)."""
        with _connect(self.server) as conn, conn.cursor() as cur:
            file, start = _fresh_file(cur)
            for first in range(0, transactions, per_round_trip):
                statements = []
                for _ in range(min(per_round_trip, transactions - first)):
                    i = self.next_id["revision"]
                    self.next_id["revision"] += 1
                    statements.append(
                        f"INSERT INTO {DB}.revision SELECT {_SELECT['revision']} FROM mysql.seq_{i}_to_{i}"
                    )
                cur.execute(";".join(statements))
                while cur.nextset():
                    pass
            return _closed(cur, "single", file, start, transactions)

    def transaction(self, rows: int) -> Range:
        """One transaction of ``rows`` revision inserts."""
        with _connect(self.server) as conn, conn.cursor() as cur:
            file, start = _fresh_file(cur)
            self._insert_select(cur, "revision", rows)
            return _closed(cur, f"txn_{rows}", file, start, rows)


def _connect(s: Server) -> pymysql.Connection[pymysql.cursors.Cursor]:
    return pymysql.connect(
        host=s.host,
        port=s.port,
        user=s.root_user,
        password=s.root_password,
        autocommit=True,
        client_flag=CLIENT.MULTI_STATEMENTS,
    )


def _fresh_file(cur: pymysql.cursors.Cursor) -> tuple[str, int]:
    cur.execute("FLUSH BINARY LOGS")
    return _coords(cur)


def _closed(cur: pymysql.cursors.Cursor, name: str, file: str, start: int, rows: int) -> Range:
    end_file, stop = _coords(cur)
    if end_file != file:
        raise RuntimeError(f"range {name} crossed a binlog rotation ({file} -> {end_file}): lower its size")
    return Range(name, file, start, stop, rows)
