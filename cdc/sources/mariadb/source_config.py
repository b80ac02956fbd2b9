"""A MariaDB source as the config describes it: its connection settings, and its tables' sizes.

One place for the daemon, the snapshotter (`cdc bootstrap --sink`) and the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdc.config.models import MariaDbSourceConfig
from cdc.core.schemas import TableRef
from cdc.sources.mariadb.connection import control
from cdc.sources.mariadb.connection_settings import ConnectionSettings, TlsSettings

__all__ = ["connection_settings", "table_row_estimates"]


def connection_settings(config: MariaDbSourceConfig) -> ConnectionSettings:
    ssl = config.ssl
    tls = TlsSettings(ca=ssl.ca, cert=ssl.cert, key=ssl.key, verify=ssl.verify) if ssl else None
    return ConnectionSettings(
        config.host,
        config.port,
        config.user,
        config.password.get_secret_value(),
        connect_timeout_s=config.connect_timeout_seconds,
        tls=tls,
    )


def table_row_estimates(settings: ConnectionSettings, tables: Sequence[TableRef]) -> dict[TableRef, int]:
    """The server's estimate of each table's rows (information_schema), for progress and ETAs only."""
    estimates: dict[TableRef, int] = {}
    with control(settings, "estimating the tables' sizes") as cur:
        for ref in tables:
            cur.execute(
                "SELECT table_rows FROM information_schema.tables WHERE table_schema = %s"
                " AND table_name = %s",
                (ref.db, ref.table),
            )
            row = cur.fetchone()
            estimates[ref] = int(row[0] or 0) if row else 0
    return estimates
