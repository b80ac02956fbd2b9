"""One flat tree of Headwater errors; every module raises these, never its own roots.

Whether a retry can help is a marker, not a branch of the tree: callers that decide to retry
(the daemon loop) test ``isinstance(exc, TransientError)``; everything else stops the pipeline.

::

    HeadwaterError
    ├── ConfigError                    (TerminalError)  bad or missing configuration; names the key
    ├── UnsupportedColumnType          (TerminalError)  a column we cannot represent: db.table.column + type
    ├── ZeroDateError                  (TerminalError)  '0000-00-00' met under ZeroDatePolicy.ERROR
    ├── PositionFormatError            (TerminalError)  a serialized Position/RestartPoint that does not load
    ├── BinlogPurged                   (TerminalError)  the resume position is gone: run `cdc bootstrap`
    ├── SourceProtocolError            (TerminalError)  the binlog stream says something we cannot read
    ├── SourceSettingsError            (TerminalError)  a server setting (binlog_format, ...) or a
    │                                                   session's choice loses changes: names it and the fix
    ├── SourceAccessDenied             (TerminalError)  authentication, permission, missing database, or
    │                                                   a server_id clash: names the source and the fix
    ├── SourceUnavailable              (TransientError) connection refused/lost: retry with backoff
    ├── StreamUnavailable              (TransientError) Kafka unreachable, a produce or commit failed (the
    │   │                                               transaction was aborted): resume from the checkpoint
    │   └── CommitStateUnknown         (TransientError) commit_transaction kept timing out: whether the
    │                                                   transaction landed is read back from the checkpoint
    ├── ProducerFenced                 (TerminalError)  another `cdc run` for the same pipeline took over
    ├── StreamAccessDenied             (TerminalError)  the broker refused us (authorization): fix the ACLs
    ├── StreamGap                      (TerminalError)  a sink's offsets are below what the topic still
    │                                                   holds (retention): bootstrap that sink again
    ├── MessageTooLarge                (TerminalError)  one change is over stream.max_message_bytes
    ├── TableHasNoKey                  (TerminalError)  a keyset-chunked snapshot of a keyless table
    └── SinkError                                       a sink could not apply a batch (nothing of it landed)
        ├── SinkUnavailable            (TransientError) the target database is unreachable, restarting, or
        │                                               aborted the transaction (deadlock): apply again
        ├── SinkSchemaError            (TerminalError)  a table shape the sink cannot follow (dropped or
        │                                               narrowed column, changed key, no primary key):
        │                                               names table and column
        ├── SinkAccessDenied           (TerminalError)  authentication, permission or missing database
        ├── WriterFenced               (TerminalError)  another writer (embedded `cdc run`) claimed the
        │                                               sink: names it; this one must stop
        └── BadRowError                (TerminalError)  a value the target cannot store (on_bad_row: stop):
                                                        names table, key and column

    TerminalError   marker: retrying the same thing fails the same way
    TransientError  marker: retrying later may succeed
"""

from __future__ import annotations

__all__ = [
    "BadRowError",
    "BinlogPurged",
    "CommitStateUnknown",
    "ConfigError",
    "HeadwaterError",
    "MessageTooLarge",
    "PositionFormatError",
    "ProducerFenced",
    "SinkAccessDenied",
    "SinkError",
    "SinkSchemaError",
    "SinkUnavailable",
    "SourceAccessDenied",
    "SourceProtocolError",
    "SourceSettingsError",
    "SourceUnavailable",
    "StreamAccessDenied",
    "StreamGap",
    "StreamUnavailable",
    "TableHasNoKey",
    "TerminalError",
    "TransientError",
    "UnsupportedColumnType",
    "WriterFenced",
    "ZeroDateError",
]


class HeadwaterError(Exception):
    """Root of every error Headwater raises on purpose."""


class TerminalError(HeadwaterError):
    """Marker: retrying cannot help; an operator must act."""


class TransientError(HeadwaterError):
    """Marker: the same call may succeed later (network, server restart)."""


class ConfigError(TerminalError):
    """Configuration is invalid; the message names the offending key."""


class UnsupportedColumnType(TerminalError):
    """A source column has a type the decoder cannot represent faithfully."""

    def __init__(self, db: str, table: str, column: str, type_name: str) -> None:
        self.db = db
        self.table = table
        self.column = column
        self.type_name = type_name
        super().__init__(f"unsupported column type {type_name!r} for {db}.{table}.{column}")


class ZeroDateError(TerminalError):
    """A zero date ('0000-00-00') was met and the policy says to stop."""

    def __init__(self, db: str, table: str, column: str, raw: str) -> None:
        self.db = db
        self.table = table
        self.column = column
        self.raw = raw
        super().__init__(f"zero date {raw!r} in {db}.{table}.{column} (zero_dates policy is ERROR)")


class PositionFormatError(TerminalError):
    """A serialized position is incomplete or malformed; we refuse to guess."""


class BinlogPurged(TerminalError):
    """The binlog needed to resume from ``position`` no longer exists on the server."""

    recovery = "run `cdc bootstrap` for the affected tables to take a new consistent snapshot"

    def __init__(self, position: str, server_message: str = "") -> None:
        self.position = position
        self.server_message = server_message
        detail = f" (server: {server_message})" if server_message else ""
        super().__init__(f"binlog for position {position} has been purged{detail}; {self.recovery}")


class SourceProtocolError(TerminalError):
    """The replication stream contained something we cannot interpret."""


class SourceSettingsError(TerminalError):
    """A source setting loses or garbles changes (binlog_format, binlog_row_image, ...); names the fix."""


class SourceAccessDenied(TerminalError):
    """The source refused us: wrong password, missing grant or database, or a clashing server_id."""


class SourceUnavailable(TransientError):
    """The source database could not be reached or dropped the connection."""


class StreamUnavailable(TransientError):
    """Kafka could not be reached, or a produce/commit failed and the open transaction was aborted.

    Nothing of the aborted transaction is visible to read_committed consumers: the daemon reconnects
    and resumes from the last committed checkpoint.
    """


class CommitStateUnknown(StreamUnavailable):
    """commit_transaction did not finish in time; the transaction may or may not have landed.

    A new producer with the same transactional.id completes or aborts it (init_transactions), and the
    checkpoint read after that says which: resuming from it neither loses nor duplicates anything.
    """


class ProducerFenced(TerminalError):
    """A newer producer with the same transactional.id fenced this one: another `cdc run` took over."""

    def __init__(self, pipeline: str, detail: str = "") -> None:
        self.pipeline = pipeline
        suffix = f" ({detail})" if detail else ""
        super().__init__(
            f"producer fenced: another `cdc run` for pipeline {pipeline!r} took over{suffix}; "
            "this process must stop"
        )


class StreamAccessDenied(TerminalError):
    """The Kafka cluster refused an operation for lack of authorization; retrying cannot help."""


class StreamGap(TerminalError):
    """A consumer would skip messages the broker no longer holds (or never showed this sink)."""


class MessageTooLarge(TerminalError):
    """One change does not fit ``stream.max_message_bytes``."""


class SinkError(HeadwaterError):
    """A sink could not apply a batch; the batch's transaction was rolled back (nothing of it landed)."""


class SinkUnavailable(SinkError, TransientError):
    """The target could not be reached or aborted the transaction; the same apply may succeed later."""


class SinkSchemaError(SinkError, TerminalError):
    """A table shape the sink cannot follow without losing data; an operator must migrate the target."""

    def __init__(self, table: str, column: str | None, reason: str) -> None:
        self.table = table
        self.column = column
        self.reason = reason
        where = f"{table}.{column}" if column else table
        super().__init__(f"sink cannot follow the schema of {where}: {reason}")


class BadRowError(SinkError, TerminalError):
    """A value the target cannot store; raised under ``on_bad_row: stop`` (else dead-lettered)."""

    def __init__(self, table: str, key: str, column: str, reason: str) -> None:
        self.table = table
        self.key = key
        self.column = column
        self.reason = reason
        super().__init__(f"bad row in {table} key {key} column {column}: {reason}")


class SinkAccessDenied(SinkError, TerminalError):
    """The target refused us: authentication, permission, or a database that does not exist."""


class WriterFenced(SinkError, TerminalError):
    """Another writer claimed the sink (a second embedded `cdc run` on the same sinks)."""


class TableHasNoKey(TerminalError):
    """A chunked (keyset) snapshot was asked of a table without a primary key."""

    def __init__(self, table: str) -> None:
        self.table = table
        super().__init__(
            f"table {table} has no primary key (nor a UNIQUE NOT NULL key), so it cannot be read in "
            "key-ordered chunks: add a primary key to it, or snapshot it whole in one consistent view "
            "(SnapshotReader.read_all), which holds one transaction open for the whole copy"
        )
