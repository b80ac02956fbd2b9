"""`cdc dev up|down|status`: the local stack of real services as plain processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cdc.devstack.process import DevStackError
from cdc.devstack.settings import ALL_SERVICES, ServiceName, StackSettings
from cdc.devstack.stack import DevStack

_DEFAULTS = StackSettings.__dataclass_fields__


def _default(name: str) -> Any:
    return _DEFAULTS[name].default


def _stack_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--dir",
            "state_dir",
            type=click.Path(file_okay=False, path_type=Path),
            envvar="HEADWATER_DEVSTACK_DIR",
            default=".devstack",
            show_default=True,
            help="State directory (data, logs, pidfiles, connections.json). Env: HEADWATER_DEVSTACK_DIR.",
        ),
        click.option("--mariadb-port", type=int, default=_default("mariadb_port"), show_default=True),
        click.option("--kafka-port", type=int, default=_default("kafka_port"), show_default=True),
        click.option(
            "--kafka-controller-port",
            type=int,
            default=_default("kafka_controller_port"),
            show_default=True,
        ),
        click.option("--postgres-port", type=int, default=_default("postgres_port"), show_default=True),
        click.option("--pgsource-port", type=int, default=_default("pgsource_port"), show_default=True),
        click.option(
            "--services",
            default=",".join(s.value for s in ALL_SERVICES),
            show_default=True,
            help="Comma-separated subset of the services.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(
    state_dir: Path,
    mariadb_port: int,
    kafka_port: int,
    kafka_controller_port: int,
    postgres_port: int,
    pgsource_port: int,
    services: str,
) -> StackSettings:
    try:
        chosen = tuple(ServiceName(name.strip()) for name in services.split(",") if name.strip())
    except ValueError as exc:
        names = ", ".join(s.value for s in ALL_SERVICES)
        raise click.BadParameter(f"{exc}; choose from {names}", param_hint="--services") from None
    try:
        return StackSettings(
            state_dir=state_dir,
            mariadb_port=mariadb_port,
            kafka_port=kafka_port,
            kafka_controller_port=kafka_controller_port,
            postgres_port=postgres_port,
            pgsource_port=pgsource_port,
            services=chosen,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.group("dev")
def dev() -> None:
    """Local MariaDB (binlog on), Apache Kafka (KRaft), PostgreSQL (serving) and a PostgreSQL source
    cluster (wal_level=logical) as plain processes."""


@dev.command("up")
@_stack_options
def up(**options: Any) -> None:
    """Start the stack (idempotent) and wait until every service answers a query."""
    stack = DevStack(_settings(**options))
    try:
        report = stack.up()
    except DevStackError as exc:
        raise click.ClickException(str(exc)) from None
    for name, (outcome, pid) in report.started.items():
        click.echo(f"{name.value:<9} {outcome.value} (pid {pid})")
    conn = report.connections
    click.echo(f"connection settings: {report.connections_file}")
    if ServiceName.MARIADB in stack.settings.services:
        click.echo(
            f"  mariadb   {conn.mariadb.host}:{conn.mariadb.port} user {conn.mariadb.user} "
            f"(root user {conn.mariadb.root_user}), server_id {conn.mariadb.server_id}"
        )
    if ServiceName.KAFKA in stack.settings.services:
        click.echo(f"  kafka     bootstrap.servers={conn.kafka.bootstrap_servers}")
    if ServiceName.POSTGRES in stack.settings.services:
        click.echo(
            f"  postgres  {conn.postgres.host}:{conn.postgres.port} user {conn.postgres.user} "
            f"database {conn.postgres.database}"
        )
    if ServiceName.PGSOURCE in stack.settings.services and conn.pgsource is not None:
        click.echo(
            f"  pgsource  {conn.pgsource.host}:{conn.pgsource.port} user {conn.pgsource.user} "
            f"(superuser {conn.pgsource.admin_user}) database {conn.pgsource.database}, wal_level=logical"
        )
    click.echo("  (passwords are in the connection settings file)")


@dev.command("down")
@_stack_options
def down(**options: Any) -> None:
    """Stop the stack's processes (graceful, then forced); data is kept."""
    stack = DevStack(_settings(**options))
    try:
        report = stack.down()
    except DevStackError as exc:
        raise click.ClickException(str(exc)) from None
    for name, outcome in report.stopped.items():
        click.echo(f"{name.value:<9} {outcome.value}")


@dev.command("status")
@_stack_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool, **options: Any) -> None:
    """Show each service's state, PID, ports, data directory and log file.

    Exit status 0 when every service runs, 1 otherwise.
    """
    stack = DevStack(_settings(**options))
    statuses = stack.status()
    if as_json:
        rows = [
            {
                "service": s.name.value,
                "state": s.state.value,
                "pid": s.pid,
                "ports": list(s.ports),
                "data_dir": str(s.data_dir),
                "log_file": str(s.log_file),
            }
            for s in statuses
        ]
        click.echo(json.dumps({"state_dir": str(stack.settings.state_dir), "services": rows}, indent=2))
    else:
        click.echo(f"state dir: {stack.settings.state_dir}")
        click.echo(f"{'SERVICE':<9} {'STATE':<8} {'PID':>7}  {'PORTS':<12} DATA DIR")
        for s in statuses:
            pid = str(s.pid) if s.pid is not None else "-"
            ports = ",".join(map(str, s.ports))
            click.echo(f"{s.name.value:<9} {s.state.value:<8} {pid:>7}  {ports:<12} {s.data_dir}")
    if any(s.pid is None for s in statuses):
        raise SystemExit(1)
