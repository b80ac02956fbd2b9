"""Options every `cdc` command that reads a pipeline config shares."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cdc.config import PipelineConfig, load_config, secret_values
from cdc.core.errors import ConfigError
from cdc.logs import register_secrets

__all__ = ["CONFIG_OPTION", "load_or_exit"]

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Pipeline config file (YAML), one per source database.",
)


def load_or_exit(config_path: Path) -> PipelineConfig:
    """Load the config and register its secrets for redaction; on a problem print it and exit 2."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    register_secrets(secret_values(config))
    # the snapshot state's keys are sealed under column policies with a hash key (cdc/policy)
    from cdc.policy.columns import seal_state_keys

    seal_state_keys(config.policies)
    return config
