"""executemany with rows handed to the driver as tuples (SQLite, MariaDB).

SQLAlchemy's executemany takes a dict per row and runs its parameter construction per row
(``construct_params`` and the bind processors, one call each per row and value): about a third of an
embedded SQLite apply's CPU (benchmarks/results/profiles). Here the statement is compiled once, its
placeholders put in order, the type's own bind processors (the very functions SQLAlchemy would call,
so what is stored does not change) applied per value, and the tuples given to
``Connection.exec_driver_sql``, which passes them to the driver's executemany as they are (in the
same transaction, with SQLAlchemy's error wrapping: the sink still classifies driver errors).
Any statement this cannot map exactly goes the ordinary way.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from sinks.sql.type_mapping import Dialect

__all__ = ["compiled", "executemany", "executemany_columns"]

_Processor = Callable[[Any], Any]


def executemany(
    conn: sa.Connection,
    stmt: sa.Executable,
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    dialect: Dialect,
) -> None:
    """``stmt`` once per row of ``rows``, whose values are those of the bind parameters ``names``."""
    prepared = None if dialect is Dialect.POSTGRESQL else _prepare(conn, stmt, names)
    if prepared is None:
        conn.execute(stmt, [dict(zip(names, row, strict=True)) for row in rows])
        return
    sql, order, processors = prepared
    identity = order == tuple(range(len(names)))
    if not processors:
        params = (
            [tuple(row) for row in rows] if identity else [tuple([row[i] for i in order]) for row in rows]
        )
    else:
        steps = [processors.get(i) for i in order]
        params = [
            tuple(
                [
                    v if p is None or v is None else p(v)
                    for v, p in zip([row[i] for i in order], steps, strict=True)
                ]
            )
            for row in rows
        ]
    conn.exec_driver_sql(sql, params)


def executemany_columns(
    conn: sa.Connection,
    table: sa.Table,
    kind: str,
    build: Callable[[], sa.Executable],
    names: Sequence[str],
    columns: Sequence[Sequence[Any]],
) -> None:
    """``build()``'s statement once per row, ``columns[j]`` holding the values of parameter
    ``names[j]`` already in the form the type's bind processor gives (the column-wise paths convert
    whole columns; no processor runs here). Same SQL text and driver call as :func:`executemany`.

    The statement is built and compiled once per ``table``, ``kind`` (what ``build`` makes: an
    upsert, a delete), parameters and dialect, not once per batch: building and compiling it cost
    ~0.2 us per row of a SQLite apply from Kafka (5,000-row batches)."""
    sql, order = compiled(conn, table, kind, build, names)
    conn.exec_driver_sql(sql, list(zip(*(columns[i] for i in order), strict=True)))


def compiled(
    conn: sa.Connection, table: sa.Table, kind: str, build: Callable[[], sa.Executable], names: Sequence[str]
) -> tuple[str, tuple[int, ...]]:
    """:func:`executemany_columns`'s SQL text and the index in ``names`` of each placeholder's
    value, compiled once per table, kind, parameters and dialect."""
    dialect = conn.dialect
    key = (kind, tuple(names), type(dialect), dialect.paramstyle)
    per_table = _COMPILED.setdefault(table, {})
    prepared = per_table.get(key)
    if prepared is None:
        found = _prepare(conn, build(), names)
        if found is None:  # only statements whose parameters are exactly ``names`` come here
            raise ValueError(f"executemany_columns: the statement's parameters are not {list(names)}")
        prepared = per_table[key] = (found[0], found[1])
    return prepared


# The column-wise paths' compiled SQL (text, parameter order) per target table: held weakly, so a
# closed sink's tables (and a table rebuilt for a new shape) take theirs with them.
_COMPILED: weakref.WeakKeyDictionary[sa.Table, dict[tuple[Any, ...], tuple[str, tuple[int, ...]]]] = (
    weakref.WeakKeyDictionary()
)


def _prepare(
    conn: sa.Connection, stmt: sa.Executable, names: Sequence[str]
) -> tuple[str, tuple[int, ...], dict[int, _Processor]] | None:
    """The SQL text with positional placeholders, the index in ``names`` of each placeholder's value,
    and the bind processors by index in ``names``; None if the statement's placeholders are not
    exactly ``names``."""
    dialect = conn.dialect
    if not dialect.positional:
        # pymysql's "pyformat" names its placeholders; the same dialect compiling "format" (%s)
        # takes tuples. A copy: the engine's own dialect stays as it is.
        dialect = copy.copy(dialect)
        dialect.paramstyle = "format"
        dialect.positional = True
    compiled: Any = stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
    positions = compiled.positiontup
    if positions is None:
        return None
    binds = compiled.binds
    keys = [binds[name].key for name in positions]
    if sorted(keys) != sorted(names):
        return None
    index = {name: i for i, name in enumerate(names)}
    order = tuple(index[key] for key in keys)
    processors: dict[int, _Processor] = {}
    for name in positions:
        param = binds[name]
        processor = param.type._cached_bind_processor(dialect)
        if processor is not None:
            processors[index[param.key]] = processor
    return compiled.string, order, processors
