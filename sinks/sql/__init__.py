"""SQL serving sink: the current state of each source table in PostgreSQL, MariaDB/MySQL or SQLite.

One target table per source table (name from the ``table`` format, ``{table}`` and ``{db}``), keyed by
the source primary key. Each batch is collapsed per table and key in position order (the last change
wins; a truncate wipes the table and everything before it in the batch), then written in one
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

Primary keys: a source table without a primary key stops with :class:`SinkSchemaError` naming it
(a serving table without a key cannot take updates and deletes faithfully). Non-key target columns
are all nullable.

Schema changes: a row event whose schema version the target has not followed yet is compared with
the table's recorded shape (``_headwater_tables``). A new column is added (nullable; rows written
before it keep NULL: the source's default for existing rows is not in the binlog, reconciliation
repairs it); a widening (int -> bigint, unsigned int -> bigint, decimal(p,s) -> decimal(p+k,s+j)
keeping the integer digits, varchar(n) -> varchar(m>=n) or text) is applied with ALTER TABLE where the
dialect allows (SQLite: only where the stored type is unchanged). Anything else - a dropped column, a
narrowed or changed type, a changed primary key, two source tables mapped to one target - stops with
:class:`SinkSchemaError` naming the table and the column before anything of the batch is written:
never silent data loss.

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
        )
    )
