"""A click group whose subcommands are imported when one is invoked, not when `cdc` starts.

Every command's module was imported by every `cdc` process: `cdc sink` into Iceberg held cdc.demo's
imports (the embedded daemon's wiring, the dev stack's PostgreSQL driver), ~16 MiB of its resident
memory that it never used (benchmarks/cdc_sink_rss.py; importmem's section in
benchmarks/results/latest.md). A command is still a click command like any other once loaded: help,
completion and errors see the same objects.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import click

__all__ = ["LazyGroup"]

# "package.module:attribute", or a function returning the command (when wiring is needed)
CommandSource = str | Callable[[], click.Command]


class LazyGroup(click.Group):
    """``lazy_commands`` maps a command's name to where it comes from; it is imported on first use."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, CommandSource] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, CommandSource] = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        source = self.lazy_commands.get(cmd_name)
        if source is not None and cmd_name not in self.commands:
            self.add_command(_load(source), cmd_name)
        return super().get_command(ctx, cmd_name)


def _load(source: CommandSource) -> click.Command:
    if not isinstance(source, str):
        return source()
    module_name, _, attribute = source.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{source} is not a click command")
    return command
