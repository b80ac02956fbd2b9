"""A stop asked for before a daemon listens for it.

`cdc run` and `cdc sink` take about a second to import and load their config before the
supervisor installs its SIGTERM handler (cdc/daemon/supervisor.py). A SIGTERM in that window used to
end the process by the signal (exit -15), which a service manager reports as a crash although nothing
had started. The command line listens first thing (``listen``): a SIGTERM is then recorded, and the
supervisor takes it as a stop request (``pending``). A command that is no daemon gives SIGTERM back
its default at once (``release``), so it still ends at once, and one received meanwhile takes effect.

Only the standard library here: this module is imported before anything else.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

__all__ = ["listen", "pending", "release"]

_received: list[int] = []
_listening = False


def _record(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)


def listen() -> None:
    """From now on SIGTERM is recorded, not fatal (the main thread of a `cdc` process only)."""
    global _listening
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _record)
        _listening = True


def pending() -> int | None:
    """The SIGTERM received while listening, if any (a daemon then stops before it starts)."""
    return _received[0] if _received else None


def release() -> None:
    """This process runs no daemon: SIGTERM ends it again, and one received meanwhile does so now."""
    global _listening
    if not _listening:
        return
    _listening = False
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _received:
        os.kill(os.getpid(), signal.SIGTERM)
