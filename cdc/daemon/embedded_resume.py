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

Both files record whose they are (``PipelineIdentity``: the pipeline's name, the source's configured
host:port and the server's ``@@server_id``), because binlog positions order by file number and offset,
not by server: two pipelines run from one directory (``state_dir`` defaults to ``./state``) would
otherwise take each other's positions for their own, and a sink standing inside the other pipeline's
stretch would skip its own changes. Another pipeline's (or source's) progress file is ignored with a
warning, as is one written before identities were recorded; another's start file stops the daemon
(ConfigError: give each pipeline its own state_dir), while a start file without identity is still
used, as before, and stamped with this pipeline's. The same pipeline on another server (a failover)
is not an error when the start file records its GTID state: it is stamped with the new identity,
and the sinks resume there by GTID (gtid_journal.py).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cdc.core.errors import ConfigError, PositionFormatError
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


@dataclass(frozen=True, slots=True)
class PipelineIdentity:
    """Whose positions a state file holds. The address alone could name another server after a
    failover behind it, and server_id alone is 1 on most servers left at their default: together
    they tell two sources apart."""

    pipeline: str
    source: str  # the source's host:port, as configured
    server_id: int  # the source server's @@server_id

    def describe(self) -> str:
        return f"pipeline {self.pipeline!r} (source {self.source}, server_id {self.server_id})"

    def to_json(self) -> dict[str, object]:
        return {"pipeline": self.pipeline, "source": self.source, "server_id": self.server_id}

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> PipelineIdentity | None:
        """The identity a file records; None for a file written before identities were recorded."""
        if "pipeline" not in raw:
            return None
        return cls(str(raw["pipeline"]), str(raw["source"]), int(str(raw["server_id"])))


class StartFile:
    """The position a pipeline first started from; read for sinks that have applied nothing."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / START_FILE

    def read(self, identity: PipelineIdentity | None, *, stamp: bool = False) -> RestartPoint | None:
        """The recorded start; ConfigError if another pipeline (or source) recorded it. ``identity``
        None: not checked (`cdc status` when the source cannot be asked its server_id). ``stamp``
        (the daemon, not status): record ``identity`` in a file written before identities were."""
        try:
            raw = json.loads(self.path.read_text())
            owner = PipelineIdentity.from_json(raw)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PositionFormatError(
                f"{self.path} is not valid: {exc}; delete it to start at the source's current position"
            ) from exc
        point = RestartPoint.parse(str(raw.get("restart_point")))
        if (
            identity is not None
            and owner is not None
            and owner != identity
            and owner.pipeline == identity.pipeline
            and point.context is not None
        ):
            # The same pipeline on another server (a failover to a promoted replica, or the same
            # server at a new address): its positions carry GTID states, from which the reader
            # resumes on the new server (gtid_journal.py, cdc/sources/mariadb/failover.py).
            log.warning(
                "the source was %s (server_id %d), it is now %s (server_id %d): resuming there by GTID",
                owner.source,
                owner.server_id,
                identity.source,
                identity.server_id,
            )
            if stamp:
                self.write(point, identity)
            return point
        same_pipeline = identity is not None and owner is not None and owner.pipeline == identity.pipeline
        if same_pipeline and owner != identity:  # the failover case above, without a GTID state
            assert identity is not None and owner is not None
            raise ConfigError(
                f"the source of pipeline {identity.pipeline!r} changed: {self.path} was written for "
                f"{owner.source} (server_id {owner.server_id}), the source is now {identity.source} "
                f"(server_id {identity.server_id}), and it records no GTID state (written by an "
                "older version), so the pipeline cannot resume there by GTID. Point source back "
                "at the server it was read from, or start the pipeline afresh (a new state_dir "
                "and `cdc bootstrap`)"
            )
        if identity is not None and owner is not None and owner != identity:
            raise ConfigError(
                f"state_dir {self.path.parent} belongs to another pipeline: {self.path.name} was written "
                f"by {owner.describe()}, this is {identity.describe()}. Give this pipeline its own "
                "state_dir (two pipelines must never share one); if it is the same pipeline and server "
                f"under a new name or address, edit the identity in {self.path}"
            )
        if stamp and identity is not None and owner is None:
            self.write(point, identity)  # written before identities: from now on it is checked
        return point

    def write(self, point: RestartPoint, identity: PipelineIdentity) -> None:
        text = json.dumps({"restart_point": point.to_string(), **identity.to_json()})
        write_atomically(self.path, text + "\n")


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

    def to_json(self, identity: PipelineIdentity) -> str:
        return json.dumps(
            {
                **identity.to_json(),
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

    def read(
        self, tables: tuple[str, ...], exclude: tuple[str, ...], identity: PipelineIdentity | None
    ) -> IdleStretch | None:
        """The recorded stretch, if there is one and it was observed by this pipeline, on this
        source, under this table selection (``identity`` None, the source unknown: none)."""
        stretch = self.observed(identity)
        if stretch is None:
            return None
        if (stretch.tables, stretch.exclude) != (tables, exclude):
            log.info("%s was recorded for another table selection: not used", self.path)
            return None
        return stretch

    def observed(self, identity: PipelineIdentity | None) -> IdleStretch | None:
        """The recorded stretch if this pipeline observed it on this source, under any table
        selection: how far the pipeline itself acknowledged an idle source (a PostgreSQL slot)."""
        if identity is None:
            return None
        try:
            raw = json.loads(self.path.read_text())
            owner = PipelineIdentity.from_json(raw)
            stretch = IdleStretch(
                RestartPoint.parse(str(raw["start"])),
                RestartPoint.parse(str(raw["end"])),
                int(raw["end_source_ts_ms"]),
                tuple(str(t) for t in raw["tables"]),
                tuple(str(t) for t in raw["exclude_tables"]),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError, PositionFormatError) as exc:
            log.warning("ignoring %s (%s): the sinks resume from their own positions", self.path, exc)
            return None
        if owner != identity:
            # positions of another server (or pipeline) would look like ours: never use them
            log.warning(
                "ignoring %s: it was written by %s, this is %s; the sinks resume from their own "
                "positions (give each pipeline its own state_dir)",
                self.path,
                "a version that recorded no pipeline" if owner is None else owner.describe(),
                identity.describe(),
            )
            return None
        return stretch

    def write(self, stretch: IdleStretch, identity: PipelineIdentity) -> None:
        write_atomically(self.path, stretch.to_json(identity) + "\n")


def sink_resume_point(
    applied: AppliedState | None, start: RestartPoint | None, stretch: IdleStretch | None
) -> RestartPoint | None:
    """Where one sink resumes: after its applied position (or at the pipeline's start), moved on
    over the idle stretch when it stands in it. None: a fresh sink of a pipeline never started."""
    own = RestartPoint.after(applied.position) if applied is not None else start
    if own is None:
        return None
    return stretch.advance(own) if stretch is not None else own
