"""One source table against one copy: compare, settle the suspects, and say what persisted."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.compare import CompareSettings, compare
from reconciler.model import MASKED, CopyResult, RowDrift, Verdict
from reconciler.progress import LagPause, SliceProgress
from reconciler.settle import CopyProgress, settle
from reconciler.targets import Copy, SourceTable

__all__ = ["ReconcileOptions", "reconcile_copy"]

log = logging.getLogger("reconciler")


@dataclass(frozen=True, slots=True)
class ReconcileOptions:
    compare: CompareSettings = field(default_factory=CompareSettings)
    wait_seconds: float = 30.0  # per re-check round: how long the copy may take to reach the source
    max_rounds: int = 6
    progress_dir: Path | None = None  # where a large table's progress is kept (resume after a kill)
    max_lag: float = 0.0  # pause between slices while the copy lags more than this (0: never)


def reconcile_copy(
    source: SourceTable, copy: Copy, progress: CopyProgress, options: ReconcileOptions
) -> CopyResult:
    started = time.monotonic()
    point = source.side.current()
    store = copy.store()
    pause = None
    if options.max_lag > 0:
        pause = LagPause(source.runner, progress, options.max_lag, options.wait_seconds, source.side.current)
    slices = None
    if options.progress_dir is not None:
        slices = SliceProgress(options.progress_dir, source.ref, copy.sink, pause)
    found = compare(source.store, store, options.compare, slices)
    if slices is not None:
        slices.clear()
    if not found.drift and found.rows_source != found.rows_copy:
        # counts read while the copy still moved (a lagging copy's first-level counts, its rows read
        # later): once more, with the copy as it is now; differing again, the guard below says ERROR
        store = copy.store()
        found = compare(source.store, store, options.compare)
    resume = progress()
    copy_point = resume.to_string() if resume is not None else ""
    source_point = str(point) if point is not None else ""
    caught_up = True
    drift = found.drift
    if found.drift:
        log.info(
            "reconcile %s -> %s: %d suspect row(s); re-checking at paired positions",
            source.ref, copy.sink, len(found.drift),
        )  # fmt: skip
        settled = settle(
            source.store, source.side, copy.store, found, progress, options.wait_seconds, options.max_rounds
        )
        drift, caught_up = settled.drift, settled.caught_up
        source_point = settled.source_point or source_point
        copy_point = settled.copy_point or copy_point
    drift = _masked(drift, {c.name for c in source.store.columns if c.policy and c.policy.masked})
    message = ""
    if not found.drift and found.rows_source != found.rows_copy:
        # the compare contradicts itself (rows counted on one side that no range compared): never a
        # MATCH, whatever the cause; a reconciler that says "match" wrongly is its worst failure
        verdict = Verdict.ERROR
        message = (
            f"{source.ref} -> sink {copy.sink}: {found.rows_source} source rows and {found.rows_copy} copy "
            "rows, yet no differing row was found: the comparison missed rows (a bug in the reconciler; "
            "please report it with this table's key type); the copy is not known to match"
        )
    elif not drift:
        verdict = Verdict.MATCH
    elif caught_up:
        verdict = Verdict.DRIFT
    else:
        verdict = Verdict.BEHIND
    if verdict is Verdict.BEHIND:
        message = (
            f"the copy did not reach the source's position {source_point} within {options.wait_seconds:g}s "
            f"(it would resume at {copy_point or 'an unknown position'}); is the pipeline running? "
            f"The {len(drift)} difference(s) may be lag"
        )
    seconds = time.monotonic() - started
    log.info(
        "reconcile %s -> %s: %s, %d source rows, %d copy rows, %d difference(s), %.2fs",
        source.ref, copy.sink, verdict.value, found.rows_source, found.rows_copy, len(drift), seconds,
    )  # fmt: skip
    return CopyResult(
        table=source.ref,
        sink=copy.sink,
        target=copy.target,
        verdict=verdict,
        rows_source=found.rows_source,
        rows_copy=found.rows_copy,
        drift=drift,
        seconds=seconds,
        source_position=source_point,
        copy_position=copy_point,
        columns_compared=tuple(c.name for c in store.columns),
        columns_not_in_copy=copy.columns_not_in_copy,
        message=message,
    )


def _masked(drift: tuple[RowDrift, ...], masked: set[str]) -> tuple[RowDrift, ...]:
    """Values of policy-protected columns replaced, on both sides (a copy may hold a raw value by a
    bug): what differs is still named, never shown. NULL stays NULL (the policies keep it too)."""
    if not masked:
        return drift

    def hide(value: str | None) -> str | None:
        return None if value is None else MASKED

    return tuple(
        dataclasses.replace(
            d,
            values=tuple(
                (hide(a), hide(b)) if c in masked else (a, b)
                for c, (a, b) in zip(d.columns, d.values, strict=True)
            ),
        )
        for d in drift
    )
