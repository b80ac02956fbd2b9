"""The `cdc` script: listens for SIGTERM before the command line's imports (cdc/early_stop.py)."""

from __future__ import annotations

from cdc import early_stop

__all__ = ["main"]


def main() -> None:
    early_stop.listen()
    from cdc.cli import main as command_line

    command_line()
