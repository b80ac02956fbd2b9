"""Config loading: each kind of mistake gets a message naming the key and the problem, never a secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cdc.config import (
    IcebergSinkConfig,
    PipelineConfig,
    SqlSinkConfig,
    ZeroDatePolicy,
    load_config,
    parse_config,
    secret_values,
)
from cdc.core.errors import ConfigError

PASSWORD = "s3cr3t-Pa55word!"
ENV = {"CDC_SOURCE_PASSWORD": PASSWORD, "PWD": "/srv/headwater"}
REPO = Path(__file__).resolve().parents[2]

VALID = """
name: wiki
source:
  type: mariadb
  host: 127.0.0.1
  port: 3306
  user: cdc
  password: ${CDC_SOURCE_PASSWORD}
  server_id: 5401
  tables: ["wikidb.*"]
stream:
  type: kafka
  bootstrap_servers: 127.0.0.1:9092
sinks:
  - type: sql
    url: postgresql+psycopg://postgres:pgpass@127.0.0.1:5432/serving
    table: "{table}"
  - type: iceberg
    catalog: {type: sql, uri: "sqlite:///state/catalog.db", warehouse: "file:///abs/state/warehouse"}
    namespace: wiki
state_dir: ./state
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, ENV if env is None else env)
    message = str(info.value)
    assert PASSWORD not in message
    return message


def test_valid_config_is_typed() -> None:
    config = parse_config(VALID, ENV)
    assert isinstance(config, PipelineConfig)
    assert config.name == "wiki"
    assert config.source.port == 3306
    assert config.source.password.get_secret_value() == PASSWORD
    assert config.source.zero_dates is ZeroDatePolicy.NULL
    assert config.stream is not None and config.stream.bootstrap_servers == "127.0.0.1:9092"
    assert not config.embedded
    assert isinstance(config.sinks[0], SqlSinkConfig)
    assert isinstance(config.sinks[1], IcebergSinkConfig)
    assert config.sinks[1].namespace == "wiki"
    assert config.state_dir == Path("state")


def test_repr_and_dump_hide_secrets() -> None:
    config = parse_config(VALID, ENV)
    shown = repr(config) + str(config) + config.model_dump_json()
    assert PASSWORD not in shown
    assert "pgpass" not in repr(config)
    assert secret_values(config) == {PASSWORD, "pgpass"}


def test_embedded_when_no_stream() -> None:
    text = VALID.replace("stream:\n  type: kafka\n  bootstrap_servers: 127.0.0.1:9092\n", "")
    assert parse_config(text, ENV).embedded


def test_wrong_type_names_key_and_value() -> None:
    message = problems_of(VALID.replace("port: 3306", "port: abc"))
    assert "source.port: expected an integer, got 'abc'" in message


def test_wrong_type_in_list_item() -> None:
    message = problems_of(VALID.replace("namespace: wiki", "namespace: [a, b]"))
    assert "sinks[1].namespace: expected a string" in message


def test_out_of_range() -> None:
    message = problems_of(VALID.replace("port: 3306", "port: 70000"))
    assert "source.port: must be <= 65535, got 70000" in message


def test_missing_key() -> None:
    message = problems_of(VALID.replace("  server_id: 5401\n", ""))
    assert "source.server_id: is required" in message


def test_missing_sink_key() -> None:
    message = problems_of(VALID.replace("    namespace: wiki\n", ""))
    assert "sinks[1].namespace: is required" in message


def test_unknown_key_with_suggestion() -> None:
    message = problems_of(VALID.replace("port: 3306", "prot: 3306"))
    assert "source.prot: unknown key 'prot'; did you mean 'port'?" in message


def test_unknown_top_level_key() -> None:
    message = problems_of(VALID + "sate_dir: x\n")
    assert "sate_dir: unknown key 'sate_dir'; did you mean 'state_dir'?" in message


def test_unknown_key_in_sink() -> None:
    message = problems_of(VALID.replace('table: "{table}"', 'tabel: "{table}"'))
    assert "sinks[0].tabel: unknown key 'tabel'; did you mean 'table'?" in message


def test_unknown_sink_type() -> None:
    message = problems_of(VALID.replace("- type: sql", "- type: sqll"))
    assert "sinks[0].type: unknown sink type 'sqll'; did you mean 'sql'?" in message


def test_unset_env_var() -> None:
    message = problems_of(VALID, env={})
    assert "source.password: environment variable CDC_SOURCE_PASSWORD is not set" in message


def test_env_default_and_escape() -> None:
    text = VALID.replace("${CDC_SOURCE_PASSWORD}", "${NOPE:-fallback}").replace(
        "namespace: wiki", "namespace: $${literal}"
    )
    config = parse_config(text, {})
    assert config.source.password.get_secret_value() == "fallback"
    sink = config.sinks[1]
    assert isinstance(sink, IcebergSinkConfig) and sink.namespace == "${literal}"


def test_env_into_integer() -> None:
    config = parse_config(VALID.replace("port: 3306", "port: ${PORT}"), {**ENV, "PORT": "3310"})
    assert config.source.port == 3310


def test_malformed_yaml_names_line_and_never_shows_the_line() -> None:
    text = VALID.replace("password: ${CDC_SOURCE_PASSWORD}", f'password: "{PASSWORD}\n  bad: [')
    message = problems_of(text)
    assert "malformed YAML at line" in message


def test_all_problems_reported_at_once() -> None:
    text = VALID.replace("port: 3306", "port: abc").replace("  server_id: 5401\n", "")
    message = problems_of(text)
    assert "2 problems" in message
    assert "source.port" in message and "source.server_id" in message


def test_bad_password_type_never_echoes_value() -> None:
    # a password that YAML parses as a list must not be printed back
    message = problems_of(VALID.replace("${CDC_SOURCE_PASSWORD}", f"[{PASSWORD}]"))
    assert "source.password: expected a string" in message


def test_a_secret_is_masked_wherever_it_appears() -> None:
    # the password reaches a non-secret key too; its value is masked there as well
    env = {**ENV, "PORT": PASSWORD}
    message = problems_of(
        VALID.replace("port: 3306", "port: ${PORT}").replace("user: cdc", "user: ${CDC_SOURCE_PASSWORD}x"),
        env,
    )
    assert "source.port: expected an integer" in message and "got" not in message


def test_bad_table_pattern() -> None:
    message = problems_of(VALID.replace('tables: ["wikidb.*"]', 'tables: ["wikidb"]'))
    assert "source.tables" in message and "'db.table'" in message


def test_bad_name() -> None:
    message = problems_of(VALID.replace("name: wiki", "name: 'my pipeline'"))
    assert "name: must start with a letter" in message


def test_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_top_level_not_a_mapping() -> None:
    assert "expected a mapping" in problems_of("- a\n- b\n")


@pytest.mark.parametrize("name", ["embedded.yaml", "kafka.yaml"])
def test_example_configs_are_valid(name: str) -> None:
    config = load_config(REPO / "configs" / name, {**ENV, "CDC_SERVING_PASSWORD": "x", "PWD": str(REPO)})
    assert config.name == "wiki"
    assert config.embedded == (name == "embedded.yaml")


def test_secrets_never_reach_logs(caplog: pytest.LogCaptureFixture) -> None:
    from cdc.logs import RedactingFilter, register_secrets

    config = parse_config(VALID, ENV)
    register_secrets(secret_values(config))
    logger = logging.getLogger("headwater.test")
    caplog.handler.addFilter(RedactingFilter())
    logger.warning("connecting with %s", config.source.password.get_secret_value())
    try:
        raise RuntimeError(f"auth failed for {PASSWORD}")
    except RuntimeError:
        logger.exception("failed")
    assert PASSWORD not in caplog.text
    assert "***" in caplog.text
