"""docker-compose.yml must stay in step with the plain-process dev stack (cdc/devstack/*.py).

The expected values come from the Python modules, so changing one side without the other fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc.devstack.kafka import GC_FLAG, SINGLE_NODE_SETTINGS
from cdc.devstack.mariadb import BINLOG_SETTINGS, CDC_PRIVILEGES
from cdc.devstack.postgres import SERVER_SETTINGS
from cdc.devstack.settings import (
    DEFAULT_KAFKA_VERSION,
    MARIADB_CDC_PASSWORD,
    MARIADB_CDC_USER,
    MARIADB_ROOT_PASSWORD,
    POSTGRES_DATABASE,
    POSTGRES_PASSWORD,
    POSTGRES_USER,
    StackSettings,
)

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
DEFAULTS = StackSettings()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    service = compose["services"][name]
    assert isinstance(service, dict)
    return service


def test_the_same_three_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {s.value for s in DEFAULTS.services}


def test_ports_are_the_dev_stack_ports_on_loopback(compose: dict[str, Any]) -> None:
    assert _service(compose, "mariadb")["ports"] == [f"127.0.0.1:{DEFAULTS.mariadb_port}:3306"]
    assert _service(compose, "kafka")["ports"] == [f"127.0.0.1:{DEFAULTS.kafka_port}:9092"]
    assert _service(compose, "postgres")["ports"] == [f"127.0.0.1:{DEFAULTS.postgres_port}:5432"]


def test_mariadb_binlog_flags(compose: dict[str, Any]) -> None:
    mariadb = _service(compose, "mariadb")
    assert mariadb["image"] == "mariadb:10.11"
    flags = set(mariadb["command"])
    assert {f"--{key}={value}" for key, value in BINLOG_SETTINGS.items()} <= flags
    assert not any(flag.startswith("--expire-logs-days") for flag in flags)
    assert mariadb["environment"]["MARIADB_ROOT_PASSWORD"] == MARIADB_ROOT_PASSWORD


def test_mariadb_cdc_user_and_grants(compose: dict[str, Any]) -> None:
    config_name = _service(compose, "mariadb")["configs"][0]["source"]
    sql = compose["configs"][config_name]["content"]
    user = f"'{MARIADB_CDC_USER}'@'%'"
    assert f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY '{MARIADB_CDC_PASSWORD}';" in sql
    grant = re.search(r"GRANT (.+) ON \*\.\* TO '(\w+)'@'%';", sql)
    assert grant is not None
    assert [p.strip() for p in grant.group(1).split(",")] == list(CDC_PRIVILEGES)
    assert grant.group(2) == MARIADB_CDC_USER


def test_kafka_single_node_settings(compose: dict[str, Any]) -> None:
    kafka = _service(compose, "kafka")
    assert kafka["image"] == f"apache/kafka:{DEFAULT_KAFKA_VERSION}"
    env = kafka["environment"]
    for key, value in SINGLE_NODE_SETTINGS.items():
        assert env["KAFKA_" + key.upper().replace(".", "_")] == value, key
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://127.0.0.1:{DEFAULTS.kafka_port}"
    assert f"-Xmx{DEFAULTS.kafka_heap}" in env["KAFKA_HEAP_OPTS"].split()


def test_postgres_settings(compose: dict[str, Any]) -> None:
    postgres = _service(compose, "postgres")
    assert postgres["image"] == "postgres:15"
    env = postgres["environment"]
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        POSTGRES_USER,
        POSTGRES_PASSWORD,
        POSTGRES_DATABASE,
    )
    command = postgres["command"]
    for key, value in SERVER_SETTINGS.items():
        assert f"{key}={value}" in command


def test_kafka_runs_the_dev_stacks_collector(compose: dict[str, Any]) -> None:
    # The image's start script picks G1 unless KAFKA_JVM_PERFORMANCE_OPTS says otherwise; the image
    # passes that variable to the JVM, not into server.properties.
    env = _service(compose, "kafka")["environment"]
    flags = env["KAFKA_JVM_PERFORMANCE_OPTS"].split()
    assert GC_FLAG in flags
    assert not any("G1" in flag for flag in flags)
