"""What `cdc bootstrap` shows while it waits: per table rows, rate and ETA; a summary at the end.

In a terminal, one line rewritten in place; otherwise (logs, CI) a line every ten seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

from cdc.core.schemas import TableRef
from snapshotter.state import FinishedTable, SnapshotState

__all__ = ["ProgressView"]


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressView:
    def __init__(
        self,
        estimates: Mapping[TableRef, int],
        terminal: bool,
        out: TextIO | None = None,
        what: str = "bootstrap",  # or "repair": its rows are the corrective changes sent
    ) -> None:
        self._what = what
        self._estimates = dict(estimates)
        self._terminal = terminal
        self._out = out or sys.stderr
        self._started = time.monotonic()
        self._last_line = 0.0
        self._seen: tuple[TableRef, int, float] | None = None  # (table, rows, when) for the rate
        self._rate = 0.0

    def show(self, state: SnapshotState, request: str) -> None:
        jobs = [j for j in state.jobs if j.request == request]
        done = [f for f in state.finished if f.request == request]
        if not jobs:
            return
        job = jobs[0]
        now = time.monotonic()
        if self._seen is not None and self._seen[0] == job.table and now > self._seen[2]:
            delta = job.rows - self._seen[1]
            if delta > 0:
                rate = delta / (now - self._seen[2])
                self._rate = rate if self._rate == 0 else 0.7 * self._rate + 0.3 * rate
        if self._seen is None or self._seen[0] != job.table or job.rows != self._seen[1]:
            self._seen = (job.table, job.rows, now)
        total = self._estimates.get(job.table, 0)
        eta = f", ETA {_duration((total - job.rows) / self._rate)}" if total > job.rows and self._rate else ""
        of = f" of ~{total:,}" if total else ""
        line = (
            f"[{len(done) + 1}/{len(done) + len(jobs)}] {job.table}: {job.rows:,}{of} rows, "
            f"{job.chunks} chunks, {self._rate:,.0f} rows/s{eta}"
        )
        if self._terminal:
            self._out.write("\r" + line.ljust(100)[:160])
            self._out.flush()
        elif now - self._last_line >= 10.0:
            self._out.write(line + "\n")
            self._out.flush()
            self._last_line = now

    def finish(self, finished: Sequence[FinishedTable]) -> int:
        """Print the summary; 0 when every table was bootstrapped, 2 when one was refused."""
        if self._terminal:
            self._out.write("\n")
        code = 0
        for f in finished:
            if f.refused:
                code = 2
                self._out.write(f"{f.table}: NOT bootstrapped: {f.refused}\n")
            else:
                unit = "changes sent" if self._what == "repair" else f"rows in {f.chunks} chunks"
                self._out.write(f"{f.table}: {f.rows:,} {unit}\n")
        self._out.write(f"{self._what} finished in {_duration(time.monotonic() - self._started)}\n")
        self._out.flush()
        return code
