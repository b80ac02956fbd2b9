"""Throwaway TLS material for tests and local trials: a self-signed CA, a server and a client certificate.

Made with the `openssl` command line (always on a Debian machine with MariaDB), EC P-256 keys so that
generating a set takes milliseconds, not seconds. The server certificate is valid for 127.0.0.1 and
localhost, the only addresses the dev stack listens on, so clients can verify host names too.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cdc.devstack.process import DevStackError, find_binary

__all__ = ["TlsMaterial", "make_tls_material"]

_DAYS = "2"  # tests only: short-lived on purpose


@dataclass(frozen=True)
class TlsMaterial:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    openssl = find_binary("openssl", "openssl")
    result = subprocess.run(
        [str(openssl), *args], cwd=cwd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise DevStackError(f"openssl {args[0]} failed (exit {result.returncode}): {result.stderr.strip()}")


def _key(path: Path, cwd: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path), cwd=cwd)
    path.chmod(0o600)


def _signed(name: str, subject: str, extensions: str, ca: tuple[Path, Path], directory: Path) -> None:
    key, csr, cert, ext = (
        directory / f"{name}{suffix}" for suffix in ("-key.pem", ".csr", "-cert.pem", ".ext")
    )
    _key(key, directory)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr), cwd=directory)
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-days", _DAYS, "-sha256", "-extfile", str(ext), "-out", str(cert), cwd=directory,
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


def make_tls_material(directory: Path, ca_name: str = "Headwater test CA") -> TlsMaterial:
    """A fresh CA and, signed by it, a server certificate (127.0.0.1, localhost) and a client one."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca-key.pem", directory / "ca-cert.pem"
    _key(ca_key, directory)
    _openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-subj", f"/CN={ca_name}", "-days", _DAYS, "-sha256",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", str(ca_cert), cwd=directory,
    )  # fmt: skip
    _signed(
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        (ca_cert, ca_key),
        directory,
    )
    _signed("client", "/CN=headwater-cdc", "extendedKeyUsage=clientAuth\n", (ca_cert, ca_key), directory)
    return TlsMaterial(
        ca_cert=ca_cert,
        ca_key=ca_key,
        server_cert=directory / "server-cert.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client-cert.pem",
        client_key=directory / "client-key.pem",
    )
