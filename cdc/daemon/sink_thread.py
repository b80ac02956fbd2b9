"""The one thread `cdc sink` calls its sinks on, so that a batch is applied while the next is read.

`cdc sink` spent about two thirds of its wall time waiting: for PostgreSQL to run a batch's COPY,
upsert and COMMIT, for the Iceberg commit, for the next fetch. Applying batch N here while the
polling thread reads and decodes batch N+1 keeps both busy (psycopg, sqlite3, pyarrow and the
Iceberg writer release the GIL while they wait or compute).

Every call into the sinks goes through this thread, one at a time and in the order they were
started, never two at once: ``open``, ``applied``, ``apply``, ``flush``, ``close`` alike. So a
sink sees the single caller it always had (SQLite connections, the Iceberg sink's buffers), and
its batches are committed in consumption order, each with its offsets, as before. At most one call
is in flight: ``start`` first waits for the previous one, which bounds what is held ahead of the
sinks to the batch being applied plus the one being filled.

A call that failed raises its error, unchanged, from the next ``start``/``call``/``wait``/``check``
on the polling thread, and nothing started after it has run: the run stops as it did when the
polling thread applied the batch itself, and no later batch (nor its offsets) reaches a sink.

The thread is a daemon thread: a second SIGTERM (KeyboardInterrupt on the polling thread) ends the
process without waiting for an apply stuck on its database; the uncommitted batch is redone at the
next start, as when the polling thread was interrupted inside it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from typing import TypeVar

__all__ = ["SinkThread"]

log = logging.getLogger("cdc.sink")

T = TypeVar("T")

_Job = tuple[Callable[[], object], "Future[object]"]


class SinkThread:
    """Runs calls one after another on its own thread; see the module docstring."""

    def __init__(self, name: str = "sink-apply") -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._current: Future[object] | None = None
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            work, future = job
            # the batch is let go as soon as it is applied, not when the next call arrives
            del job
            try:
                result = work()
            except BaseException as exc:  # noqa: BLE001 - handed to the polling thread, which decides
                future.set_exception(exc)
            else:
                future.set_result(result)
            del work, future

    @property
    def busy(self) -> bool:
        """A call is running (or finished and not yet waited for)."""
        current = self._current
        return current is not None and not current.done()

    def start(self, work: Callable[[], object]) -> None:
        """Run ``work`` on the thread once the previous call has ended; returns at once. The
        previous call's error is raised here instead, and ``work`` is not run."""
        self.wait()
        future: Future[object] = Future()
        self._current = future
        self._jobs.put((work, future))

    def call(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the thread after the previous call, and wait for its result."""
        self.start(work)
        return self._result()  # type: ignore[return-value]

    def wait(self) -> None:
        """Wait for the call in flight, if any; its error is raised here."""
        if self._current is not None:
            self._result()

    def _result(self) -> object:
        future = self._current
        assert future is not None
        try:
            return future.result()
        finally:
            # still in flight if the wait was interrupted (a second signal): ``busy`` says so
            if future.done():
                self._current = None

    def idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the call in flight to end (an error is left for the next
        ``check``); True when none is running."""
        future = self._current
        if future is None:
            return True
        futures.wait([future], timeout)
        return future.done()

    def check(self) -> None:
        """Raise the error of a call that already failed (never waits)."""
        future = self._current
        if future is not None and future.done():
            self.wait()

    def settle(self) -> None:
        """Wait for the call in flight while the run is ending for another reason: its error, if any,
        is logged (the one already on its way up is the run's)."""
        try:
            self.wait()
        except Exception as exc:  # noqa: BLE001 - logged: the run already fails with its own error
            log.warning("the batch being applied failed too: %s", exc)

    def close(self) -> None:
        """Let the thread end once it is idle (it does not wait)."""
        self._jobs.put(None)
