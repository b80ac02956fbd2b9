"""The sinks of a pipeline's config, opened afresh for each attempt of a daemon (embedded `cdc run`
and `cdc sink` alike)."""

from __future__ import annotations

from collections.abc import Callable

from cdc.config.models import PipelineConfig
from sinks.contract import Sink

__all__ = ["sink_factory"]


def sink_factory(config: PipelineConfig) -> Callable[[], list[Sink]]:
    """Opens the config's sinks for each daemon attempt. The first set is built at once, so that a
    missing driver or a bad sink setting is reported (ConfigError) before anything starts."""
    from sinks.registry import open_sink

    first: list[list[Sink]] = [[open_sink(sink, config.name) for sink in config.sinks]]

    def open_sinks() -> list[Sink]:
        if first:
            return first.pop()
        return [open_sink(sink, config.name) for sink in config.sinks]

    return open_sinks
