"""Fewer round trips per PostgreSQL batch: the transaction's first and last statements pipelined,
and the pool's liveness ping only for a connection that sat idle.

A batch's transaction opens with the locked read of the positions row and closes with its write
and the commit. psycopg sends ``BEGIN`` on its own and waits for it, and SQLAlchemy's commit is
one more exchange: in libpq's pipeline mode ``BEGIN`` and the read go together, and so do the
write and ``COMMIT`` (SQLAlchemy's commit then finds the transaction over, and psycopg does
nothing). Each round trip costs the sink thread a wait for the GIL too, when the main thread is
decoding on the same core (benchmarks/results/latest.md, section pgapply).

``pool_pre_ping`` pings every checkout, one round trip per batch; a connection checked in less
than :data:`IDLE_PING_S` ago has just served a batch and is pinged no more. If the server dropped it
since, the batch's first statement finds it dead before anything was written: :class:`ConnectionLost`
tells the sink to send the batch again, once, on a new connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
import sqlalchemy as sa

from cdc.core.positions import Position
from sinks.contract import AppliedState
from sinks.sql.pg_deferred_commit import PendingCommit, send_commit
from sinks.sql.positions_table import Bookkeeping, Held

__all__ = [
    "IDLE_PING_S",
    "ConnectionLost",
    "commit_with_state",
    "ping_when_idle",
    "read_locked",
    "send_commit_with_state",
]

IDLE_PING_S = 1.0
_CHECKED_IN = "headwater_checked_in"


class ConnectionLost(Exception):
    """The connection was dead at the transaction's first statement: nothing of the batch reached
    the server, and the connection is invalidated (the pool makes a new one)."""


def ping_when_idle(engine: sa.Engine) -> None:
    """Ping a pooled connection at checkout only if idle for :data:`IDLE_PING_S` (engine made
    without ``pool_pre_ping``)."""

    def checkin(dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        last = record.info.get(_CHECKED_IN)
        if last is not None and time.monotonic() - last < IDLE_PING_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(str(exc)) from exc  # the pool connects again

    sa.event.listen(engine.pool, "checkin", checkin)
    sa.event.listen(engine.pool, "checkout", checkout)


def read_locked(conn: sa.Connection, book: Bookkeeping, pipeline: str) -> Held:
    """The positions row read under its lock, as the transaction's first statement: ``BEGIN``
    and the read in one round trip."""
    text = _sql(conn, book, "read")
    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        with raw.cursor() as cur:
            with raw.pipeline():
                cur.execute(text, {"pipeline_key": pipeline})
            return book.held(cur.fetchone())
    except psycopg.OperationalError as exc:
        if not raw.broken and not raw.closed:
            raise
        conn.invalidate()  # SQLAlchemy then skips the rollback of a transaction that never began
        raise ConnectionLost(str(exc)) from exc


def commit_with_state(
    conn: sa.Connection,
    book: Bookkeeping,
    pipeline: str,
    state: AppliedState,
    exists: bool,
    truncates: Mapping[str, Position] | None = None,
) -> None:
    """Store ``state`` and commit, in one round trip: the last thing the transaction does (the
    commit of the ``engine.begin()`` block around it then finds nothing to commit)."""
    values = book.state_values(state, truncates)
    text = _sql(conn, book, "update" if exists else "insert", *values)
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, raw.pipeline():
        cur.execute(text, {"pipeline_key": pipeline, **values})
        cur.execute(b"COMMIT")


def send_commit_with_state(
    conn: sa.Connection,
    transaction: sa.RootTransaction,
    book: Bookkeeping,
    pipeline: str,
    state: AppliedState,
    exists: bool,
    done: Callable[[bool], None],
) -> PendingCommit:
    """:func:`commit_with_state` without waiting for the commit: the write and ``COMMIT`` are sent,
    :meth:`PendingCommit.confirm` reads their results (sinks/sql/pg_deferred_commit.py)."""
    values = book.state_values(state)
    text = _sql(conn, book, "update" if exists else "insert", *values)
    return send_commit(conn, transaction, text, {"pipeline_key": pipeline, **values}, done)


# (schema, dialect, what, columns) -> SQL text: compiling the two statements took 1-2 ms a batch
_texts: dict[tuple[str | None, str, str, tuple[str, ...]], str] = {}


def _sql(conn: sa.Connection, book: Bookkeeping, what: str, *names: str) -> str:
    key = (book.metadata.schema, conn.dialect.name, what, names)
    text = _texts.get(key)
    if text is None:
        if what == "read":
            statement: sa.ClauseElement = book.read_statement(lock=True)
        else:
            statement = book.write_statement(what == "update", names)
        text = _texts[key] = str(statement.compile(dialect=conn.dialect))
    return text
