"""A SQLite serving database's file: its directory, and its journal mode.

The journal mode decides what a commit costs. In SQLite's default rollback journal, every commit
creates, syncs and deletes a ``-journal`` file beside the database; in WAL mode it appends to the
``-wal`` file and syncs that once. Measured applying 200k changes with one commit per batch: on a
loaded machine (load 7-8) embedded 48-52k rows/s in WAL against 23-32k with the rollback journal,
from Kafka 27-52k against 27-29k, the same CPU; on a quiet one (load 1) the same rates either way
(embedded 86-96k against 88-99k, from Kafka 70k against 63-71k). Durability is the same
(``synchronous`` stays FULL). What decides it for a serving database: readers never block the sink,
nor the sink its readers.

WAL is a property of the file, kept across connections, and it has costs for other programs: the
``-wal`` and ``-shm`` files beside the database, readers that need write access to the directory
(or those files), and no network filesystems. So ``sqlite_journal: auto`` switches only a database
file the sink creates itself; an existing file keeps the mode its owner chose, unless the config
says ``wal``. ``keep`` never changes it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import sqlalchemy as sa

from cdc.core.errors import SinkAccessDenied

__all__ = ["SqliteFile", "sqlite_file"]

log = logging.getLogger(__name__)

JOURNAL_MODES = ("auto", "wal", "keep")
SWITCH_WAIT_S = 10.0  # how long a sink waits for another one switching the same file to WAL


class SqliteFile:
    """A file-backed SQLite target, seen before the sink's engine first opens it."""

    def __init__(self, path: Path, created: bool, journal: str) -> None:
        if journal not in JOURNAL_MODES:
            raise ValueError(f"sqlite_journal must be one of {', '.join(JOURNAL_MODES)}, got {journal!r}")
        self.path = path
        self.created = created  # the file did not exist: this sink makes it
        self.journal = journal

    @property
    def wants_wal(self) -> bool:
        return self.journal == "wal" or (self.journal == "auto" and self.created)

    def set_journal(self, engine: sa.Engine, sink_name: str) -> None:
        """Switch the file to WAL if the setting asks for it (a no-op when it already is)."""
        if not self.wants_wal:
            return
        mode = self._switch_to_wal(engine)
        if str(mode).lower() != "wal":  # e.g. a filesystem without shared memory
            log.warning(
                "%s: SQLite kept journal_mode=%s for %s (WAL was refused); set sqlite_journal: keep "
                "to stop asking",
                sink_name,
                mode,
                self.path,
            )

    def _switch_to_wal(self, engine: sa.Engine) -> object:
        """``PRAGMA journal_mode=WAL``, waiting for another connection that switches the same file.
        The switch takes the file's exclusive lock, and SQLite answers a second connection that
        asks at the same moment `database is locked` at once, without calling its busy handler (to
        avoid a deadlock between two lock upgrades). Two daemons started together on a new file
        do exactly that; the loser waits and asks again (the mode is WAL by then: a no-op)."""
        deadline = time.monotonic() + SWITCH_WAIT_S
        delay = 0.01
        while True:
            try:
                with engine.connect() as conn:
                    return conn.exec_driver_sql("PRAGMA journal_mode=WAL").scalar()
            except sa.exc.OperationalError as exc:
                if "locked" not in str(exc.orig).lower() or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)


def sqlite_file(url: str | sa.URL, journal: str, sink_name: str) -> SqliteFile | None:
    """The file of a ``sqlite:///path`` url, its directory made; None for other databases and for
    in-memory SQLite."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # as a state dir would be
    except OSError as exc:
        raise SinkAccessDenied(
            f"{sink_name} cannot create the directory of its database file ({exc.strerror}); "
            "make it writable by this user (or change the url)"
        ) from exc
    return SqliteFile(path, created=not path.exists(), journal=journal)
