"""A table in one store (the source or a copy), and the queries the compare pushes into it.

Every query is SQL run by the store itself: chunk checksums are aggregates (count and a sum of row
hashes) grouped by key bucket, so only a few numbers per chunk travel; rows travel only for the
small chunks that differ. Ranges are given explicitly (taken from the source keys), so no store's
collation decides which rows a chunk holds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from cdc.core.schemas import INTEGER_RANGES, ArrowKind
from reconciler.canonical import (
    Engine,
    column_text,
    digest_text,
    int_div,
    quote,
    row_hash,
    row_text,
    sqlite_functions,
    sqlite_wide_bucket,
    sqlite_wide_value,
)
from reconciler.model import CompareColumn, KeyRange
from reconciler.policy_rows import policy_text, raw_select, row_checksum

__all__ = ["BucketSums", "DuckDbRunner", "Rows", "Runner", "SqlRunner", "Store", "int_key"]

# canonical key texts -> canonical column texts (None = NULL), in ``Store.columns`` order
Rows = dict[tuple[str, ...], tuple[str | None, ...]]
BucketSums = dict[int, tuple[int, int]]  # bucket -> (rows, sum of row hashes)

_FEW_RANGES = 32
_IN_LIST = 5_000
_EXPAND = 64  # buckets this narrow (leaves) are read by their keys...
_EXPAND_KEYS = 200_000  # ...up to this many keys in all
# MariaDB caps a GROUP_CONCAT at max_allowed_packet (16 MB by default) whatever this says; a longer
# one is cut with a warning, and a cut digest is no digest (``SqlRunner.query_clean``)
_DIGEST_MAX_BYTES = 16 * 1024 * 1024
_COUNT_BELOW = 10_000  # row estimates below this are counted instead (``Store.row_estimate``)


class Runner(Protocol):
    engine: Engine

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...


class SqlRunner:
    """SQL through a SQLAlchemy engine; ``?`` placeholders become the driver's."""

    def __init__(self, engine: sa.Engine, kind: Engine, utc_session: bool = False) -> None:
        self.sa_engine = engine
        self.engine = kind
        self._format_style = engine.dialect.paramstyle in ("format", "pyformat")
        if kind is Engine.SQLITE:

            @sa.event.listens_for(engine, "connect")
            def _functions(dbapi_conn: Any, _record: Any) -> None:
                for name, nargs, fn in sqlite_functions():
                    dbapi_conn.create_function(name, nargs, fn, deterministic=True)

        if kind is Engine.POSTGRESQL:
            # bucket sums group by an expression PostgreSQL cannot estimate (it plans a million
            # groups): with the default 4MB it plans a partitioned, single-process hash aggregate;
            # with more it sorts in parallel workers, about twice as fast (session setting only)

            @sa.event.listens_for(engine, "connect")
            def _work_mem(dbapi_conn: Any, _record: Any) -> None:
                with dbapi_conn.cursor() as cur:
                    cur.execute("SET work_mem = '64MB'")
                    cur.execute("SET DateStyle = 'ISO, MDY'")  # the timestamp text digests read
                dbapi_conn.commit()

        if utc_session:
            # MariaDB TIMESTAMP values are shown in the session's zone: read them in UTC

            @sa.event.listens_for(engine, "connect")
            def _utc(dbapi_conn: Any, _record: Any) -> None:
                with dbapi_conn.cursor() as cur:
                    cur.execute("SET time_zone = '+00:00'")

    def driver_sql(self, sql: str) -> str:
        if self._format_style:
            return sql.replace("%", "%%").replace("?", "%s")
        return sql

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self.sa_engine.connect() as conn:
            result = conn.exec_driver_sql(self.driver_sql(sql), tuple(params))
            rows = [tuple(r) for r in result]
            conn.rollback()
            return rows

    def query_clean(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]] | None:
        """MariaDB: ``query``, or None if the statement raised a warning (a GROUP_CONCAT cut short)."""
        with self.sa_engine.connect() as conn:
            rows = [tuple(r) for r in conn.exec_driver_sql(self.driver_sql(sql), tuple(params))]
            warnings = conn.exec_driver_sql("SELECT @@warning_count").scalar()
            conn.rollback()
            return None if warnings else rows

    @contextmanager
    def snapshot(self) -> Iterator[Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]]:
        """MariaDB: a consistent snapshot; queries inside it see the source as of one binlog point."""
        with self.sa_engine.connect() as conn:
            conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            try:

                def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                    return [tuple(r) for r in conn.exec_driver_sql(self.driver_sql(sql), tuple(params))]

                yield run
            finally:
                conn.rollback()

    def close(self) -> None:
        self.sa_engine.dispose()


class DuckDbRunner:
    """SQL over an Arrow table registered in DuckDB as ``t`` (the Iceberg history's state)."""

    engine = Engine.DUCKDB

    def __init__(self, table: Any) -> None:
        import duckdb

        self._lock = threading.Lock()
        self._con = duckdb.connect()
        self._con.register("t", table)

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return [tuple(r) for r in self._con.execute(sql, list(params)).fetchall()]

    def close(self) -> None:
        self._con.close()


def _bucket_number(b: Any) -> int:
    """A bucket as the store computed it; never a fraction (a DOUBLE quotient made two buckets one)."""
    n = int(b)
    if n != b and str(n) != str(b):
        raise ValueError(f"a key bucket computed as {b!r}, not an integer: the bucket sums would be wrong")
    return n


def _add(out: BucketSums, bucket: int, n: int, s: int) -> None:
    # added, never replaced: two results for one bucket (several predicates) must not hide rows
    n0, s0 = out.get(bucket, (0, 0))
    out[bucket] = (n0 + n, s0 + s)


def int_key(key: Sequence[CompareColumn]) -> bool:
    """The bucketed fast path: one integer key column."""
    return len(key) == 1 and key[0].kind in INTEGER_RANGES


@dataclass(frozen=True)
class Store:
    """One table in one store: its name as SQL, its key, and the columns compared (source order)."""

    runner: Runner
    table_sql: str  # quoted, qualified
    key: tuple[CompareColumn, ...]
    columns: tuple[CompareColumn, ...]

    @property
    def engine(self) -> Engine:
        return self.runner.engine

    def _q(self, name: str) -> str:
        return quote(self.engine, name)

    def _hash(self) -> str:
        return row_hash(self.engine, row_text(self.engine, self.columns))

    def _key_texts(self) -> str:
        return ", ".join(column_text(self.engine, c, self._q(c.name)) for c in self.key)

    def _value_texts(self) -> str:
        return ", ".join(
            raw_select(self.engine, c) if c.policy else column_text(self.engine, c, self._q(c.name))
            for c in self.columns
        )

    @property
    def _in_python(self) -> bool:
        """Some column's policy runs here (reconciler/policy_rows.py): rows, not sums, come back."""
        return any(c.policy is not None for c in self.columns)

    def _texts(self, values: Sequence[Any]) -> tuple[str | None, ...]:
        return tuple(policy_text(c, v) if c.policy else v for c, v in zip(self.columns, values, strict=True))

    def _sums_in_python(self, sql: str, params: Sequence[Any]) -> BucketSums:
        """``sql`` gives a bucket and the value texts per row: counts and checksums summed here."""
        out: BucketSums = {}
        for b, *values in self.runner.query(sql, params):
            _add(out, _bucket_number(b), 1, row_checksum(self.columns, self._texts(values)))
        return out

    # -- the integer-key fast path -----------------------------------------------------------

    def _wide(self) -> bool:
        return self.key[0].kind is ArrowKind.UINT64

    def _offset(self) -> str:
        """``key - origin`` over bigint in PostgreSQL and DuckDB: there an INT key minus an INT origin
        overflows when the keys span the type (-2**31 to 2**31-1: "integer out of range")."""
        k = self._q(self.key[0].name)
        if self.engine in (Engine.POSTGRESQL, Engine.DUCKDB) and not self._wide():
            return f"CAST({k} AS BIGINT) - ?"
        if self.engine is Engine.DUCKDB:
            # the Iceberg history keeps an unsigned BIGINT as decimal(20,0), whose ``//`` is a DOUBLE
            # quotient (2**63 // 2**67 is 0.0625; near 2**64 rounded into the next bucket): over
            # HUGEINT the buckets are exact integers, as in the source
            return f"CAST({k} AS HUGEINT) - ?"
        return f"{k} - ?"

    def _sqlite_wide(self) -> bool:
        """SQLite holding keys past 2**63-1: as 20-digit text, which SQL arithmetic cannot use, and a
        Python int that large cannot be bound (OverflowError)."""
        return self.engine is Engine.SQLITE and self._wide()

    def _bucket(self, width: int) -> str:
        """SQL giving ``(key - origin) // width``; its one parameter is ``self._origin(origin)``."""
        if self._sqlite_wide():
            return sqlite_wide_bucket(self._q(self.key[0].name), width)
        return int_div(self.engine, self._offset(), width, self._wide())

    def _origin(self, origin: int) -> int | str:
        return str(origin) if self._sqlite_wide() else origin

    def _key_value(self, value: int) -> int | str:
        """A key bound as a parameter: as the store holds it (SQLite: text past 2**63-1)."""
        return sqlite_wide_value(value) if self._sqlite_wide() else value

    def _key_literal(self, value: int) -> str:
        """A key written into the SQL (integers we computed: safe inline)."""
        v = self._key_value(int(value))
        return f"'{v}'" if isinstance(v, str) else str(v)

    def int_bounds(self) -> tuple[int | None, int | None]:
        """The key's lowest and highest values (read from the index: no scan)."""
        k = self._q(self.key[0].name)
        rows = self.runner.query(f"SELECT MIN({k}), MAX({k}) FROM {self.table_sql}", ())
        lo, hi = rows[0]
        return (None if lo is None else int(lo), None if hi is None else int(hi))

    def row_estimate(self) -> int:
        """About how many rows the table holds: its planner's estimate from the table statistics in
        MariaDB and PostgreSQL (no scan: a ``COUNT(*)`` was a sixth of an in-sync compare), counted
        elsewhere, or where the statistics say fewer than ``_COUNT_BELOW`` rows (a table loaded since
        its statistics were taken may say 0). It only sizes the compare's slices and buckets."""
        estimate = 0
        if self.engine is Engine.MARIADB:
            rows = self.runner.query(f"EXPLAIN SELECT * FROM {self.table_sql}", ())
            estimate = int(rows[0][8] or 0) if rows and len(rows[0]) > 8 else 0
        elif self.engine is Engine.POSTGRESQL:
            rows = self.runner.query(f"EXPLAIN (FORMAT JSON) SELECT * FROM {self.table_sql}", ())
            plan = rows[0][0] if rows else None
            if isinstance(plan, str):
                plan = json.loads(plan)
            if isinstance(plan, list) and plan and isinstance(plan[0], dict):
                estimate = int(plan[0].get("Plan", {}).get("Plan Rows", 0))
        if estimate >= _COUNT_BELOW:
            return estimate
        return int(self.runner.query(f"SELECT COUNT(*) FROM {self.table_sql}", ())[0][0])

    def int_count(self, lo: int, hi: int) -> int:
        """Rows keyed in ``[lo, hi)``."""
        k = self._q(self.key[0].name)
        sql = f"SELECT COUNT(*) FROM {self.table_sql} WHERE {k} >= ? AND {k} < ?"
        return int(self.runner.query(sql, [self._key_value(lo), self._key_value(hi)])[0][0])

    def digests(self, ranges: Sequence[KeyRange]) -> list[tuple[int, str] | None]:
        """Per range: its row count and the MD5 of its rows' digest texts joined in key order
        (``canonical.digest_text``); None where this store cannot tell (not MariaDB or PostgreSQL, a
        column policy computed in Python, a MariaDB digest cut short). Equal digests: equal rows."""
        mariadb = self.engine is Engine.MARIADB and isinstance(self.runner, SqlRunner)
        if self._in_python or not (mariadb or self.engine is Engine.POSTGRESQL):
            return [None] * len(ranges)
        k = self._q(self.key[0].name)
        text = digest_text(self.engine, self.columns)
        out: list[tuple[int, str] | None] = []
        for r in ranges:
            params = [self._key_value(r.lo), self._key_value(r.hi)]
            if self.engine is Engine.POSTGRESQL:
                # rows in key order from a sorted subquery (an index scan: no sort), which PostgreSQL
                # keeps for the aggregate: 15-25% faster than string_agg's own ORDER BY, which sorts.
                # The order is not promised: rows in another order make the digests differ (slower,
                # never wrong; see below)
                sql = (
                    f"SELECT COUNT(*), md5(string_agg(hw_t, chr(10))) FROM (SELECT {text} AS hw_t "
                    f"FROM {self.table_sql} WHERE {k} >= ? AND {k} < ? ORDER BY {k}) hw"
                )
                rows: list[tuple[Any, ...]] | None = self.runner.query(sql, params)
            else:
                # no ORDER BY (it sorts: twice the time): a range of an InnoDB primary key is read in
                # key order. Should rows come in another order, the digests differ and the range is
                # compared by bucket sums (``compare``): slower, never wrong
                sql = (
                    f"SET STATEMENT group_concat_max_len = {_DIGEST_MAX_BYTES} FOR "
                    f"SELECT COUNT(*), MD5(GROUP_CONCAT({text} SEPARATOR X'0A')) FROM {self.table_sql} "
                    f"WHERE {k} >= ? AND {k} < ?"
                )
                assert isinstance(self.runner, SqlRunner)
                rows = self.runner.query_clean(sql, params)
            if rows is None:
                out.append(None)
                continue
            n, digest = rows[0]
            # a NULL digest over rows (every row text NULL) says nothing: never "equal"
            out.append(None if n and digest is None else (int(n), str(digest or "")))
        return out

    def _where_parts(self, ranges: Sequence[KeyRange], origin: int) -> list[tuple[str, list[Any]]]:
        """Predicates selecting ``ranges``, one per query to run.

        Few ranges: explicit key ranges (index range scans). Many: ranges of one width aligned on
        ``origin`` (each bisection level's) become ``bucket IN (...)``, a single scan: a long OR of
        ranges makes MariaDB's range optimizer give up and test every row against every range.
        Single keys (re-checks) become ``key IN (...)``.
        """
        k = self._q(self.key[0].name)
        if len(ranges) <= _FEW_RANGES:
            parts, params = [], []
            for r in ranges:
                parts.append(f"({k} >= ? AND {k} < ?)")
                params += [self._key_value(r.lo), self._key_value(r.hi)]
            return [(" OR ".join(parts), params)] if parts else []
        out: list[tuple[str, list[Any]]] = []
        by_width: dict[int, list[int]] = {}
        odd: list[KeyRange] = []
        for r in ranges:
            w = r.hi - r.lo
            if (r.lo - origin) % w == 0:
                by_width.setdefault(w, []).append((r.lo - origin) // w)
            else:
                odd.append(r)
        for w, buckets in sorted(by_width.items()):
            if 1 < w <= _EXPAND and len(buckets) * w <= _EXPAND_KEYS:
                # leaf-sized buckets: their keys listed, found through the index, instead of a scan
                # that divides every key of the table
                keys_all = [origin + b * w + i for b in buckets for i in range(w)]
                for at in range(0, len(keys_all), _IN_LIST):
                    keys = ", ".join(self._key_literal(x) for x in keys_all[at : at + _IN_LIST])
                    out.append((f"{k} IN ({keys})", []))
                continue
            for at in range(0, len(buckets), _IN_LIST):
                chunk = buckets[at : at + _IN_LIST]
                marks = ", ".join(str(int(b)) for b in chunk)  # integers we computed: safe inline
                if w == 1:
                    keys = ", ".join(self._key_literal(int(b) + origin) for b in chunk)
                    out.append((f"{k} IN ({keys})", []))
                else:
                    out.append((f"{self._bucket(w)} IN ({marks})", [self._origin(origin)]))
        for at in range(0, len(odd), _FEW_RANGES):
            out += self._where_parts(odd[at : at + _FEW_RANGES], origin)
        return out

    def bucket_sums(self, ranges: Sequence[KeyRange], origin: int, width: int) -> BucketSums:
        """Per bucket ``(key - origin) // width`` inside ``ranges``: row count and hash sum."""
        bucket = self._bucket(width)
        at = self._origin(origin)
        out: BucketSums = {}
        for where, params in self._where_parts(ranges, origin):
            if self._in_python:
                sql = f"SELECT {bucket}, {self._value_texts()} FROM {self.table_sql} WHERE {where}"
                for b, (n, s) in self._sums_in_python(sql, [at, *params]).items():
                    _add(out, b, n, s)
                continue
            sql = (
                f"SELECT {bucket} AS b, COUNT(*), SUM({self._hash()}) FROM {self.table_sql} "
                f"WHERE {where} GROUP BY 1"
            )
            for b, n, s in self.runner.query(sql, [at, *params]):
                _add(out, _bucket_number(b), int(n), int(s or 0))
        return out

    def int_rows(self, ranges: Sequence[KeyRange], origin: int = 0) -> Rows:
        out: Rows = {}
        for where, params in self._where_parts(ranges, origin):
            out.update(self._rows(where, params))
        return out

    def int_outside(self, lo: int, hi: int) -> Rows:
        """Rows keyed below ``lo`` or at/above ``hi`` (a copy's rows beyond the source's key span)."""
        k = self._q(self.key[0].name)
        return self._rows(f"{k} < ? OR {k} >= ?", [self._key_value(lo), self._key_value(hi)])

    def all_rows(self) -> Rows:
        return self._rows("1 = 1", [])

    def _rows(self, where: str, params: Sequence[Any]) -> Rows:
        nk = len(self.key)
        sql = f"SELECT {self._key_texts()}, {self._value_texts()} FROM {self.table_sql} WHERE {where}"
        if self._in_python:
            return {tuple(r[:nk]): self._texts(r[nk:]) for r in self.runner.query(sql, params)}
        return {tuple(r[:nk]): tuple(r[nk:]) for r in self.runner.query(sql, params)}

    # -- any key: explicit boundaries taken from the source ------------------------------------

    def boundaries(self, every: int, after: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        """Every ``every``-th key in byte order (the source's; passed to the copies as they are),
        counted from ``after`` (a key, included) if given: a resumed run's first key not compared."""
        keys = ", ".join(self._ordered(c) for c in self.key)
        names = ", ".join(self._q(c.name) for c in self.key)
        where, params = self._chunk_where(after, None)
        sql = (
            f"SELECT {names} FROM (SELECT {names}, ROW_NUMBER() OVER (ORDER BY {keys}) AS hw_rn "
            f"FROM {self.table_sql} WHERE {where}) hw WHERE MOD(hw_rn, ?) = 0 ORDER BY {keys}"
        )
        if self.engine is Engine.SQLITE:
            sql = sql.replace("MOD(hw_rn, ?)", "(hw_rn % ?)")
        return self.runner.query(sql, [*params, every])

    def _ordered(self, c: CompareColumn) -> str:
        """The key column compared by bytes, not by the store's collation."""
        q = self._q(c.name)
        if c.kind.value == "string":
            if self.engine is Engine.MARIADB:
                return f"CAST(CONVERT({q} USING utf8mb4) AS BINARY)"
            if self.engine is Engine.POSTGRESQL:
                return f'{q} COLLATE "C"'
        return q

    def _after(self, bound: tuple[Any, ...]) -> tuple[str, list[Any]]:
        """Row-value ``key >= bound`` in byte order."""
        cols = ", ".join(self._ordered(c) for c in self.key)
        marks = ", ".join(self._bound(c) for c in self.key)
        return f"({cols}) >= ({marks})", list(bound)

    def _bound(self, c: CompareColumn) -> str:
        if c.kind.value == "string":
            if self.engine is Engine.MARIADB:
                return "CAST(CONVERT(? USING utf8mb4) AS BINARY)"
            if self.engine is Engine.POSTGRESQL:
                return '? COLLATE "C"'
        return "?"

    def _chunk_where(self, lo: tuple[Any, ...] | None, hi: tuple[Any, ...] | None) -> tuple[str, list[Any]]:
        parts, params = [], []
        if lo is not None:
            sql, p = self._after(lo)
            parts.append(sql)
            params += p
        if hi is not None:
            sql, p = self._after(hi)
            parts.append(f"NOT {sql}")
            params += p
        return " AND ".join(parts) or "1 = 1", params

    def chunk_sum(self, lo: tuple[Any, ...] | None, hi: tuple[Any, ...] | None) -> tuple[int, int]:
        where, params = self._chunk_where(lo, hi)
        if self._in_python:
            sql = f"SELECT 0, {self._value_texts()} FROM {self.table_sql} WHERE {where}"
            return self._sums_in_python(sql, params).get(0, (0, 0))
        rows = self.runner.query(
            f"SELECT COUNT(*), SUM({self._hash()}) FROM {self.table_sql} WHERE {where}", params
        )
        n, s = rows[0]
        return int(n), int(s or 0)

    def chunk_rows(self, lo: tuple[Any, ...] | None, hi: tuple[Any, ...] | None) -> Rows:
        where, params = self._chunk_where(lo, hi)
        return self._rows(where, params)
