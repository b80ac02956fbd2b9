"""Options every `cdc` command that reads a pipeline config shares."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["CONFIG_OPTION"]

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Pipeline config file (YAML), one per source database.",
)
