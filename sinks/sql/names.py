"""Identifiers the SQL sink writes: always quoted, whatever the dialect thinks is reserved.

SQLAlchemy quotes a name only when it knows it as a reserved word or when its case needs it, and its
lists are not the servers': PostgreSQL rejects ``CREATE TABLE collation`` (MediaWiki has that table),
which no list of SQLAlchemy's names. Every table, column and schema name goes through :func:`quoted`.
"""

from __future__ import annotations

from sqlalchemy.sql.elements import quoted_name

__all__ = ["quoted"]


def quoted(name: str) -> quoted_name:
    """``name`` as SQLAlchemy must always quote it (case and characters kept exactly)."""
    return quoted_name(name, True)
