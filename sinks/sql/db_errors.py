"""What a database error from the SQL sink means: retry later, stop for access, or stop for the data.

A wrong password, a missing grant or a missing database never heals by retrying, so they are
terminal (:class:`SinkAccessDenied`, naming the sink by its masked URL and the fix), not transient:
before this, a wrong PostgreSQL password was retried forever.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from cdc.core.errors import SinkAccessDenied, SinkError, SinkUnavailable

__all__ = ["access_problem", "classify", "is_transient"]

# SQLSTATE classes worth retrying: connection exception, transaction rollback (serialization failure,
# deadlock), insufficient resources, operator intervention (admin shutdown, crash recovery).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")
# MariaDB/MySQL: too many connections, shutdown in progress, lock wait timeout, deadlock, connection
# killed, can't connect, server gone away, lost connection (during query / at handshake)
_TRANSIENT_MYSQL_CODES = {1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055}
# invalid authorization, invalid password, invalid catalog (database), insufficient privilege
_ACCESS_SQLSTATES = {"28000", "28P01", "3D000", "42501"}
# MariaDB: database access denied, access denied, unknown database, table/column/command denied,
# needs a privilege, routine denied, access denied (auth plugin)
_ACCESS_MYSQL_CODES = {1044, 1045, 1049, 1142, 1143, 1227, 1370, 1698}
# psycopg reports a refused connection without a SQLSTATE: the server's FATAL line says why
_PG_ACCESS_TEXT = re.compile(
    r"password authentication failed|authentication failed|no pg_hba\.conf entry|"
    r"(database|role) \"[^\"]*\" does not exist|permission denied|password is required|"
    r"no password supplied"
)
_SQLITE_CANTOPEN, _SQLITE_READONLY, _SQLITE_PERM, _SQLITE_AUTH = 14, 8, 3, 23


def access_problem(exc: sa.exc.DBAPIError) -> str | None:
    """The fix for an authentication, permission or missing-database error; None for anything else."""
    orig = exc.orig
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # pymysql
        if args[0] in _ACCESS_MYSQL_CODES:
            return (
                "check the user and password in the sink's url, that the database exists, and that "
                "the user may create and write tables in it"
            )
        return None
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        if sqlite_code & 0xFF in (_SQLITE_CANTOPEN, _SQLITE_READONLY, _SQLITE_PERM, _SQLITE_AUTH):
            return "make the database file and its directory writable by this user (or change the url)"
        return None
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _ACCESS_SQLSTATES or (sqlstate is None and _PG_ACCESS_TEXT.search(str(orig))):
        return (
            "check the user and password in the sink's url, that the database exists, and that the "
            "user may create schemas and tables in it"
        )
    return None


def is_transient(exc: sa.exc.DBAPIError) -> bool:
    """Whether the same apply may succeed later (a lost connection, a deadlock), not a data problem."""
    if access_problem(exc) is not None:
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # pymysql: (errno, message)
        return args[0] in _TRANSIENT_MYSQL_CODES
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg
    if isinstance(sqlstate, str):
        return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    # no SQLSTATE: the driver failed before the server answered (connection refused, socket closed)
    return isinstance(exc, sa.exc.OperationalError)


def classify(exc: sa.exc.DBAPIError, sink: str, doing: str) -> SinkError:
    """The Headwater error for ``exc``, raised by sink ``sink`` (its masked name) while ``doing``."""
    detail = f"{sink}: {doing}: {exc.orig or exc}"
    fix = access_problem(exc)
    if fix is not None:
        return SinkAccessDenied(f"{sink} refused access ({exc.orig or exc}); {fix}")
    if is_transient(exc):
        return SinkUnavailable(detail)
    return SinkError(detail)
