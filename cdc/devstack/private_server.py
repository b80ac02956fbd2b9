"""What the throwaway servers of tests share (private_mariadb.py, private_pgsource.py): a dev-stack
service of their own on a free loopback port, started on ``__enter__``, stopped and its state
directory deleted on ``__exit__``."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from types import TracebackType
from typing import Self

from cdc.devstack.service import Service
from cdc.devstack.settings import LOOPBACK

__all__ = ["PrivateServer", "free_loopback_port"]


def free_loopback_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice, so two callers rarely collide)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class PrivateServer:
    def __init__(self, state_dir: Path, service: Service) -> None:
        self.state_dir = state_dir
        self._service = service

    def _prepare(self) -> None:
        """What a start needs first (nothing unless a server says so)."""

    def start(self) -> None:
        self._prepare()
        _outcome, pid = self._service.launch()
        self._service.wait(pid)  # stops the process again if it does not come up

    def stop(self) -> None:
        self._service.stop()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)
