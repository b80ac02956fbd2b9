"""Resuming a restart point on another server (issue 8, item 16): by its GTID state, in the next
era, and never on a server that lacks a transaction the pipeline already handled."""

from __future__ import annotations

import pytest

from cdc.core.positions import Gtid, GtidState, Position, ReadContext, RestartPoint
from cdc.sources.mariadb.failover import GtidNotOnServer, failover_plan
from cdc.sources.mariadb.gtid_tracking import GtidTracker, ResumeCheck

BEFORE = GtidState.parse("0-1-41,1-3-7")
TX = Position(Gtid(0, 1, 42), "mariadb-bin.000007", 900, 0, era=2, context=ReadContext(1, BEFORE))


def test_plan_on_a_replica_that_has_everything() -> None:
    plan = failover_plan(RestartPoint(TX, 3), 4301, GtidState.parse("0-1-50,1-3-7"), "replica:3306")
    assert plan.by_gtid and plan.era == 3 and plan.gtid_state == BEFORE and plan.server_id == 4301


@pytest.mark.parametrize(
    ("server_state", "missing"), [("0-1-41,1-3-7", "0-1-42"), ("0-1-45,1-3-6", "1-3-7"), ("0-1-45", "1-3-7")]
)
def test_a_replica_that_is_behind_is_refused(server_state: str, missing: str) -> None:
    with pytest.raises(
        GtidNotOnServer, match=f"replica:3306 \\(server_id 4301\\): it does not have transaction {missing}"
    ):
        failover_plan(RestartPoint(TX, 3), 4301, GtidState.parse(server_state), "replica:3306")


def test_a_boundary_needs_only_its_state() -> None:
    plan = failover_plan(RestartPoint(TX, 0), 4301, GtidState.parse("0-1-41,1-3-7"), "replica:3306")
    assert plan.gtid_state == BEFORE


def test_resume_by_gtid_lets_other_domains_pass_and_skips_the_named_transaction() -> None:
    check = ResumeCheck(RestartPoint(TX, 3), by_gtid=True)
    elsewhere = Position(Gtid(1, 3, 8), "mariadb-bin.000002", 4, 0, era=3)
    assert check.rows_to_skip(Gtid(1, 3, 8), elsewhere) == 0 and check.pending
    here = Position(Gtid(0, 1, 42), "mariadb-bin.000002", 77, 0, era=3)  # other coordinates
    assert check.rows_to_skip(Gtid(0, 1, 42), here) == 3 and not check.pending


def test_the_tracker_gives_each_transaction_the_state_before_it() -> None:
    tracker = GtidTracker(9, GtidState.parse("0-1-41"))
    assert tracker.begin(Gtid(0, 1, 42)) == ReadContext(9, GtidState.parse("0-1-41"))
    assert tracker.begin(Gtid(1, 3, 8)) == ReadContext(9, GtidState.parse("0-1-42"))
    assert tracker.here == ReadContext(9, GtidState.parse("0-1-42,1-3-8"))
    assert GtidTracker(None, None).begin(Gtid(0, 1, 1)) is None
