"""The source side of `cdc bootstrap --sink`: connection settings from the config, size estimates."""

from __future__ import annotations

from collections.abc import Sequence

from cdc.config.models import MariaDbSourceConfig
from cdc.core.schemas import TableRef
from cdc.sources.mariadb import ConnectionSettings, TlsSettings

__all__ = ["estimated_rows", "source_settings"]


def source_settings(source: MariaDbSourceConfig) -> ConnectionSettings:
    ssl = source.ssl
    tls = TlsSettings(ca=ssl.ca, cert=ssl.cert, key=ssl.key, verify=ssl.verify) if ssl else None
    return ConnectionSettings(
        source.host,
        source.port,
        source.user,
        source.password.get_secret_value(),
        connect_timeout_s=source.connect_timeout_seconds,
        tls=tls,
    )


def estimated_rows(settings: ConnectionSettings, tables: Sequence[TableRef]) -> int:
    """The server's estimate of the tables' rows (information_schema), for the ETA only."""
    from cdc.sources.mariadb.connection import control

    total = 0
    with control(settings, "estimating the tables' sizes") as cur:
        for ref in tables:
            cur.execute(
                "SELECT table_rows FROM information_schema.tables WHERE table_schema = %s"
                " AND table_name = %s",
                (ref.db, ref.table),
            )
            row = cur.fetchone()
            total += int(row[0] or 0) if row else 0
    return total
