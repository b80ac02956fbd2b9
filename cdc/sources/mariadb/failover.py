"""Resuming on another server: a restart point written on one server, read on a promoted replica.

Binlog coordinates name a place in one server's binlog only. A restart point records the server it
was read from (``@@server_id``: every server of a replication topology has its own) and the GTID
state at its transaction's start. On that server a reader resumes by coordinates, as always. On
another, it asks for that GTID state, finds the partly handled transaction by its GTID, and emits
positions in the next era, which sort after every position of the old server.

The new server must hold every transaction the restart point counts as handled: a replica that is
behind (or whose binlogs no longer reach back that far) would otherwise make the stream skip ahead
silently. That is refused, naming the GTID, the server and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import pymysql.cursors

from cdc.core.errors import PositionFormatError, TerminalError
from cdc.core.positions import Gtid, GtidState, RestartPoint

__all__ = ["GtidNotOnServer", "ReadPlan", "failover_plan", "gtid_state_at", "purged_message"]


class GtidNotOnServer(TerminalError):
    """The server to resume on lacks a transaction the pipeline has already handled."""


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """How a reader reads from one server: its identity, the GTID state where reading starts (None:
    unknown, positions carry no context), the era of its positions, and whether the restart point
    came from another server (its transaction is then found by GTID)."""

    server_id: int
    gtid_state: GtidState | None
    era: int
    by_gtid: bool = False


def gtid_state_at(cur: pymysql.cursors.Cursor, file: str, offset: int) -> GtidState | None:
    """The server's GTID state at (file, offset); None when it cannot say (a file it no longer has)."""
    cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, offset))
    row = cur.fetchone()
    if row is None or row[0] is None:
        return None
    try:
        return GtidState.parse(str(row[0]))
    except PositionFormatError:
        return None


def failover_plan(restart: RestartPoint, server_id: int, server_state: GtidState, server: str) -> ReadPlan:
    """The plan for resuming ``restart`` (read on another server) on ``server``, whose
    ``@@gtid_binlog_pos`` is ``server_state``; GtidNotOnServer if it lacks what was handled."""
    context = restart.context
    assert context is not None and context.server_id != server_id
    needed: list[Gtid] = list(context.gtid_state.gtids)
    if not restart.is_boundary:
        # partly or wholly handled (its rows are skipped): the newest, named first
        needed.insert(0, restart.transaction.gtid)
    for gtid in needed:
        if not server_state.covers(gtid):
            raise GtidNotOnServer(
                f"cannot resume on {server} (server_id {server_id}): it does not have transaction "
                f"{gtid}, which the pipeline already handled from server_id {context.server_id} "
                f"(restart point {restart.to_string()}); its @@gtid_binlog_pos is "
                f"{str(server_state) or '(empty)'}. Wait until it has replicated {gtid} "
                "(SELECT @@gtid_slave_pos on it), or point source at a server that has; resuming "
                "there would skip changes"
            )
    return ReadPlan(server_id, context.gtid_state, restart.transaction.era + 1, by_gtid=True)


def purged_message(restart: RestartPoint, server: str, server_id: int, detail: str) -> str:
    context = restart.context
    assert context is not None
    return (
        f"cannot resume on {server} (server_id {server_id}) from GTID state {context.gtid_state} "
        f"(restart point {restart.to_string()}, read on server_id {context.server_id}): its binary "
        f"logs no longer hold the transactions after it ({detail}); run `cdc bootstrap` for the "
        "captured tables to take a new consistent snapshot"
    )
