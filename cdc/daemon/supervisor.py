"""Runs one daemon attempt after another: retries transient failures with backoff, stops on terminal ones.

Shared by capture (Kafka) and embedded mode. Each attempt resumes from what was durably committed, so a
retry never loses or repeats a change; the supervisor only decides when to try again.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Protocol

from cdc import early_stop
from cdc.core.errors import HeadwaterError, TransientError

log = logging.getLogger("cdc.run")

RESET_BACKOFF_AFTER_S = 60.0  # an attempt that ran this long was healthy: start backing off afresh


class RunObserver(Protocol):
    """Told of every failed attempt and of the exit (the run-state file `cdc status` reads)."""

    def error(self, message: str, terminal: bool) -> None: ...
    def exited(self, code: int, error: str | None) -> None: ...


# Process-wide, set once by the CLI: each daemon (capture, embedded, `cdc sink`) builds its own
# Supervisor, and one process runs one daemon, whose runs are what the state file describes.
_observer: RunObserver | None = None


def observe(observer: RunObserver | None) -> None:
    """Report the attempts of every Supervisor of this process to ``observer``."""
    global _observer
    _observer = observer


class Supervisor:
    def __init__(self, backoff_initial_s: float = 1.0, backoff_max_s: float = 30.0) -> None:
        self.stop_requested = threading.Event()
        self._initial = backoff_initial_s
        self._max = backoff_max_s
        self.last_error: str | None = None  # the last attempt's error (what an exit 2 reports)

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if self.stop_requested.is_set():
            raise KeyboardInterrupt  # a second signal: stop now; what is not committed is redone
        log.info("stop requested%s: finishing the open transaction", f" (signal {signum})" if signum else "")
        self.stop_requested.set()

    def run(self, attempt: Callable[[], None]) -> int:
        """Run ``attempt`` until it returns (0), fails terminally (2) or a stop is requested (0)."""
        code = self._run(attempt)
        if _observer is not None:
            _observer.exited(code, self.last_error if code == 2 else None)
        return code

    def _failed(self, message: str, terminal: bool) -> None:
        self.last_error = message
        if _observer is not None:
            _observer.error(message, terminal)

    def _run(self, attempt: Callable[[], None]) -> int:
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {s: signal.signal(s, self.request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
            early = early_stop.pending()
            if early is not None:  # received while the process was starting (cdc/early_stop.py)
                self.request_stop(early)
        backoff = self._initial
        try:
            while True:
                started = time.monotonic()
                try:
                    attempt()
                    return 0
                except TransientError as exc:
                    self._failed(str(exc), terminal=False)
                    if self.stop_requested.is_set():
                        log.warning("stopping after a transient error: %s", exc)
                        return 0
                    if time.monotonic() - started > RESET_BACKOFF_AFTER_S:
                        backoff = self._initial
                    log.warning("%s; retrying from the last checkpoint in %.0fs", exc, backoff)
                    if self.stop_requested.wait(backoff):
                        return 0
                    backoff = min(backoff * 2, self._max)
                except HeadwaterError as exc:  # terminal (marked or not): an operator must act
                    log.error("%s", exc)
                    self._failed(str(exc), terminal=True)
                    return 2
                except KeyboardInterrupt:
                    log.warning(
                        "stopped at once: the open transaction was not committed (it is redone "
                        "at the next start)"
                    )
                    return 130
                except Exception as exc:  # a bug or an error nobody classified: stop loudly, not in a loop
                    log.exception("unexpected error; stopping (nothing committed is lost)")
                    self._failed(f"unexpected error: {type(exc).__name__}: {exc}", terminal=True)
                    return 2
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
