"""SQL serving sink: the current state of each source table in PostgreSQL, MariaDB/MySQL or SQLite.

One target table per source table (name from the ``table`` format, ``{table}`` and ``{db}``), keyed by
the source primary key. Each batch is collapsed per table and key in position order (the last change
wins; a truncate wipes the table, and rows below it are dropped: see ``truncate_fence``), then written in one
transaction together with the pipeline's AppliedState in ``_headwater_positions``. Events at or before
the stored position are skipped, so re-delivery changes nothing. On PostgreSQL, tables with many rows
in a batch go through COPY into a temporary table and one ``INSERT ... SELECT ... ON CONFLICT``.

Type mapping (values read back equal the source values exactly)::

    source (Arrow)        PostgreSQL          MariaDB/MySQL               SQLite
    int8..int64, uint8..  smallint/int/bigint same width, UNSIGNED kept   INTEGER
    uint64                NUMERIC(20,0)       BIGINT UNSIGNED             BLOB affinity: INTEGER up to
                                                                          2^63-1, above as 20-digit TEXT
    float, double         double precision    DOUBLE                      REAL
    decimal(p,s)          NUMERIC(p,s)        DECIMAL(p,s)                TEXT (canonical decimal string)
    varchar(n)/char(n)    VARCHAR(n)          VARCHAR(n) utf8mb4 bin      TEXT
    other text, enum,set, TEXT                LONGTEXT utf8mb4_nopad_bin  TEXT
      json (kept as text: jsonb would reorder keys)  (VARCHAR(768) in a key)
    varbinary(n)/binary   BYTEA               VARBINARY(n)                BLOB
    blob, geometry        BYTEA               LONGBLOB (VARBINARY(3072) in a key)  BLOB
    date                  DATE                DATE                        TEXT (ISO)
    datetime(n)           TIMESTAMP(6)        DATETIME(6)                 TEXT (ISO, microseconds)
    timestamp(n)          TIMESTAMPTZ(6)      DATETIME(6) holding UTC     TEXT (UTC)
    time(n)               INTERVAL            TIME(6)                     INTEGER microseconds
    bool                  BOOLEAN             BOOL (TINYINT)              BOOLEAN

Identifiers: every table, column and schema name is quoted in every statement (``collation``,
``user``, ``order``, mixed case, spaces and dashes are all fine), the sink's own tables included.

Primary keys: a source table without a primary key takes the columns of ``key_columns`` (per
"db.table") as its key in the serving table; rows that share a key there collapse into one (the last
change wins; deleting one of several identical source rows deletes the row). A keyless table without
``key_columns`` is refused: the sink logs an ERROR naming it and the two fixes (``key_columns`` or
``exclude_tables``) at the first batch of each run that has its changes, skips its changes, and the
other tables and sinks go on. Non-key target columns are all nullable.

Truncates: a TRUNCATE needs no schema (after a restart it may be the table's first event and come
with an empty one): it empties the target table of its table ref; a table the sink never held has
nothing to empty. Truncates are fenced by position (the rule is in ``sinks.contract``): the position
of the last truncate applied per table is stored in the positions row with the data, so the other
partitions' copies change nothing and rows older than it, arriving later, are skipped.

Schema changes (``schema_changes``, default ``apply``; see ``schema_sync``): a new version of a
source table is diffed against the latest version the target follows, recorded in
``_headwater_tables``, so the outcome is the same with or without a restart in between. Under
``apply``: added columns are added (rows written before keep NULL: the source's default for existing
rows is not in the binlog), dropped columns are dropped, renamed columns renamed, widened types
widened (SQLite: only where the stored type is unchanged), a narrowed type keeps the wider target
column. Two changes are held back under either policy, with an error naming table and change, until
``cdc schema accept -c CONFIG db.table`` lets them through at the next run: a type change to another
family (the column is then replaced; rows already there hold NULL in it) and a primary-key change
(the key is then replaced; not on SQLite). Under ``stop`` every change that needs DDL is held back
the same way (``_headwater_schema_changes`` holds what is pending). Rows of an older version that
arrive after a newer one (Kafka, several partitions) land through the rename chain; values of
dropped columns are ignored. A shape the source goes back to (ADD then DROP of one column) is a change
like any other: rows of a known version that come after the latest version's rows are followed.
One ambiguity comes from the schema diff itself: one ALTER that drops a column and adds one of the
same type at the same ordinal reads as a rename (the values are carried over).

Writers: in embedded mode the daemon claims the sink (``claim_writer``): a writer epoch stored in
``_headwater_positions``; an apply by an older writer raises ``WriterFenced`` naming the newer one
and commits nothing. `cdc sink` processes never claim. Access errors (authentication, permission,
missing database; SQLite: an unwritable path) raise ``SinkAccessDenied`` naming the sink by its
masked URL: terminal, never retried.

Bad rows: a value the target cannot store exactly (a NUL character in PostgreSQL text, a lone
surrogate, text or bytes longer than the target column) follows ``on_bad_row``: ``stop`` (default)
raises :class:`BadRowError` naming table, key and column and writes nothing of the batch;
``dead_letter`` writes the event (source and target table, key JSON, op, position, column, reason,
row payload JSON) to ``_headwater_dead_letters`` in the batch's transaction and applies the rest.
"""

from __future__ import annotations

from cdc.config.models import SqlSinkConfig
from sinks.sql.sql_sink import SqlSink, SqlSinkSettings
from sinks.sql.type_mapping import Dialect

__all__ = ["Dialect", "SqlSink", "SqlSinkSettings", "create_sql_sink"]


def create_sql_sink(config: SqlSinkConfig, pipeline: str) -> SqlSink:
    """The sink for one ``sinks[i]`` entry of ``type: sql`` (not yet opened)."""
    return SqlSink(
        SqlSinkSettings(
            url=str(config.url),
            pipeline=pipeline,
            table_format=config.table,
            schema=config.schema_name,
            on_bad_row=config.on_bad_row,
            copy_threshold_rows=config.copy_threshold_rows,
            key_columns={table: tuple(columns) for table, columns in config.key_columns.items()},
            schema_changes=config.schema_changes,
            sqlite_journal=config.sqlite_journal,
            defer_commit=True,  # `cdc sink` and `cdc run` flush before anything relies on a batch
        )
    )
