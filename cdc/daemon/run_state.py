"""What a daemon records about its runs, for `cdc status`: when it started, its last error, its last
durable progress, and how it last exited.

One small JSON file per command and pipeline in the state directory (``run-state-<pipeline>.json``
for `cdc run`, ``sink-state-<pipeline>.json`` for `cdc sink`; several `cdc sink` processes of one
pipeline share the file, last writer wins). The pipeline's name is in the file name because
``state_dir`` defaults to ``./state``: two pipelines run from one directory must not report each
other's runs (a file from before, ``run-state.json``, is no longer read: it named no pipeline).
Written atomically, so a reader never sees half a file; error messages are
redacted of every secret the config holds. A SIGKILLed daemon records no exit: status then shows the
start of a process that is gone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

from cdc.core.positions import RestartPoint
from cdc.daemon.embedded_resume import order, write_atomically
from cdc.logs import redact

log = logging.getLogger("cdc.run")

STATE_FILES = {"run": "run-state", "sink": "sink-state"}
TERMINAL_EXIT = 2
PROGRESS_EVERY_S = 5.0  # progress is for status only: a few seconds stale is fine, a write per batch not


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass(frozen=True, slots=True)
class RecordedExit:
    at: str  # ISO time
    exit_code: int
    error: str | None  # the terminal error (redacted); None for a clean exit


@dataclass(frozen=True, slots=True)
class RecordedProgress:
    """Everything before ``resume_point`` was durably applied by every sink, at ``at``."""

    at: str
    resume_point: str  # RestartPoint.to_string()
    source_ts_ms: int  # the source's commit time of the last change (or idle point) it covers


@dataclass(frozen=True, slots=True)
class RunState:
    command: str
    host: str
    pid: int
    started_at: str
    last_error: str | None = None  # the latest error, transient ones included (redacted)
    last_error_at: str | None = None
    last_progress: RecordedProgress | None = None
    last_exit: RecordedExit | None = None

    @property
    def exited(self) -> bool:
        """The process that started last has exited (a clean stop or an error)."""
        return self.last_exit is not None and self.last_exit.at >= self.started_at

    @property
    def failed(self) -> bool:
        """The last run stopped on a terminal error (exit 2): an operator must act."""
        return self.exited and self.last_exit is not None and self.last_exit.exit_code == TERMINAL_EXIT

    @property
    def running(self) -> bool | None:
        """Whether the process is alive: None when it ran on another host (cannot tell from here).
        Started, not exited and gone means it was killed (SIGKILL, a crash of the machine)."""
        if self.exited:
            return False
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, under another user
            return True
        return True

    def to_json(self) -> dict[str, object]:
        p, e = self.last_progress, self.last_exit
        return {
            "running": self.running,
            "command": self.command,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_progress": (
                None
                if p is None
                else {"at": p.at, "resume_point": p.resume_point, "source_ts_ms": p.source_ts_ms}
            ),
            "last_exit": None if e is None else {"at": e.at, "exit_code": e.exit_code, "error": e.error},
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> RunState:
        p, e = raw.get("last_progress"), raw.get("last_exit")
        return cls(
            command=str(raw["command"]),
            host=str(raw["host"]),
            pid=int(str(raw["pid"])),
            started_at=str(raw["started_at"]),
            last_error=_opt_str(raw.get("last_error")),
            last_error_at=_opt_str(raw.get("last_error_at")),
            last_progress=(
                RecordedProgress(str(p["at"]), str(p["resume_point"]), int(p["source_ts_ms"]))
                if isinstance(p, dict)
                else None
            ),
            last_exit=(
                RecordedExit(str(e["at"]), int(e["exit_code"]), _opt_str(e.get("error")))
                if isinstance(e, dict)
                else None
            ),
        )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def state_path(state_dir: Path, command: str, pipeline: str) -> Path:
    """The run-state file of ``command`` ("run" or "sink") of ``pipeline`` (a config name: safe in a
    file name, NAME_PATTERN)."""
    return state_dir / f"{STATE_FILES[command]}-{pipeline}.json"


def read_run_state(state_dir: Path, command: str, pipeline: str) -> RunState | None:
    """The recorded state of ``command`` ("run" or "sink") of ``pipeline``; None if it never ran here."""
    path = state_path(state_dir, command, pipeline)
    try:
        return RunState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


class RunRecorder:
    """Keeps the state file of one daemon process up to date (see the module docstring)."""

    def __init__(self, state_dir: Path, command: str, pipeline: str) -> None:
        self.path = state_path(state_dir, command, pipeline)
        previous = read_run_state(state_dir, command, pipeline)
        self.state = RunState(
            command,
            socket.gethostname(),
            os.getpid(),
            utc_now(),
            last_progress=previous.last_progress if previous else None,
            last_exit=previous.last_exit if previous else None,
        )
        self._progress_written = 0.0
        self._write()

    def _write(self) -> None:
        try:
            write_atomically(self.path, json.dumps(self.state.to_json(), indent=2) + "\n")
        except OSError as exc:  # status loses a detail; the pipeline itself must not stop for it
            log.warning("could not record the run state in %s: %s", self.path, exc)

    def error(self, message: str, terminal: bool) -> None:
        del terminal  # the exit code says whether it was terminal
        self.state = replace(self.state, last_error=redact(message), last_error_at=utc_now())
        self._write()

    def exited(self, code: int, error: str | None) -> None:
        now = utc_now()
        self.state = replace(
            self.state, last_exit=RecordedExit(now, code, None if error is None else redact(error))
        )
        self._write()

    def progress(self, resume_point: RestartPoint, source_ts_ms: int, *, force: bool = False) -> None:
        """Every sink durably holds everything before ``resume_point`` (throttled to a write per
        few seconds; ``force`` at a clean stop)."""
        held = self.state.last_progress
        if held is not None and order(RestartPoint.parse(held.resume_point)) >= order(resume_point):
            return
        self.state = replace(
            self.state, last_progress=RecordedProgress(utc_now(), resume_point.to_string(), source_ts_ms)
        )
        now = time.monotonic()
        if force or now - self._progress_written >= PROGRESS_EVERY_S:
            self._progress_written = now
            self._write()

    def flush(self) -> None:
        self._write()
