"""Reads snapshot chunks on a thread of their own, one request at a time.

The stream must never wait for a chunk read: the merging pump asks for the next chunk and goes on
handing the binlog to the daemon; the chunk comes back through a queue when it is read. One request is
in flight at most, so at most two chunks (the one waiting to be emitted and the one being read) are
in memory, whatever the table's size.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cdc.core.events import RowImage
from cdc.core.positions import RestartPoint
from cdc.core.schemas import TableRef, TableSchema
from sinks.arrow_rows import ArrowRows
from snapshotter.chunk_columns import PreparedColumns, prepare_columns

log = logging.getLogger("cdc.bootstrap")

__all__ = ["ChunkFeed", "ChunkReader", "ChunkResult", "ReadChunk"]


class ReadChunk(Protocol):
    """One chunk of a table read in a consistent view (snapshotter's reader gives these)."""

    @property
    def schema(self) -> TableSchema: ...
    @property
    def rows(self) -> Sequence[RowImage]: ...  # a tuple, or ArrowRows (read_chunk_columns)
    @property
    def last_key(self) -> RowImage | None: ...
    @property
    def at(self) -> RestartPoint: ...  # the binlog boundary of the view
    @property
    def complete(self) -> bool: ...  # no row of the table lies after last_key
    @property
    def elapsed_s(self) -> float: ...


class ChunkReader(Protocol):
    def read_chunk(self, ref: TableRef, after: RowImage | None, limit: int) -> ReadChunk: ...
    def read_keys(self, ref: TableRef, keys: Sequence[RowImage]) -> ReadChunk: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ChunkResult:
    generation: int  # the request's; results of a superseded request are dropped
    table: TableRef
    after: RowImage | None  # the bound the chunk was read after
    chunk: ReadChunk | None
    error: BaseException | None = None
    keys: tuple[RowImage, ...] | None = None  # a repair's keys, read in this chunk's view
    # the rows as columns (and packed for the chunk log), made on the reader's thread: see request
    prepared: PreparedColumns | None = None


@dataclass(frozen=True, slots=True)
class _Request:
    generation: int
    table: TableRef
    after: RowImage | None
    limit: int
    keys: tuple[RowImage, ...] | None = None
    columns: bool = False
    arrow: bool = False


class ChunkFeed:
    """A reader thread; ``request`` one chunk, ``result`` picks it up when it is read."""

    def __init__(self, open_reader: Callable[[], ChunkReader]) -> None:
        self._open_reader = open_reader
        self._requests: queue.Queue[_Request | None] = queue.Queue()
        self._results: queue.Queue[ChunkResult] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="snapshot-reader", daemon=True)
        self._started = False
        self.in_flight = False

    def request(
        self,
        generation: int,
        table: TableRef,
        after: RowImage | None,
        limit: int,
        keys: tuple[RowImage, ...] | None = None,
        *,
        columns: bool = False,
        arrow: bool = False,
    ) -> None:
        """Read the next ``limit`` rows after ``after``; or, with ``keys``, the rows of those keys.

        ``columns``: also transpose the rows and pack them for the chunk log (embedded mode's
        columnar chunks). Done here, on the reader's thread, it overlaps the daemon's thread waiting
        for its sinks (a COPY, an Iceberg commit), where it was a fifth of that thread's time.

        ``arrow``: read the rows as Arrow columns (the reader's ``read_chunk_columns``, when it has
        one), which need no such preparing."""
        assert not self.in_flight, "one chunk request at a time"
        if not self._started:
            self._thread.start()
            self._started = True
        self.in_flight = True
        self._requests.put(_Request(generation, table, after, limit, keys, columns, arrow))

    def result(self, timeout: float = 0.0) -> ChunkResult | None:
        if not self.in_flight:
            return None
        try:
            result = self._results.get(timeout=timeout) if timeout > 0 else self._results.get_nowait()
        except queue.Empty:
            return None
        self.in_flight = False
        return result

    def stop(self) -> None:
        if self._started:
            self._requests.put(None)
            self._thread.join(timeout=10)

    def _run(self) -> None:
        reader: ChunkReader | None = None
        try:
            while True:
                req = self._requests.get()
                if req is None:
                    return
                try:
                    if reader is None:
                        reader = self._open_reader()
                    if req.keys is not None:
                        chunk = reader.read_keys(req.table, req.keys)
                    elif req.arrow and hasattr(reader, "read_chunk_columns"):
                        chunk = reader.read_chunk_columns(req.table, req.after, req.limit)
                    else:
                        chunk = reader.read_chunk(req.table, req.after, req.limit)
                    prepared = None
                    if req.columns and not isinstance(chunk.rows, ArrowRows):
                        prepared = prepare_columns(chunk.schema, chunk.rows)
                    self._results.put(
                        ChunkResult(req.generation, req.table, req.after, chunk, None, req.keys, prepared)
                    )
                except BaseException as exc:  # noqa: BLE001 - handed to the daemon's thread, which decides
                    if reader is not None:
                        try:
                            reader.close()
                        except Exception as close_exc:  # noqa: BLE001 - the read's error is the news
                            log.debug("closing the snapshot reader: %s", close_exc)
                        reader = None
                    self._results.put(ChunkResult(req.generation, req.table, req.after, None, exc, req.keys))
        finally:
            if reader is not None:
                try:
                    reader.close()
                except Exception as exc:  # noqa: BLE001
                    log.debug("closing the snapshot reader: %s", exc)
