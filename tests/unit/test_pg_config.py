"""`source: {type: postgresql}`: typed, validated with errors naming the key, refused by MariaDB-only code."""

from __future__ import annotations

import pytest

from cdc.config import PostgresSourceConfig, parse_config, secret_values
from cdc.core.errors import ConfigError

PASSWORD = "pg-s3cr3t!"
PG = """
name: shop
source:
  type: postgresql
  host: 127.0.0.1
  port: 5434
  user: source
  password: ${PGPASS}
  database: shop
  tables: ["public.*"]
stream: {type: kafka, bootstrap_servers: "127.0.0.1:9092"}
"""


def test_postgresql_source_is_typed() -> None:
    config = parse_config(PG, {"PGPASS": PASSWORD})
    source = config.any_source
    assert isinstance(source, PostgresSourceConfig)
    assert (source.database, source.publication, source.slot, source.create_slot) == (
        "shop",
        "headwater",
        None,
        True,
    )
    assert PASSWORD in secret_values(config)
    assert PASSWORD not in repr(config)


def test_mariadb_only_commands_name_the_key() -> None:
    config = parse_config(PG, {"PGPASS": PASSWORD})
    with pytest.raises(ConfigError, match=r"source\.type: postgresql"):
        _ = config.source


def test_errors_name_the_source_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(PG.replace("port: 5434", "port: abc"), {"PGPASS": PASSWORD})
    assert "source.port: expected an integer" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config(PG.replace("  database: shop\n", ""), {"PGPASS": PASSWORD})
    assert "source.database" in str(info.value)
