"""Where each sink resumes in embedded mode: its applied position, the start file, the idle stretch.

Two small files in the state directory, both written atomically (temporary file, fsync, rename):

``embedded-start.json``: the position the pipeline first started from. A sink that has applied
nothing (a fresh pipeline, or a sink added later) starts there. Written before anything is read, so
a crash before the first batch comes back to the same place.

``embedded-progress.json``: the idle checkpoint (issue 8, item 3). The sinks store a position only
with the data they apply, so while the captured tables are idle their positions stand still however
much else the source writes; a restart would then re-read all of it, and fail as "purged" once that
binlog has expired although nothing was missed. The source says when a stretch of binlog holds no
change of a captured table (``SourceProgress`` after other tables' transactions and on heartbeats).
The file records one such stretch, ``[start, end)``: no change of a captured table lies in it.

The rules, and why each instant of a crash is safe:

- Written only when (a) every sink has durably applied (``flush`` returned) every record the daemon
  handed it, (b) a ``SourceProgress`` came after the last record handed, and (c) ``start`` is the
  point just after that last record (or, when none was handed in this run, the run's own resume
  point, at or below which every sink stood). Then every sink's resume point is >= ``start``, and
  nothing to capture lies before ``end`` beyond it.
- On start, a sink whose own resume point R (just after its applied position, or the start file for
  a sink that applied nothing) falls in ``[start, end]`` resumes at ``end``; any other sink resumes
  at R. The daemon reads from the lowest of these, and each sink still skips what it holds.
- A stretch is a fact about the source's binlog, true forever once observed: an old file left by a
  crash before the next write is still right, only less far ahead. A sink that is behind ``start``
  (restored from a backup, say) is not moved. A sink added later starts at the start file's point
  and is moved only if that point lies in the stretch, i.e. it misses nothing captured.
- A stretch observed under another source table selection says nothing about the tables now
  captured: the file records ``source.tables`` / ``exclude_tables`` and is ignored when they differ.
- When a new stretch begins inside the old one (an idle pipeline restarted), the two are joined, so
  that a sink moved by the old stretch is still moved by the new one.
- A file that cannot be read is ignored (with a warning): it only saves re-reading.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cdc.core.errors import PositionFormatError
from cdc.core.positions import RestartPoint
from sinks.contract import AppliedState

log = logging.getLogger("cdc.run")

START_FILE = "embedded-start.json"
PROGRESS_FILE = "embedded-progress.json"


def order(point: RestartPoint) -> tuple[object, int]:
    return (point.transaction, point.skip_rows)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


class StartFile:
    """The position a pipeline first started from; read for sinks that have applied nothing."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / START_FILE

    def read(self) -> RestartPoint | None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise PositionFormatError(
                f"{self.path} is not valid JSON: {exc}; delete it to start at the source's current position"
            ) from exc
        return RestartPoint.parse(str(raw.get("restart_point")))

    def write(self, point: RestartPoint) -> None:
        write_atomically(self.path, json.dumps({"restart_point": point.to_string()}) + "\n")


@dataclass(frozen=True, slots=True)
class IdleStretch:
    """No change of a captured table lies in ``[start, end)`` (observed under ``tables``/``exclude``)."""

    start: RestartPoint
    end: RestartPoint
    end_source_ts_ms: int  # the source's time at ``end``: a sink resuming there is that current
    tables: tuple[str, ...]
    exclude: tuple[str, ...]

    def advance(self, point: RestartPoint) -> RestartPoint:
        """Where a sink whose own resume point is ``point`` may resume."""
        if order(self.start) <= order(point) <= order(self.end):
            return self.end
        return point

    def joined(self, earlier: IdleStretch | None) -> IdleStretch:
        """This stretch, extended back over ``earlier`` when it begins inside it."""
        if (
            earlier is not None
            and (earlier.tables, earlier.exclude) == (self.tables, self.exclude)
            and order(earlier.start) <= order(self.start) <= order(earlier.end)
        ):
            return IdleStretch(earlier.start, self.end, self.end_source_ts_ms, self.tables, self.exclude)
        return self

    def to_json(self) -> str:
        return json.dumps(
            {
                "start": self.start.to_string(),
                "end": self.end.to_string(),
                "end_source_ts_ms": self.end_source_ts_ms,
                "tables": list(self.tables),
                "exclude_tables": list(self.exclude),
            }
        )


class ProgressFile:
    """The idle checkpoint (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / PROGRESS_FILE

    def read(self, tables: tuple[str, ...], exclude: tuple[str, ...]) -> IdleStretch | None:
        """The recorded stretch, if there is one and it was observed under this table selection."""
        try:
            raw = json.loads(self.path.read_text())
            stretch = IdleStretch(
                RestartPoint.parse(str(raw["start"])),
                RestartPoint.parse(str(raw["end"])),
                int(raw["end_source_ts_ms"]),
                tuple(str(t) for t in raw["tables"]),
                tuple(str(t) for t in raw["exclude_tables"]),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, PositionFormatError) as exc:
            log.warning("ignoring %s (%s): the sinks resume from their own positions", self.path, exc)
            return None
        if (stretch.tables, stretch.exclude) != (tables, exclude):
            log.info("%s was recorded for another table selection: not used", self.path)
            return None
        return stretch

    def write(self, stretch: IdleStretch) -> None:
        write_atomically(self.path, stretch.to_json() + "\n")


def sink_resume_point(
    applied: AppliedState | None, start: RestartPoint | None, stretch: IdleStretch | None
) -> RestartPoint | None:
    """Where one sink resumes: after its applied position (or at the pipeline's start), moved on
    over the idle stretch when it stands in it. None: a fresh sink of a pipeline never started."""
    own = RestartPoint.after(applied.position) if applied is not None else start
    if own is None:
        return None
    return stretch.advance(own) if stretch is not None else own
