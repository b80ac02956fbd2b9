"""The integer-key compare's digest queries, one slice ahead: while a slice's digests are compared
(and its differing ranges bisected), the next slice's already run on both sides.

Each side has one thread of its own that runs the digest queries of the slices in the order they were
asked for: the next slice's query starts as soon as that side's current one is done, whatever the
other side is still doing, so neither server waits for the slower one between slices. With one
thread per side, at most one digest query per side is in flight (the bisection's queries run on the
compare's own threads): the load on the source stays bounded.

The throttle (``pause``) applies here too: after each digest query a side waits that fraction of
the query's time before its next one, without holding back the results already read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from reconciler.model import KeyRange
from reconciler.stores import Store

__all__ = ["DigestFeed", "Digests", "PendingDigests"]

Digests = list[tuple[int, str] | None]  # per range, ``Store.digests``


@dataclass(frozen=True, slots=True)
class PendingDigests:
    """One slice's digest queries, asked of both sides."""

    ranges: tuple[KeyRange, ...]
    source: Future[Digests]
    copy: Future[Digests]
    dropped: threading.Event

    def result(self) -> tuple[Digests, Digests]:
        return self.source.result(), self.copy.result()

    def discard(self) -> None:
        """Not wanted after all (the slice before found dense drift, or digests that lie): cancelled
        if not started yet; a side already on it stops after the range it is reading (one of the
        slice's few), and what it read is dropped."""
        self.dropped.set()
        self.source.cancel()
        self.copy.cancel()


class _Side:
    def __init__(self, store: Store, pause: float, name: str) -> None:
        self._store, self._pause = store, pause
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"reconcile-digest-{name}")
        self._owed = 0.0  # the throttle's wait before this side's next query (only its thread touches it)
        self._closed = threading.Event()

    def submit(self, ranges: Sequence[KeyRange], dropped: threading.Event) -> Future[Digests]:
        return self._pool.submit(self._run, list(ranges), dropped)

    def _run(self, ranges: list[KeyRange], dropped: threading.Event) -> Digests:
        out: Digests = []
        for r in ranges:  # one range at a time: a dropped slice stops at the next range
            if self._owed > 0:
                self._closed.wait(self._owed)  # a closing compare does not sit out the throttle
            if dropped.is_set() or self._closed.is_set():
                return []
            started = time.monotonic()
            out += self._store.digests([r])
            self._owed = (time.monotonic() - started) * self._pause
        return out

    def close(self) -> None:
        self._closed.set()
        # queued queries are dropped; a running one is waited for (its connection goes back to the pool)
        self._pool.shutdown(wait=True, cancel_futures=True)


class DigestFeed:
    """Digest queries of both sides, each side's run in the order asked (see the module's text)."""

    def __init__(self, source: Store, copy: Store, pause: float = 0.0) -> None:
        self._source = _Side(source, pause, "source")
        self._copy = _Side(copy, pause, "copy")

    def submit(self, ranges: Sequence[KeyRange]) -> PendingDigests:
        dropped = threading.Event()
        return PendingDigests(
            tuple(ranges), self._source.submit(ranges, dropped), self._copy.submit(ranges, dropped), dropped
        )

    def close(self) -> None:
        self._source.close()
        self._copy.close()
