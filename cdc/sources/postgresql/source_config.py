"""A PostgreSQL source as the config describes it: its connection settings and its slot's name.

One place for the daemon, the snapshotter, `cdc status`, the catalog and repairs (as
cdc/sources/mariadb/source_config.py is for MariaDB).
"""

from __future__ import annotations

import re

from cdc.config.models import PostgresSourceConfig
from cdc.sources.postgresql.server import PgSettings

__all__ = ["pg_settings", "slot_name"]


def pg_settings(config: PostgresSourceConfig) -> PgSettings:
    return PgSettings(
        config.host,
        config.port,
        config.user,
        config.password.get_secret_value(),
        config.database,
        config.connect_timeout_seconds,
    )


def slot_name(config: PostgresSourceConfig, pipeline: str) -> str:
    """``source.slot``, else ``headwater_<pipeline>`` in the characters a slot name allows."""
    if config.slot:
        return config.slot
    return "headwater_" + re.sub(r"[^a-z0-9_]", "_", pipeline.lower())[:50]
