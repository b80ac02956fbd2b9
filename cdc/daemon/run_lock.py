"""Is a `cdc run` of this pipeline running on this host? A lock file in the state directory says.

`cdc run` holds an exclusive ``flock`` on ``<state_dir>/run-<pipeline>.lock`` for its whole life; the
kernel drops it when the process ends, however it ends (SIGKILL included), so a stale file never
claims a dead daemon. `cdc bootstrap` uses it to choose between asking the running daemon and
bootstrapping by itself. (It is not the fence between two daemons: that is the sinks' writer epoch
and Kafka's producer epoch, which also hold across hosts.)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["RunLock"]


class RunLock:
    def __init__(self, state_dir: Path, pipeline: str) -> None:
        self.path = Path(state_dir) / f"run-{pipeline}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if no other process holds it; True if this process holds it now."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the process that holds (or last held) the lock, for messages."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
