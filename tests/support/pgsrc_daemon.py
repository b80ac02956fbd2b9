"""`cdc run` / `cdc sink` as real processes, forked from a server that imported Headwater once.

A fresh interpreter spends ~4 s importing Headwater on the loaded CI machine before it does anything,
and the PostgreSQL fault test starts the daemon a dozen times. Here each daemon is still its own
process (SIGKILL ends it, nothing of it survives in the test's process), forked from a
single-threaded multiprocessing fork server that preloaded the modules: it starts in a fraction of a
second. Its stdout and stderr go to the log file, as with tests/support/workload.py's Daemon.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import signal
from pathlib import Path

__all__ = ["ForkedDaemon", "warm_up"]

# what `cdc run` of a PostgreSQL pipeline imports (Kafka and embedded modes, `cdc sink`)
_PRELOAD = [
    "cdc.cli",
    "cdc.daemon.postgresql_source",
    "cdc.daemon.capture",
    "cdc.daemon.embedded",
    "cdc.stream",
    "cdc.sources.postgresql.reader",
    "sinks.registry",
    "sinks.sql.sql_sink",
    "confluent_kafka",
    "psycopg2.extras",
    "sqlalchemy",
]
_CONTEXT: multiprocessing.context.ForkServerContext | None = None


def _context() -> multiprocessing.context.ForkServerContext:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(_PRELOAD)
    return _CONTEXT


def warm_up() -> None:
    """Start the fork server now: it imports while the tests before the first daemon run."""
    import multiprocessing.forkserver

    _context()
    multiprocessing.forkserver.ensure_running()


def _main(args: list[str], log: str, env: dict[str, str]) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from cdc.cli import main

    main(args, prog_name="cdc")  # exits with the command's code


class ForkedDaemon:
    def __init__(self, config: Path, log: Path, command: str = "run", password: str = "") -> None:
        self.config = config
        self.log = log
        self.command = command
        self._env = {"CDC_SOURCE_PASSWORD": password}
        self.proc: multiprocessing.process.BaseProcess | None = None

    def start(self, *extra: str) -> None:
        args = [self.command, "-c", str(self.config), *extra]
        self.proc = _context().Process(target=_main, args=(args, str(self.log), self._env), daemon=True)
        self.proc.start()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL
        self.proc.join(30)

    def catch_up(self, timeout: float = 600) -> None:
        self.start("--until-caught-up")
        assert self.proc is not None
        self.proc.join(timeout)
        assert self.proc.exitcode == 0, (self.proc.exitcode, self.log.read_text()[-3000:])

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""
