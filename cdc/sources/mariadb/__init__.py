"""MariaDB binlog source: a replica connection, a per-table compiled row decoder, ordered records."""

from cdc.sources.mariadb.connection_settings import ConnectionSettings, TlsSettings
from cdc.sources.mariadb.reader import MariaDbBinlogReader, ReaderConfig, StartAt
from cdc.sources.mariadb.stream_decoder import StreamDecoder
from cdc.sources.mariadb.table_filter import TableFilter
from cdc.sources.mariadb.value_codecs import ZeroDatePolicy

__all__ = [
    "ConnectionSettings",
    "MariaDbBinlogReader",
    "ReaderConfig",
    "StartAt",
    "StreamDecoder",
    "TableFilter",
    "TlsSettings",
    "ZeroDatePolicy",
]
