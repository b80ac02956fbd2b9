"""Pipeline configuration: typed models and the YAML loader (see DESIGN.md, "Contracts")."""

from cdc.config.loader import load_config, parse_config, secret_values
from cdc.config.models import (
    IcebergSinkConfig,
    KafkaStreamConfig,
    MariaDbSourceConfig,
    PipelineConfig,
    PostgresSourceConfig,
    SinkConfig,
    SqlSinkConfig,
    ZeroDatePolicy,
)

__all__ = [
    "IcebergSinkConfig",
    "KafkaStreamConfig",
    "MariaDbSourceConfig",
    "PipelineConfig",
    "PostgresSourceConfig",
    "SinkConfig",
    "SqlSinkConfig",
    "ZeroDatePolicy",
    "load_config",
    "parse_config",
    "secret_values",
]
