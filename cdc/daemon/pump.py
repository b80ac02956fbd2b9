"""Reads the source on its own thread, into a bounded queue of record chunks.

Why a thread: the writer must commit on a timer even when the source is silent, and the reader
blocks on its socket. The queue is bounded (chunks x chunk size), so a slow writer slows the reader
instead of growing memory; chunks keep the per-record hand-over cost off the hot path.

A chunk is cut after a transaction's end when the source has nothing more waiting (``input_ready``
says no, or the source cannot tell): the writer gets it at once, which keeps latency low when the
stream is slow. While more input is ready, transactions are gathered up to CHUNK_RECORDS: each
hand-over wakes the writer's thread, and with single-row transactions that wake-up was a large part
of each transaction's cost.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

from cdc.core.events import SourceProgress, SourceRecord, TransactionEnd
from cdc.core.handover import Chunk, EndOfStream

log = logging.getLogger(__name__)

CHUNK_RECORDS = 512
# At most ~8k records in flight between the threads. Since the reading thread's decoder is compiled it
# outruns the writer, so the queue stays full: 64 chunks held ~35 MiB more at peak, for no speed.
QUEUE_CHUNKS = 16


_CUT_AFTER = (TransactionEnd, SourceProgress)


class ReaderPump:
    """Runs ``open_records()`` on a daemon thread and hands its records over in chunks."""

    def __init__(
        self,
        open_records: Callable[[], Iterator[SourceRecord]],
        close: Callable[[], None],
        input_ready: Callable[[], bool] | None = None,
    ):
        self._open_records = open_records
        self._close = close
        self._input_ready = input_ready
        self._queue: queue.Queue[Chunk] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="binlog-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _put(self, chunk: Chunk) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(chunk, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        chunk: list[SourceRecord] = []
        ready = self._input_ready
        try:
            for record in self._open_records():
                chunk.append(record)
                # A transaction end is a natural hand-over point: the writer may commit there.
                if len(chunk) >= CHUNK_RECORDS or (
                    record.__class__ in _CUT_AFTER and (ready is None or not ready())
                ):
                    if not self._put(chunk):
                        return
                    chunk = []
            if chunk:
                self._put(chunk)
            self._put(EndOfStream())
        except BaseException as exc:  # noqa: BLE001 - handed to the writer's thread, which decides what it means
            if not self._stop.is_set():
                self._put(EndOfStream(exc))

    def quiet(self) -> bool:
        """Nothing is queued and the source says nothing more is waiting (False when it cannot
        tell): the writer may commit now rather than wait for more."""
        ready = self._input_ready
        return ready is not None and self._queue.empty() and not ready()

    def drained(self) -> bool:
        """Nothing is queued: the writer has everything the reading thread handed over."""
        return self._queue.empty()

    def depth(self) -> tuple[int, int]:
        """(chunks queued, capacity in chunks), for the metrics endpoint."""
        return self._queue.qsize(), QUEUE_CHUNKS

    def get(self, timeout: float) -> Chunk | None:
        """The next chunk, or None if nothing arrived within ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def stop(self) -> None:
        """Stop reading and close the source connection (unblocks a reader waiting on its socket)."""
        self._stop.set()
        try:
            self._close()
        except Exception as exc:  # noqa: BLE001 - closing a dead connection may fail; the thread ends anyway
            log.debug("closing the source connection: %s", exc)
        self._thread.join(timeout=10)
