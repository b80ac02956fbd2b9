"""Headwater: change-data-capture from MariaDB into Kafka, Iceberg and serving databases.

Kept light on purpose: importing ``cdc`` (or the vocabulary in ``cdc.core``) must never pull in
the daemon, the stream or any database driver.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
