"""A PostgreSQL batch's last round trip left on the wire: the positions row's write and ``COMMIT``
sent, their results read at the sink's next call.

The commit's wait (the server flushes the batch's WAL: 6-7 ms a batch of ~5,000 changes at load 1-2)
then overlaps the sink thread's return to `cdc sink`'s loop, the hand-off of the next batch and that
batch's column work before its transaction. Measured (benchmarks/results/pgcommit_ab.json, load
4-14): the sink thread's wait for the commit 1.68 -> 1.17 us/change (plus 0.07 to send it);
speedsink_bench, 70 interleaved pairs in both orders, rows/s 1.07x paired median, faster in 43
(the 16 quietest, load 4-8: 1.05x, faster in 10); CPU per change unchanged.

Exactly-once: the batch's rows and its offsets are in one transaction, so the server commits both
or neither whether or not the result is ever read. The sink reads it (:meth:`PendingCommit.confirm`)
before anything that depends on it: the next batch's transaction (which merges the offsets it
reads from the positions row: a failed commit must not be merged over), ``applied()``, ``flush()``,
``close()`` and the other calls. A failed commit raises there, as a failed batch does today: the run
stops and the next one reads the offsets the positions row holds, so the batch comes again. A
process that dies with a commit sent and unread leaves the server to commit it or not; the positions
row says which at the next start. ``tests/sinks/test_pg_deferred_commit.py``.

Only the libpq calls psycopg documents (``Connection.pgconn``: send, flush, read); the connection is
held checked out until the results are read, so nothing else sends on it meanwhile.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable, Mapping

import psycopg
import sqlalchemy as sa
from psycopg import pq

__all__ = ["PendingCommit", "send_commit"]

log = logging.getLogger(__name__)
_FAILED = (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.PIPELINE_ABORTED)


class PendingCommit:
    """A transaction whose last statements and ``COMMIT`` are sent; :meth:`confirm` reads them."""

    def __init__(
        self, conn: sa.Connection, transaction: sa.RootTransaction, done: Callable[[bool], None]
    ) -> None:
        self._conn = conn
        self._transaction = transaction
        self._done = done  # called with whether the commit succeeded, once known

    def confirm(self) -> None:
        """Wait for the results; raise the server's error (or a lost connection's) if the commit
        failed. The connection goes back to the pool either way."""
        raw = self._conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        committed = False
        try:
            error = _first_error(raw)
            if error is not None:
                raise psycopg.errors.error_from_result(error, encoding=raw.info.encoding)
            # psycopg finds the transaction over: SQLAlchemy's commit sends nothing
            self._transaction.commit()
            committed = True
        except psycopg.OperationalError:
            if raw.broken or raw.closed:
                self._conn.invalidate()  # the pool makes a new one
            raise
        finally:
            try:
                if not committed and not self._conn.invalidated:
                    self._transaction.rollback()
            except sa.exc.DBAPIError as exc:  # the commit's own error is the one raised
                log.info("rolling back after a failed commit: %s", exc)
            finally:
                self._conn.close()
                self._done(committed)


def send_commit(
    conn: sa.Connection,
    transaction: sa.RootTransaction,
    text: str,
    params: Mapping[str, object],
    done: Callable[[bool], None],
) -> PendingCommit:
    """Send ``text`` (bound to ``params`` here) and ``COMMIT`` as one simple query, and return
    without reading their results."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    query = psycopg.ClientCursor(raw).mogrify(text, params)
    pgconn = raw.pgconn
    pgconn.send_query(f"{query}; COMMIT".encode(raw.info.encoding))
    while pgconn.flush():  # 1: more to send (the socket's buffer is full)
        select.select([], [pgconn.socket], [])
    return PendingCommit(conn, transaction, done)


def _first_error(raw: psycopg.Connection[object]) -> pq.abc.PGresult | None:
    """Read every result of the query sent; the first failed one (None: all succeeded). The wait
    is a select() on the socket, which lets other threads run."""
    pgconn = raw.pgconn
    error = None
    while True:
        while pgconn.is_busy():
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return error
        if error is None and result.status in _FAILED:
            error = result
