"""Between the slices of a large table's compare: progress a killed run resumes from, and the pause
while the copy lags.

Progress is one small JSON file per table and copy under ``state_dir/reconcile/progress/``, replaced
atomically after each finished slice: the first key not yet compared, and the suspects found below
it, by kind and key only (the re-checks read their values again, so no value is ever kept here). A
run that finishes removes it; a run that starts over the same key span resumes after the last
finished slice (if that was less than 6 hours ago).

Tables with other keys (text, composite) keep the first source key not compared (each value tagged
with its type, so it binds again as it was read) and the bounds of the chunks holding suspects.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdc.core.positions import RestartPoint
from cdc.core.schemas import TableRef
from reconciler.compare import Bound, Resumed, ResumedChunks
from reconciler.model import DriftKind, RowDrift
from reconciler.settle import Point, SourcePoint
from reconciler.stores import SqlRunner

__all__ = ["LagPause", "SliceProgress"]

log = logging.getLogger("reconciler")

STALE_SECONDS = 6 * 3600  # progress older than this is not resumed from


class SliceProgress:
    """``compare.Slices`` for one table and copy: progress kept under ``folder``."""

    def __init__(self, folder: Path, table: TableRef, sink: str, before: Callable[[], None] | None = None):
        name = hashlib.sha256(f"{table}|{sink}".encode()).hexdigest()[:16]
        self.path = folder / f"{name}.json"
        self._table, self._sink = table, sink
        self._before = before
        self._lo: int | None = None

    def before(self) -> None:
        if self._before is not None:
            self._before()

    def resumed(self, lo: int) -> Resumed | None:
        self._lo = lo
        data = self._read()
        if data is None or data.get("lo") != lo:
            return None  # another table, or its keys changed below the old start: start over
        drift = tuple(RowDrift(DriftKind(kind), tuple(key)) for kind, key in data["drift"])
        done = int(data["done_until"])
        log.info(
            "reconcile %s -> %s: resuming a stopped run: keys %d to %d were compared (%d suspect(s) kept)",
            self._table, self._sink, lo, done - 1, len(drift),
        )  # fmt: skip
        source_rows = data.get("source_rows")
        return Resumed(
            done, drift, int(data.get("copy_rows", 0)), None if source_rows is None else int(source_rows)
        )

    def finished(
        self, done_until: int, drift: tuple[RowDrift, ...], copy_rows: int, source_rows: int
    ) -> None:
        self._write(
            {
                "lo": self._lo, "done_until": done_until, "copy_rows": copy_rows, "source_rows": source_rows,
                "drift": [[d.kind.value, list(d.key)] for d in drift],
            }
        )  # fmt: skip

    def resumed_chunks(self) -> ResumedChunks | None:
        data = self._read()
        if data is None or data.get("mode") != "chunks":
            return None
        drift = tuple(RowDrift(DriftKind(kind), tuple(key)) for kind, key in data["drift"])
        after = _decode_key(data["after"])
        log.info(
            "reconcile %s -> %s: resuming a stopped run: keys before %s were compared (%d suspect(s) kept)",
            self._table, self._sink, _shown(after), len(drift),
        )  # fmt: skip
        chunks = tuple((_decode_bound(lo), _decode_bound(hi)) for lo, hi in data["chunks"])
        return ResumedChunks(after, drift, int(data["source_rows"]), int(data["copy_rows"]), chunks)

    def finished_chunks(self, done: ResumedChunks) -> None:
        self._write(
            {
                "mode": "chunks", "after": _encode_key(done.after), "source_rows": done.source_rows,
                "copy_rows": done.copy_rows, "drift": [[d.kind.value, list(d.key)] for d in done.drift],
                "chunks": [[_encode_bound(lo), _encode_bound(hi)] for lo, hi in done.chunks],
            }
        )  # fmt: skip

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning(
                "reconcile %s -> %s: unreadable progress %s; starting over",
                self._table,
                self._sink,
                self.path,
            )
            return None
        if (
            not isinstance(data, dict)
            or data.get("table") != str(self._table)
            or data.get("sink") != self._sink
        ):
            return None
        if time.time() - float(data.get("at", 0)) > STALE_SECONDS:
            return None  # the part compared then may have changed since: start over
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"table": str(self._table), "sink": self._sink, "at": time.time(), **data}))
        os.replace(tmp, self.path)  # a kill leaves the old file or the new one, never half of one

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


# a key value as the source driver gives it, tagged with its type: it must bind again exactly as read
_TAGS: tuple[tuple[str, type, Callable[[Any], Any], Callable[[Any], Any]], ...] = (
    ("bool", bool, int, bool),
    ("int", int, int, int),
    ("str", str, str, str),
    ("bytes", bytes, bytes.hex, bytes.fromhex),
    ("decimal", decimal.Decimal, str, decimal.Decimal),
    ("datetime", dt.datetime, dt.datetime.isoformat, dt.datetime.fromisoformat),
    ("date", dt.date, dt.date.isoformat, dt.date.fromisoformat),
    ("timedelta", dt.timedelta, lambda v: round(v / dt.timedelta(microseconds=1)),
     lambda v: dt.timedelta(microseconds=v)),
    ("float", float, repr, float),
)  # fmt: skip


def _encode_value(value: Any) -> list[Any]:
    if value is None:
        return ["null", None]
    for tag, kind, encode, _ in _TAGS:
        if isinstance(value, kind):
            return [tag, encode(value)]
    raise TypeError(f"a key value of type {type(value).__name__} cannot be kept in the progress file")


def _decode_value(item: list[Any]) -> Any:
    tag, raw = item
    if tag == "null":
        return None
    decode = next(d for t, _, _, d in _TAGS if t == tag)
    return decode(raw)


def _encode_key(key: tuple[Any, ...]) -> list[list[Any]]:
    return [_encode_value(v) for v in key]


def _decode_key(data: list[list[Any]]) -> tuple[Any, ...]:
    return tuple(_decode_value(v) for v in data)


def _encode_bound(bound: Bound) -> list[list[Any]] | None:
    return None if bound is None else _encode_key(bound)


def _decode_bound(data: list[list[Any]] | None) -> Bound:
    return None if data is None else _decode_key(data)


def _shown(key: tuple[Any, ...]) -> str:
    return "(" + ", ".join(str(v) for v in key) + ")"


class LagPause:
    """Before each slice: if the copy has not reached where the source was ``max_lag`` seconds ago,
    wait (up to ``wait`` seconds) until it has, instead of adding load to a source the copy cannot
    keep up with."""

    def __init__(
        self,
        source: SqlRunner,
        progress: Callable[[], RestartPoint | None],
        max_lag: float,
        wait: float,
        point: Callable[[], Point | None] | None = None,  # the source's position now (PostgreSQL: an LSN)
    ) -> None:
        self._source, self._progress, self._now = source, progress, point
        self._max_lag, self._wait = max_lag, wait
        self._samples: collections.deque[tuple[float, Point]] = collections.deque()
        self.paused_seconds = 0.0

    def _point(self) -> Point | None:
        if self._now is not None:
            return self._now()
        rows = self._source.query("SHOW MASTER STATUS", ())
        return SourcePoint(str(rows[0][0]), int(rows[0][1])) if rows else None

    def __call__(self) -> None:
        now = time.monotonic()
        point = self._point()
        if point is None:
            return
        self._samples.append((now, point))
        due = None
        while self._samples and now - self._samples[0][0] >= self._max_lag:
            due = self._samples.popleft()[1]
        if due is None or due.covered_by(self._progress()):
            return
        log.info("reconcile: the copy lags more than %gs (has not reached %s): pausing", self._max_lag, due)
        while not due.covered_by(self._progress()) and time.monotonic() - now < self._wait:
            time.sleep(0.2)
        self.paused_seconds += time.monotonic() - now
