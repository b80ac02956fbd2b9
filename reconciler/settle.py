"""Lag is not drift: re-check suspects at known positions and keep only the differences that persist.

A first compare runs while the pipeline keeps applying, so a copy a few changes behind shows
differences that are only lag. Each re-check round reads the suspect rows of the source inside a
consistent snapshot, whose binlog point (``binlog_snapshot_file``/``_position``) says exactly which
changes those rows include; then waits (bounded) until the copy would resume at or past that point,
which means it holds every change the snapshot saw; then reads the copy's rows, and the source's
once more. The copy may be read past the point, so a key the source changed in between may differ
by lag alone: a round counts for a key only if its source row held over the whole window. A
difference that survives two such rounds is drift; one gone in any round was lag; a key that keeps
changing in every round (at most ``max_rounds``) is not reported (its next change rewrites the copy's
row anyway). A copy that never reaches the point in the wait is reported BEHIND, not as drift.

The point is the source's own: MariaDB's binlog point, or the WAL position read inside a PostgreSQL
snapshot (``LsnPoint``, reconciler/pg_source.py); a ``SourceSide`` opens the snapshot and names it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from cdc.core.positions import RestartPoint
from reconciler.canonical import Engine
from reconciler.compare import Found, Region, diff_rows, read_region
from reconciler.model import KeyRange, RowDrift
from reconciler.stores import Rows, SqlRunner, Store, int_key

__all__ = ["CopyProgress", "MariaDbSide", "Point", "Settled", "SourcePoint", "SourceSide", "settle"]

CopyProgress = Callable[[], RestartPoint | None]  # where the copy would resume now (None: unknown)

log = logging.getLogger("reconciler")

ROUNDS_NEEDED = 2  # position-paired rounds a difference must survive to be called drift


@dataclass(frozen=True, slots=True)
class SourcePoint:
    """A binlog point: every transaction starting before it is in the snapshot, none after."""

    file: str
    offset: int

    def __str__(self) -> str:
        return f"{self.file}:{self.offset}"

    def covered_by(self, resume: RestartPoint | None) -> bool:
        if resume is None:
            return False
        t = resume.transaction
        seq = int(self.file.rsplit(".", 1)[1])
        return (t.file_seq, resume.binlog_offset) >= (seq, self.offset)


class Point(Protocol):
    """A place in the source's history that a copy's restart point may have passed."""

    def covered_by(self, resume: RestartPoint | None) -> bool: ...


Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


class SourceSide(Protocol):
    """What lag-is-not-drift needs of the source: where it stands now (for the report and the lag
    pause), and a consistent snapshot named by its point."""

    engine: Engine

    def current(self) -> Point | None: ...

    def snapshot(self) -> AbstractContextManager[tuple[Point, Query]]: ...


class MariaDbSide:
    """MariaDB: ``SHOW MASTER STATUS``, and a consistent snapshot's binlog point."""

    engine = Engine.MARIADB

    def __init__(self, runner: SqlRunner) -> None:
        self._runner = runner

    def current(self) -> SourcePoint | None:
        rows = self._runner.query("SHOW MASTER STATUS", ())
        return SourcePoint(str(rows[0][0]), int(rows[0][1])) if rows else None

    @contextmanager
    def snapshot(self) -> Iterator[tuple[Point, Query]]:
        with self._runner.snapshot() as run:
            row = run("SHOW STATUS LIKE 'binlog_snapshot_file'", ())
            pos = run("SHOW STATUS LIKE 'binlog_snapshot_position'", ())
            yield SourcePoint(str(row[0][1]), int(pos[0][1])), run


@dataclass(frozen=True, slots=True)
class Settled:
    drift: tuple[RowDrift, ...]
    caught_up: bool  # the copy reached the source's point in every round run
    source_point: str
    copy_point: str
    seconds_waited: float


class _SnapshotRunner:
    def __init__(self, engine: Engine, run: Query) -> None:
        self.engine = engine
        self._run = run

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._run(sql, params)


def _region(store: Store, drift: Sequence[RowDrift], first: Region) -> Region:
    if int_key(store.key) and not first.everything:
        keys = sorted({int(d.key[0]) for d in drift})
        return Region(int_ranges=tuple(KeyRange(k, k + 1) for k in keys))
    return first


def settle(
    source: Store,
    side: SourceSide,
    copy_now: Callable[[], Store],
    found: Found,
    progress: CopyProgress,
    wait_seconds: float = 30.0,
    max_rounds: int = 6,
    poll_seconds: float = 0.2,
) -> Settled:
    suspects = {d.key: d for d in found.drift}
    confirmed = dict.fromkeys(suspects, 0)  # rounds each suspect persisted while its source row held
    point: Point | None = None  # the last round's
    resume: RestartPoint | None = None
    waited = 0.0
    caught_up = True
    for _ in range(max_rounds):
        if all(n >= ROUNDS_NEEDED for n in confirmed.values()):
            break
        region = _region(source, list(suspects.values()), found.region)
        with side.snapshot() as (at, run):
            src_rows = read_region(
                dataclasses.replace(source, runner=_SnapshotRunner(side.engine, run)), region
            )
        point = at
        started = time.monotonic()
        resume = progress()
        while not at.covered_by(resume) and time.monotonic() - started < wait_seconds:
            time.sleep(poll_seconds)
            resume = progress()
        waited += time.monotonic() - started
        copy = copy_now()
        copy_rows = read_region(copy, region)
        # the copy was read at or past the point: a key the source changed since the point may show
        # a newer value there, which is lag too. Read the source again: only a key whose source row
        # held over the whole window is evidence (a hot key's round is inconclusive)
        src_after = read_region(source, region)
        now = {d.key: d for d in diff_rows(src_rows, copy_rows, copy)}
        suspects = {k: now[k] for k in suspects if k in now}
        confirmed = {k: confirmed[k] for k in suspects}
        if not at.covered_by(resume):
            caught_up = False
            break
        for k in suspects:
            if _held(k, src_rows, src_after):
                confirmed[k] += 1
    drift = tuple(d for k, d in suspects.items() if confirmed[k] >= ROUNDS_NEEDED or not caught_up)
    if len(drift) < len(suspects):
        log.info(
            "%d key(s) changed at the source in every re-check; not reported (their next change rewrites "
            "the copy's rows)", len(suspects) - len(drift),
        )  # fmt: skip
    return Settled(
        drift,
        caught_up,
        str(point) if point is not None else "",
        resume.to_string() if resume is not None else "",
        waited,
    )


def _held(key: tuple[str, ...], before: Rows, after: Rows) -> bool:
    return before.get(key) == after.get(key)
