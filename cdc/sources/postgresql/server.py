"""The PostgreSQL server as the source needs it: checks, the slot and the publication, the catalog.

Each problem is named for a DBA: ``wal_level``, the REPLICATION privilege, the slot, the publication.
A slot that is gone or invalidated after the pipeline started is terminal: the changes it held are
lost, and only a bootstrap of the tables makes the copies whole again.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from cdc.core.errors import SourceAccessDenied, SourceSettingsError, SourceUnavailable, StreamGap
from cdc.sources.postgresql.pgoutput import HEARTBEAT_PREFIX, CatalogColumns

__all__ = ["RECOVER", "PgSettings", "SlotState", "connect", "ensure_publication", "ensure_slot", "slot_state"]


# how every lost-changes error ends: only a fresh start with a bootstrap makes the copies whole
RECOVER = (
    "to recover, start the pipeline afresh with a bootstrap: a new pipeline `name` (or its "
    "checkpoints deleted) and `bootstrap: {mode: initial}`, which creates a new slot and reads "
    "every table again"
)


@dataclass(frozen=True)
class PgSettings:
    host: str
    port: int
    user: str
    password: str
    database: str
    connect_timeout_s: float = 10.0

    def __repr__(self) -> str:  # never the password
        return f"PgSettings({self.user}@{self.host}:{self.port}/{self.database})"

    def dsn(self) -> str:
        # libpq key=value form; the password is quoted for spaces and quotes
        password = self.password.replace("\\", "\\\\").replace("'", "\\'")
        return (
            f"host={self.host} port={self.port} user={self.user} password='{password}' "
            f"dbname={self.database} connect_timeout={max(1, int(self.connect_timeout_s))}"
        )


def connect(settings: PgSettings) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(settings.dsn(), autocommit=True)
    except psycopg.OperationalError as exc:
        text = str(exc)
        if "password authentication failed" in text or "does not exist" in text or "permission" in text:
            raise SourceAccessDenied(f"PostgreSQL source {settings!r} refused us: {text.strip()}") from None
        raise SourceUnavailable(f"PostgreSQL source {settings!r} unreachable: {text.strip()}") from None


def check_server(conn: psycopg.Connection[tuple[object, ...]], settings: PgSettings) -> None:
    row = conn.execute(
        "SELECT current_setting('wal_level'), r.rolreplication OR r.rolsuper FROM pg_roles r"
        " WHERE r.rolname = current_user"
    ).fetchone()
    assert row is not None
    wal_level, replication = row
    if wal_level != "logical":
        raise SourceSettingsError(
            f"PostgreSQL {settings.host}:{settings.port} has wal_level={wal_level}; logical decoding "
            f"needs wal_level=logical (set it in postgresql.conf and restart the server)"
        )
    if not replication:
        raise SourceAccessDenied(
            f"role {settings.user!r} lacks the REPLICATION privilege: ALTER ROLE {settings.user} REPLICATION"
        )


@dataclass(frozen=True)
class SlotState:
    exists: bool
    confirmed_flush_lsn: int = 0
    lost: bool = False  # invalidated (wal_status 'lost'): the WAL it needed was removed
    plugin: str = ""
    database: str = ""


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def slot_state(conn: psycopg.Connection[tuple[object, ...]], slot: str) -> SlotState:
    row = conn.execute(
        "SELECT confirmed_flush_lsn::text, wal_status, plugin, database FROM pg_replication_slots"
        " WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        return SlotState(False)
    flush, wal_status, plugin, database = row
    return SlotState(
        True, parse_lsn(str(flush)) if flush else 0, wal_status == "lost", str(plugin), str(database)
    )


def ensure_slot(
    conn: psycopg.Connection[tuple[object, ...]], slot: str, create: bool, first_start: bool
) -> SlotState:
    """The slot, created on the pipeline's first start when allowed; a missing or invalidated slot
    after that is terminal (its changes are gone)."""
    state = slot_state(conn, slot)
    if state.exists and state.lost:
        raise StreamGap(
            f"replication slot {slot!r} was invalidated (the WAL it needed was removed, see "
            f"max_slot_wal_keep_size): changes were lost. Drop it "
            f"(SELECT pg_drop_replication_slot('{slot}')); {RECOVER}"
        )
    if state.exists:
        if state.plugin != "pgoutput":
            raise SourceSettingsError(f"replication slot {slot!r} uses plugin {state.plugin!r}, not pgoutput")
        return state
    if not first_start:
        raise StreamGap(
            f"replication slot {slot!r} does not exist any more: the changes since the last checkpoint "
            f"are lost; {RECOVER}"
        )
    if not create:
        raise SourceSettingsError(
            f"replication slot {slot!r} does not exist; create it: "
            f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput') (or set source.create_slot)"
        )
    try:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise SourceAccessDenied(f"cannot create replication slot {slot!r}: {exc}".strip()) from None
    except psycopg.errors.DuplicateObject:
        pass  # another process won the race
    return slot_state(conn, slot)


def ensure_publication(conn: psycopg.Connection[tuple[object, ...]], publication: str, create: bool) -> None:
    row = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
    if row is not None:
        return
    ddl = f"CREATE PUBLICATION {publication} FOR ALL TABLES"
    if not create:
        raise SourceSettingsError(
            f"publication {publication!r} does not exist; a superuser creates it: {ddl}"
        )
    try:
        conn.execute(sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(sql.Identifier(publication)))
    except psycopg.errors.InsufficientPrivilege:
        raise SourceAccessDenied(
            f"publication {publication!r} does not exist and role cannot create it; a superuser runs: {ddl} "
            f"(or FOR TABLE <the captured tables>)"
        ) from None
    except psycopg.errors.DuplicateObject:
        pass


def current_lsn(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return parse_lsn(str(row[0]))


def emit_heartbeat(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """A non-transactional logical message; its LSN comes back through the slot as a restart point."""
    row = conn.execute("SELECT pg_logical_emit_message(false, %s, '')::text", (HEARTBEAT_PREFIX,)).fetchone()
    assert row is not None
    return parse_lsn(str(row[0]))


def catalog_columns(conn: psycopg.Connection[tuple[object, ...]], relid: int) -> CatalogColumns | None:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " coalesce(a.attnum = ANY (i.indkey), false)"
        " FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary"
        " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (relid,),
    ).fetchall()
    if not rows:
        return None
    pk_rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n) ON true"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.n",
        (relid,),
    ).fetchall()
    return CatalogColumns(
        {str(r[0]): str(r[1]) for r in rows},
        frozenset(str(r[0]) for r in rows if r[2]),
        tuple(str(r[0]) for r in pk_rows),
    )


def captured_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%%' ORDER BY 1, 2"
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]
