"""How to reach a MariaDB source: address, account, timeouts and TLS. No I/O but reading PEM files."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cdc.core.errors import ConfigError

__all__ = ["ConnectionSettings", "TlsSettings"]


@dataclass(frozen=True)
class TlsSettings:
    """TLS for every connection to the source (``source.ssl``)."""

    ca: Path | None = None  # PEM CA bundle the server certificate must chain to; None: the system's
    cert: Path | None = None  # client certificate (PEM), for accounts that REQUIRE X509
    key: Path | None = None  # its private key (PEM); None: inside `cert`
    verify: bool = True  # check the certificate chain and that the host name is in it

    def context(self) -> ssl.SSLContext:
        """A client context; unreadable files are configuration errors that name the key."""
        if self.verify:
            try:
                context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"source.ssl.ca: cannot load {self.ca}: {exc}") from exc
            # Python 3.13 makes the strict X.509 checks the default; many servers' certificates
            # (MariaDB's own generated ones among them) fail them without being insecure.
            context.verify_flags &= ~ssl.VERIFY_X509_STRICT
        else:
            # Encrypt only: the user said so explicitly (source.ssl.verify: false).
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert is not None:
            try:
                context.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"source.ssl.cert/source.ssl.key: cannot load {self.cert}"
                    f"{f' with key {self.key}' if self.key else ''}: {exc}"
                ) from exc
        elif self.key is not None:
            raise ConfigError("source.ssl.key is set without source.ssl.cert")
        return context


@dataclass(frozen=True)
class ConnectionSettings:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    connect_timeout_s: float = 10.0
    tls: TlsSettings | None = None  # None: plain TCP, as source.ssl absent documents

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def describe(self) -> str:
        """How errors name the source: address and user, never the password."""
        return f"MariaDB source {self.address} (user '{self.user}')"
