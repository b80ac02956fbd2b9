"""Identifiers the SQL sink writes: always quoted, whatever the dialect thinks is reserved.

SQLAlchemy quotes a name only when it knows it as a reserved word or when its case needs it, and its
lists are not the servers': PostgreSQL rejects ``CREATE TABLE collation`` (MediaWiki has that table),
which no list of SQLAlchemy's names. Every table, column and schema name goes through :func:`quoted`.
"""

from __future__ import annotations

from sqlalchemy.sql.compiler import IdentifierPreparer
from sqlalchemy.sql.elements import quoted_name

__all__ = ["quoted", "single_percents"]


def quoted(name: str) -> quoted_name:
    """``name`` as SQLAlchemy must always quote it (case and characters kept exactly)."""
    return quoted_name(name, True)


def single_percents(prep: IdentifierPreparer, sql: str) -> str:
    """A name the preparer quoted, its ``%`` signs single again.

    For a driver whose paramstyle is ``format``/``pyformat`` (pymysql, psycopg) the preparer doubles
    every ``%`` of a name, and so do ``sa.text()`` and ``sa.literal_column()`` when they are compiled:
    a name quoted by the one and put in the other reached the server as ``50%%_off``.
    """
    return sql.replace("%%", "%") if getattr(prep, "_double_percents", False) else sql
