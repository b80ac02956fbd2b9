"""Find the rows that differ between a source table and one copy: chunk checksums, bisection, row diff.

Integer keys (the common case) take a fast path: each level is ONE grouped query per store over the
ranges still in question, bucketing keys by ``(key - min) // width`` with power-of-two widths, so a
level's buckets nest in the previous level's. A bucket whose count and hash sum agree is done; one
that differs is split by 32 until it holds at most ``leaf_rows`` rows, whose canonical texts are then
read from both stores and diffed. Rows of the copy outside the source's key span are extra rows.

Other keys (text, composite): chunk boundaries are every ``key_chunk_rows``-th source key in byte order,
passed to both stores as explicit row-value ranges; a differing chunk is diffed row by row.

Integer keys are compared in slices of the key span (whole first-level buckets, ~250k source rows):
each slice is bisected on its own, its time measured (``chunk_seconds`` resizes the next one), and
between slices ``Slices`` may pause while the copy lags and keeps the progress a killed run resumes
from (reconciler/progress.py).

Inside a slice, ranges of about ``digest_rows`` source rows are first compared by digest (one MD5
of the range's rows joined in key order, ``Store.digests``: MariaDB and PostgreSQL); only ranges
whose digests differ (or cannot be computed) are bisected by bucket sums. An in-sync table is then
one scan per store with no per-row hash and no GROUP BY. Should digests differ where the bucket
sums then find nothing (rows joined in another order), digests are not used for the rest of the
compare: slower, never wrong. Where every range of a slice differs (drift everywhere), the next
slice skips the digests, until a slice has a range without drift.

While a slice's digests are compared (and its differing ranges bisected), the next slice's digests
already run on both sides (reconciler/digest_feed.py: one thread per side, so each server goes on
to them without waiting for the slower one; at most one digest query per side in flight). The lag
pause comes before a slice's first query, prefetched or not; progress records only slices compared
to their end; a prefetched slice is dropped if the one before it found dense drift.

Source and copy queries of one step run at the same time (two threads). ``pause`` throttles the
source: after each step, sleep that fraction of the step's time (0.5 keeps it at most 2/3 busy).
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from reconciler.digest_feed import DigestFeed, PendingDigests
from reconciler.model import DriftKind, KeyRange, RowDrift
from reconciler.stores import Rows, Store, int_key

__all__ = [
    "CompareSettings", "Found", "Region", "Resumed", "ResumedChunks", "Slices", "compare", "diff_rows",
    "read_region",
]  # fmt: skip

log = logging.getLogger("reconciler")

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True, slots=True)
class CompareSettings:
    # rows per first-level chunk (about). Integer keys: small, because a level costs one scan whatever
    # its bucket count, and small first buckets are leaves at once (one scan fewer to find the rows)
    chunk_rows: int = 32
    max_buckets: int = 100_000  # per level and store: what one grouped query may return
    key_chunk_rows: int = 1_000  # other keys: source rows per chunk (one query per chunk and store)
    leaf_rows: int = 64  # a differing chunk this small is diffed row by row
    split: int = 32  # children per differing chunk (a power of two)
    pause: float = 0.0  # throttle: sleep this fraction of each step's time
    # integer keys: source rows per slice of the key span (the first slice's, with a time target)
    slice_rows: int = 250_000
    chunk_seconds: float = 0.0  # time target per slice: its size adapts toward it (0: fixed size)
    # integer keys: source rows per digest range (MariaDB joins a range's row texts in memory, up to
    # 16 MB: 64k rows of up to 256 bytes; a longer one is bisected instead)
    digest_rows: int = 65_536
    # integer keys: the next slice's digests run while this one is compared (off: one wait per slice
    # for the slower side, as before; kept for the benchmark's A/B)
    prefetch: bool = True


@dataclass(frozen=True, slots=True)
class Region:
    """Where suspects lie, so that a re-check reads only there."""

    int_ranges: tuple[KeyRange, ...] = ()
    chunks: tuple[tuple[tuple[Any, ...] | None, tuple[Any, ...] | None], ...] = ()
    everything: bool = False  # an empty source: the whole copy


@dataclass(frozen=True, slots=True)
class Found:
    drift: tuple[RowDrift, ...]
    rows_source: int
    rows_copy: int
    region: Region = field(default_factory=Region)


def _both(pool: ThreadPoolExecutor, a: Callable[[], T], b: Callable[[], U]) -> tuple[T, U]:
    fa = pool.submit(a)
    fb = pool.submit(b)
    return fa.result(), fb.result()


def _pow2_at_least(n: int) -> int:
    width = 1
    while width < n:
        width *= 2
    return width


Bound = tuple[Any, ...] | None  # a chunk's edge: a source key (raw values), None = the table's end


class Slices(Protocol):
    """What happens between slices of the key span: the lag pause, and progress a killed run resumes
    from (reconciler/progress.py)."""

    def before(self) -> None: ...

    def resumed(self, lo: int) -> Resumed | None: ...

    def finished(
        self, done_until: int, drift: tuple[RowDrift, ...], copy_rows: int, source_rows: int
    ) -> None: ...

    # other keys (text, composite): slices are runs of chunks, bounded by source keys

    def resumed_chunks(self) -> ResumedChunks | None: ...

    def finished_chunks(self, done: ResumedChunks) -> None: ...


@dataclass(frozen=True, slots=True)
class Resumed:
    done_until: int  # keys below this were compared by an earlier run
    drift: tuple[RowDrift, ...]  # what it found there (suspects: the re-checks read them again)
    copy_rows: int  # the copy's rows there
    source_rows: int | None = None  # the source's (None: kept by an older version, counted again)


@dataclass(frozen=True, slots=True)
class ResumedChunks:
    after: tuple[Any, ...]  # the first source key not compared yet (raw values); keys before it were
    drift: tuple[RowDrift, ...]
    source_rows: int
    copy_rows: int
    chunks: tuple[tuple[Bound, Bound], ...]  # the chunks holding ``drift`` (the re-checks read them)


def compare(source: Store, copy: Store, settings: CompareSettings, slices: Slices | None = None) -> Found:
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="reconcile") as pool:
        if int_key(source.key):
            return _compare_int(pool, source, copy, settings, slices)
        return _compare_chunks(pool, source, copy, settings, slices)


def _throttle(settings: CompareSettings, started: float) -> None:
    if settings.pause > 0:
        time.sleep((time.monotonic() - started) * settings.pause)


def _compare_int(
    pool: ThreadPoolExecutor, source: Store, copy: Store, s: CompareSettings, slices: Slices | None
) -> Found:
    feed = DigestFeed(source, copy, s.pause)
    try:
        return _compare_int_slices(pool, feed, source, copy, s, slices)
    finally:
        feed.close()  # a prefetched slice not wanted (an error, the end) dropped, a running query waited for


@dataclass(frozen=True, slots=True)
class _Planned:
    """A slice whose digests may already be running (``digests``: asked for ahead)."""

    here: KeyRange
    digest_width: int
    digests: PendingDigests | None
    at: float  # when it was planned (monotonic): its time counts from here or the last slice's end


def _compare_int_slices(
    pool: ThreadPoolExecutor,
    feed: DigestFeed,
    source: Store,
    copy: Store,
    s: CompareSettings,
    slices: Slices | None,
) -> Found:
    # the copy's rows are counted from the first level's buckets and the rows outside the source's
    # span, not by a scan of their own (over the Iceberg history, the whole state at once); the
    # source's from the same digests and buckets: its row count, which sizes the slices and buckets,
    # is the table statistics' estimate (a COUNT(*) before the compare was a sixth of an in-sync one)
    lo, hi = source.int_bounds()
    if lo is None or hi is None:
        extra = copy.all_rows()
        return Found(diff_rows({}, extra, copy), 0, len(extra), Region(everything=True))
    n_src = n_copy = 0
    span = hi - lo + 1
    estimate = min(span, max(1, source.row_estimate()))
    width = _pow2_at_least(max(1, span * s.chunk_rows // estimate, -(-span // s.max_buckets)))
    # the key span is compared in slices of whole first-level buckets, so that a slice's buckets nest
    # like the whole span's: each slice is a few range scans, its time is measured (the chunk time
    # target adapts the next slice's size), and a finished slice is where a killed run resumes
    per_key, slice_rows = estimate / span, s.slice_rows
    digests, dense = True, False
    at, drift = lo, []
    resumed = slices.resumed(lo) if slices is not None else None
    if resumed is not None and lo <= resumed.done_until <= hi + 1:
        at, drift, n_copy = resumed.done_until, list(resumed.drift), resumed.copy_rows
        n_src = resumed.source_rows if resumed.source_rows is not None else source.int_count(lo, at)

    def plan(start: int, want_digests: bool) -> _Planned:
        # the lag pause comes before a slice's first query, prefetched or not: nothing is asked of
        # the source while the copy lags
        if slices is not None:
            slices.before()
        slice_width = _slice_width(slice_rows, per_key, width)
        digest_width = _slice_width(s.digest_rows, per_key, width)
        here = KeyRange(start, min(hi + 1, start + slice_width))
        asked = feed.submit(_digest_ranges(here, digest_width)) if want_digests else None
        return _Planned(here, digest_width, asked, time.monotonic())

    ahead: _Planned | None = None
    last = time.monotonic()
    while at <= hi:
        tried = digests and not dense
        cur = ahead if ahead is not None else plan(at, tried)
        ahead = None
        pending = cur.digests
        if pending is not None and not tried:
            pending.discard()  # asked for ahead, before the last slice found them not worth it
            pending = None
        elif pending is None and tried:
            pending = feed.submit(_digest_ranges(cur.here, cur.digest_width))
        here, digest_width = cur.here, cur.digest_width
        end = here.hi
        if s.prefetch and end <= hi:
            # the next slice's digests queued behind this one's on each side: each server goes on to
            # them as soon as it is done with this slice's, while the slower side finishes and this
            # slice is compared and bisected. Sized and chosen with what was known a slice ago; the
            # next round drops them if this slice finds dense drift or digests that lie
            ahead = plan(end, tried)
        differing, src_rows_here, copy_rows_here, unequal = [here], 0, 0, False
        n_ranges = -(-(end - here.lo) // digest_width)
        if pending is not None:
            differing, src_rows_here, copy_rows_here, unequal = _digest_diff(pending)
            digests = unequal or len(differing) < n_ranges  # else: these stores have no digests
            dense = unequal and len(differing) == n_ranges
        leaves, bisected = _bisect(pool, source, copy, s, lo, width, here, differing)
        if pending is not None and unequal and not leaves:
            log.info(
                "reconcile: digests differ where the rows do not (rows read in another order?): "
                "comparing by bucket sums only"
            )
            digests = False
        elif pending is None and digests:
            # drift in every digest range of the last slice made the digests a scan that found
            # nothing: skipped while the drift stays that dense, tried again once a range is clean
            dense = len({(r.lo - here.lo) // digest_width for r in leaves}) == n_ranges
        n_src += src_rows_here + bisected[0]
        n_copy += copy_rows_here + bisected[1]
        if leaves:
            src_rows, copy_rows = _both(
                pool,
                functools.partial(source.int_rows, leaves, lo),
                functools.partial(copy.int_rows, leaves, lo),
            )
            drift += diff_rows(src_rows, copy_rows, copy)
        now = time.monotonic()
        took, last = now - max(last, cur.at), now
        at = end
        if slices is not None:
            # only a slice compared to its end is progress: a prefetched one still running is not
            slices.finished(at, tuple(drift), n_copy, n_src)
        if n_src > 0:
            per_key = n_src / (at - lo)  # the rows met so far, not the estimate, size the next slice
        if s.chunk_seconds > 0 and took > 0:
            # toward the target, at most doubling or halving at a time (one slow query is not a trend)
            factor = min(2.0, max(0.5, s.chunk_seconds / took))
            slice_rows = max(1, round((end - here.lo) * per_key * factor))
    outside = copy.int_outside(lo, hi + 1)
    n_copy += len(outside)
    drift += diff_rows({}, outside, copy)
    drift.sort(key=lambda d: _sort_key(d.key))
    keys = [int(d.key[0]) for d in drift]
    return Found(tuple(drift), n_src, n_copy, Region(int_ranges=tuple(KeyRange(k, k + 1) for k in keys)))


def _slice_width(rows: int, per_key: float, width: int) -> int:
    """Keys per slice for about ``rows`` source rows: whole first-level buckets, at least one."""
    keys = max(1, int(rows / per_key))
    return max(width, keys // width * width)


def _digest_ranges(within: KeyRange, width: int) -> list[KeyRange]:
    """``within`` in ranges of ``width`` keys (whole first-level buckets), each one digest."""
    return [KeyRange(a, min(within.hi, a + width)) for a in range(within.lo, within.hi, width)]


def _digest_diff(pending: PendingDigests) -> tuple[list[KeyRange], int, int, bool]:
    """The ranges whose digests differ or cannot be computed, the source's and the copy's rows in
    the others, and whether any two digests differed."""
    a, b = pending.result()
    differing, rows, unequal = [], 0, False
    for r, x, y in zip(pending.ranges, a, b, strict=True):
        if x is not None and x == y:
            rows += x[0]
            continue
        differing.append(r)
        unequal = unequal or (x is not None and y is not None)
    return differing, rows, rows, unequal


def _bisect(
    pool: ThreadPoolExecutor,
    source: Store,
    copy: Store,
    s: CompareSettings,
    lo: int,
    width: int,
    within: KeyRange,
    start: list[KeyRange],
) -> tuple[list[KeyRange], tuple[int, int]]:
    """The leaves (small differing ranges) in ``start`` (ranges of whole first-level buckets inside
    ``within``), bucket sums level by level; and the source's and the copy's rows there (their first
    level's counts)."""
    if not start:
        return [], (0, 0)
    pending = list(start)
    leaves: list[KeyRange] = []
    counts: tuple[int, int] | None = None
    while pending:
        started = time.monotonic()
        a, b = _both(
            pool,
            functools.partial(source.bucket_sums, list(pending), lo, width),
            functools.partial(copy.bucket_sums, list(pending), lo, width),
        )
        _throttle(s, started)
        if counts is None:
            counts = (sum(n for n, _ in a.values()), sum(n for n, _ in b.values()))
        pending = []
        for bucket in sorted(a.keys() | b.keys()):
            if a.get(bucket) == b.get(bucket):
                continue
            r = KeyRange(max(within.lo, lo + bucket * width), min(within.hi, lo + (bucket + 1) * width))
            rows = max(a.get(bucket, (0, 0))[0], b.get(bucket, (0, 0))[0])
            (leaves if width == 1 or rows <= s.leaf_rows else pending).append(r)
        width = max(1, width // s.split)
    return leaves, counts or (0, 0)


def _compare_chunks(
    pool: ThreadPoolExecutor, source: Store, copy: Store, s: CompareSettings, slices: Slices | None
) -> Found:
    """Chunks of ``key_chunk_rows`` source keys in byte order, compared a slice (a run of chunks, one
    sum per store) at a time; a slice whose sums differ is compared chunk by chunk, and a differing
    chunk row by row. The slice is the unit a killed run resumes from and the chunk time target
    resizes (``Slices``), as the integer keys' slices are."""
    resumed = slices.resumed_chunks() if slices is not None else None
    start: Bound = None
    drift: list[RowDrift] = []
    differing: list[tuple[Bound, Bound]] = []
    n_src = n_copy = 0
    if resumed is not None:
        start, drift, differing = resumed.after, list(resumed.drift), list(resumed.chunks)
        n_src, n_copy = resumed.source_rows, resumed.copy_rows
    bounds = [tuple(b) for b in source.boundaries(s.key_chunk_rows, start)]
    edges: list[Bound] = [start, *bounds, None]
    per_slice = max(1, s.slice_rows // s.key_chunk_rows)  # chunks per slice
    at = 0
    while at < len(edges) - 1:
        if slices is not None:
            slices.before()
        started = time.monotonic()
        end = min(len(edges) - 1, at + per_slice)
        a, b = _both(
            pool,
            functools.partial(source.chunk_sum, edges[at], edges[end]),
            functools.partial(copy.chunk_sum, edges[at], edges[end]),
        )
        _throttle(s, started)
        n_src += a[0]
        n_copy += b[0]
        if a != b:
            for lo, hi in itertools.pairwise(edges[at : end + 1]):
                found = _chunk_drift(pool, source, copy, s, lo, hi, end - at > 1)
                if found:
                    drift += found
                    differing.append((lo, hi))
        took = time.monotonic() - started
        at = end
        next_key = edges[at]
        if slices is not None and next_key is not None:
            slices.finished_chunks(ResumedChunks(next_key, tuple(drift), n_src, n_copy, tuple(differing)))
        if s.chunk_seconds > 0 and took > 0:
            factor = min(2.0, max(0.5, s.chunk_seconds / took))
            per_slice = max(1, round(per_slice * factor))
    return Found(tuple(drift), n_src, n_copy, Region(chunks=tuple(differing)))


def _chunk_drift(
    pool: ThreadPoolExecutor,
    source: Store,
    copy: Store,
    s: CompareSettings,
    lo: Bound,
    hi: Bound,
    sum_first: bool,
) -> tuple[RowDrift, ...]:
    """The rows that differ in one chunk; ``sum_first``: compare its sums before reading its rows."""
    if sum_first:
        started = time.monotonic()
        a, b = _both(
            pool, functools.partial(source.chunk_sum, lo, hi), functools.partial(copy.chunk_sum, lo, hi)
        )
        _throttle(s, started)
        if a == b:
            return ()
    src_rows, copy_rows = _both(
        pool, functools.partial(source.chunk_rows, lo, hi), functools.partial(copy.chunk_rows, lo, hi)
    )
    return diff_rows(src_rows, copy_rows, copy)


def read_region(store: Store, region: Region) -> Rows:
    if region.everything:
        return store.all_rows()
    if region.int_ranges:
        return store.int_rows(region.int_ranges)
    out: Rows = {}
    for lo, hi in region.chunks:
        out.update(store.chunk_rows(lo, hi))
    return out


def diff_rows(source: Rows, copy: Rows, store: Store) -> tuple[RowDrift, ...]:
    names = tuple(c.name for c in store.columns)
    out: list[RowDrift] = []
    for key in sorted(source.keys() | copy.keys(), key=_sort_key):
        a, b = source.get(key), copy.get(key)
        if a == b:
            continue
        if b is None:
            out.append(RowDrift(DriftKind.MISSING, key))
        elif a is None:
            out.append(RowDrift(DriftKind.EXTRA, key))
        else:
            idx = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
            out.append(
                RowDrift(
                    DriftKind.DIFFERENT, key, tuple(names[i] for i in idx), tuple((a[i], b[i]) for i in idx)
                )
            )
    return tuple(out)


def _sort_key(key: tuple[str, ...]) -> tuple[tuple[int, int, str], ...]:
    # integers in numeric order, anything else by text: the report lists keys the way people count
    out = []
    for part in key:
        try:
            n = int(part)
            out.append((0, n, ""))
        except ValueError:
            out.append((1, 0, part))
    return tuple(out)
