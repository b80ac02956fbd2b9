"""The CLI's two calls: `started(config, command)` before a daemon runs, `finished(exit_code)` after.

Nothing happens without a ``lineage`` section, and nothing of openlineage is imported then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdc.config.models import PipelineConfig

if TYPE_CHECKING:
    from cdc.lineage.emitter import LineageRun

__all__ = ["finished", "started"]

_ACTIVE: list[tuple[LineageRun, PipelineConfig, str]] = []


def started(config: PipelineConfig, command: str) -> None:
    if config.lineage is None:
        return
    from cdc.lineage.emitter import LineageRun

    run = LineageRun(config, command)
    run.start()
    _ACTIVE.append((run, config, command))


def finished(exit_code: int) -> None:
    while _ACTIVE:
        run, config, command = _ACTIVE.pop()
        run.finish(exit_code, _last_error(config, command) if exit_code else None)


def _last_error(config: PipelineConfig, command: str) -> str | None:
    """What the run-state file recorded as the exit's error (already redacted there)."""
    from cdc.daemon.run_state import read_run_state

    state = read_run_state(config.state_dir, command, config.name)
    if state is None or state.last_exit is None:
        return None
    return state.last_exit.error
