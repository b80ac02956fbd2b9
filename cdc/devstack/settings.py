"""Settings of one dev stack: where its state lives, its ports, its dev passwords.

Two stacks with different state directories and ports run side by side (the lifecycle test does).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path

from cdc.devstack.connections import default_state_dir

DEFAULT_KAFKA_VERSION = "4.1.1"


class ServiceName(enum.StrEnum):
    MARIADB = "mariadb"
    KAFKA = "kafka"
    POSTGRES = "postgres"
    PGSOURCE = "pgsource"  # a second PostgreSQL cluster: the PostgreSQL *source* (wal_level=logical)


ALL_SERVICES: tuple[ServiceName, ...] = (
    ServiceName.MARIADB,
    ServiceName.KAFKA,
    ServiceName.POSTGRES,
    ServiceName.PGSOURCE,
)

# Fixed development credentials: the stack listens on loopback only and is for demos and tests.
MARIADB_CDC_USER = "cdc"
MARIADB_CDC_PASSWORD = "cdc-dev-password"
MARIADB_ROOT_PASSWORD = "root-dev-password"
MARIADB_SERVER_ID = 1
POSTGRES_USER = "postgres"
POSTGRES_PASSWORD = "postgres-dev-password"
POSTGRES_DATABASE = "serving"
# the PostgreSQL source cluster: a least-privilege role with REPLICATION the daemon connects as
PGSOURCE_USER = "source"
PGSOURCE_PASSWORD = "source-dev-password"
PGSOURCE_DATABASE = "source"

LOOPBACK = "127.0.0.1"


def default_cache_dir() -> Path:
    """Downloaded artifacts (Kafka jars): HEADWATER_CACHE_DIR, else ~/.cache/headwater."""
    env = os.environ.get("HEADWATER_CACHE_DIR")
    if env:
        return Path(env).resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return (base / "headwater").resolve()


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path = field(default_factory=default_state_dir)
    mariadb_port: int = 3307
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    postgres_port: int = 5433
    pgsource_port: int = 5434
    services: tuple[ServiceName, ...] = ALL_SERVICES
    kafka_version: str = DEFAULT_KAFKA_VERSION
    kafka_heap: str = "512m"
    cache_dir: Path = field(default_factory=default_cache_dir)
    start_timeout: float = 120.0
    stop_timeout: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).resolve())
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).resolve())
        ports = [
            self.mariadb_port,
            self.kafka_port,
            self.kafka_controller_port,
            self.postgres_port,
            self.pgsource_port,
        ]
        if len(set(ports)) != len(ports):
            raise ValueError(f"dev stack ports must differ, got {ports}")
        # Keep the canonical order whatever order the caller gave.
        wanted = {ServiceName(s) for s in self.services}
        object.__setattr__(self, "services", tuple(s for s in ALL_SERVICES if s in wanted))

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pids_dir(self) -> Path:
        return self.state_dir / "pids"
