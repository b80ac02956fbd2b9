"""`cdc run` as a real process against a given MariaDB, for the source's start-up, access and TLS tests.

Embedded mode into a SQLite file: no Kafka needed, and the exit code and log are the daemon's own.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

SERVER_IDS = (62000, 62999)  # this area's replica server_ids (other tests run at the same time)
PASSWORD_ENV = "SRCCONN_SOURCE_PASSWORD"


def server_id() -> int:
    return random.randint(*SERVER_IDS)


def unique(prefix: str = "srcconn") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class SourceTarget:
    host: str
    port: int
    user: str
    server_id: int
    tables: tuple[str, ...]
    ssl: str = ""  # YAML flow mapping for source.ssl, e.g. "{ca: /x/ca.pem}"; "" = none


def write_config(tmp: Path, target: SourceTarget, heartbeat_s: float = 1.0) -> Path:
    tables = ", ".join(f"'{t}'" for t in target.tables)
    ssl = f", ssl: {target.ssl}" if target.ssl else ""
    path = tmp / "cdc.yaml"
    path.write_text(
        f"name: {unique('srcconn').replace('_', '-')}\n"
        f"source: {{host: {target.host}, port: {target.port}, user: {target.user},"
        f" password: '${{{PASSWORD_ENV}}}', server_id: {target.server_id}, tables: [{tables}],"
        f" heartbeat_seconds: {heartbeat_s}, connect_timeout_seconds: 3{ssl}}}\n"
        f"sinks: [{{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}]\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return path


def cdc_argv(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cdc.cli", "run", "-c", str(config), *extra]


def cdc_env(password: str) -> dict[str, str]:
    return {**os.environ, PASSWORD_ENV: password}


def run_until_caught_up(config: Path, password: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`cdc run --until-caught-up`; a daemon that retries forever instead of stopping hits ``timeout``."""
    return subprocess.run(
        cdc_argv(config, "--until-caught-up"),
        env=cdc_env(password),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
