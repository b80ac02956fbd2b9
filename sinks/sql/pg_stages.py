"""Stage tables PostgreSQL sinks COPY into, made once per connection and table shape.

A stage is a temporary table (``ON COMMIT DELETE ROWS``) the session keeps: creating and dropping
one per batch writes PostgreSQL's catalog every time (measured in benchmarks/results/latest.md,
section pgapply). One is made per purpose, target table, columns and column types, so that a
changed table gets a new one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
import sqlalchemy as sa
from psycopg import sql

__all__ = ["KeysExist", "Stages", "as_dbapi_error", "execute"]

_names = itertools.count()
_INFO_KEY = "headwater_pg_stages"


class KeysExist(Exception):
    """A straight COPY of a batch's inserts met a key the target table already holds."""

    def __init__(self, target: str) -> None:
        super().__init__(f"{target}: an inserted key is already in the table")
        self.target = target


@dataclass(slots=True)
class Stages:
    """The stage tables one database connection holds (they live as long as its session).

    Those made by the transaction under way are only pending: a rollback takes them away with it,
    so they are forgotten unless :meth:`confirm` is called after the commit."""

    made: dict[tuple[str, ...], str] = field(default_factory=dict)
    pending: list[tuple[str, ...]] = field(default_factory=list)

    @classmethod
    def of(cls, conn: sa.Connection) -> Stages:
        info = conn.connection.info  # follows the DBAPI connection: a new session starts empty
        stages = info.get(_INFO_KEY)
        if not isinstance(stages, Stages):
            stages = info[_INFO_KEY] = cls()
        return stages

    def confirm(self) -> None:
        self.pending.clear()

    def confirm_if(self, committed: bool) -> None:
        """:meth:`confirm` if the transaction committed, else :meth:`forget`."""
        if committed:
            self.confirm()
        else:
            self.forget()

    def forget(self) -> None:
        for shape in self.pending:
            self.made.pop(shape, None)
        self.pending.clear()

    def stage(self, conn: sa.Connection, table: sa.Table, purpose: str, names: Sequence[str]) -> str:
        """The name of the session's empty stage for ``names`` of ``table`` (typed as its columns)."""
        types = [str(table.c[n].type.compile(dialect=conn.dialect)) for n in names]
        # the purpose too: a key-only delete stage may have the very columns of an upsert's
        shape = (purpose, table.schema or "", table.name, *names, "\x00", *types)
        name = self.made.get(shape)
        if name is None:
            name = f"_hw_keep_{next(_names)}"  # not _hw_stage_: postgres_copy names its own so
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                for n, t in zip(names, types, strict=True)
            )
            execute(
                conn,
                sql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DELETE ROWS").format(
                    sql.Identifier(name), columns
                ),
            )
            self.made[shape] = name
            self.pending.append(shape)
        return name


def execute(conn: sa.Connection, statement: sql.Composable) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.execute(statement)


def as_dbapi_error(exc: BaseException) -> sa.exc.DBAPIError | None:
    """A psycopg error raised on the driver's connection itself (COPY, pipelined statements), as
    SQLAlchemy would have wrapped it: the sink classifies those (transient or not). None: not one."""
    if not isinstance(exc, psycopg.Error):
        return None
    wrapped = sa.exc.DBAPIError.instance(None, None, exc, psycopg.Error)
    return wrapped if isinstance(wrapped, sa.exc.DBAPIError) else None
