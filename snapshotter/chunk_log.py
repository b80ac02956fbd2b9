"""Embedded mode's write-ahead log of the snapshot chunk being applied.

The sinks commit one after the other, and the state file after them; a crash in between must not
leave a chunk in some sinks but not others, nor send it twice to a history. So the chunk's records
(and the state that follows them) are written here before any sink sees them, and removed once every
sink has committed them and the state file says so. After a crash the daemon emits the logged
records again, at their logged positions, at the same place in the stream: sinks skip what they
hold (by position) and take what they lack.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from cdc.core.errors import ConfigError
from cdc.core.events import ChangeEvent

__all__ = ["ChunkLog", "LoggedChunk"]


@dataclass(frozen=True, slots=True)
class LoggedChunk:
    records: tuple[ChangeEvent, ...]
    state: str  # the snapshot state once these records are applied


class ChunkLog:
    def __init__(self, state_dir: Path, pipeline: str) -> None:
        self.path = Path(state_dir) / f"snapshot-chunk-{pipeline}.pickle"

    def write(self, chunk: LoggedChunk) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as out:
            # our own file, read back only by this code: pickle keeps the typed records as they are
            pickle.dump((chunk.records, chunk.state), out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)

    def read(self) -> LoggedChunk | None:
        try:
            with self.path.open("rb") as src:
                records, state = pickle.load(src)
        except FileNotFoundError:
            return None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"the snapshot chunk log {self.path} is unreadable ({exc})") from exc
        return LoggedChunk(tuple(records), str(state))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
