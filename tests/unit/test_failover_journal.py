"""Embedded mode across a failover (issue 8, item 16): the journal gives each sink's applied position
its GTID state, and a sink skips, by GTID, the next era's records it already holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.core.errors import ConfigError, TerminalError
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, GtidState, Position, ReadContext, RestartPoint
from cdc.daemon.embedded_resume import PipelineIdentity, StartFile
from cdc.daemon.gtid_journal import GtidJournal, JournaledSink
from sinks.contract import AppliedState, SinkBatch
from tests.unit.test_daemon_capture import SCHEMA
from tests.unit.test_daemon_embedded import MemorySink

OLD, NEW = 1, 2  # server ids


def tx(seq: int, rows: int, *, era: int, server: int, offset: int) -> list[ChangeEvent]:
    """Transaction 0-1-seq (written on the old primary), as read on ``server`` in ``era``."""
    context = ReadContext(server, GtidState((Gtid(0, 1, seq - 1),)))
    start = Position(Gtid(0, 1, seq), "bin.000001", offset, 0, era, context)
    return [
        ChangeEvent(
            Op.CREATE, SCHEMA, (seq * 10 + r,), None, (seq * 10 + r,), start.at_row(r), 0, str(start.gtid)
        )
        for r in range(rows)
    ]


def test_a_sink_ahead_skips_by_gtid_what_it_holds(tmp_path: Path) -> None:
    old = [e for s in range(1, 5) for e in tx(s, 3, era=0, server=OLD, offset=100 * s)]
    journal = GtidJournal(tmp_path, lambda: NEW)
    ahead, behind = MemorySink("ahead"), MemorySink("behind")
    a, b = JournaledSink(ahead, journal), JournaledSink(behind, journal)
    # both get tx 1-2 and the first row of tx 3; only "ahead" gets the rest of tx 3 (a crash)
    first, second = old[:7], old[7:9]
    for sink in (a, b):
        sink.apply(SinkBatch(tuple(first), AppliedState(first[-1].position)))
    a.apply(SinkBatch(tuple(second), AppliedState(second[-1].position)))

    # the next attempt, on the promoted replica: sinks reopened, journal read back from disk
    journal = GtidJournal(tmp_path, lambda: NEW)
    a, b = JournaledSink(ahead, journal), JournaledSink(behind, journal)
    held_a, held_b = a.applied(), b.applied()
    assert held_a is not None and held_b is not None
    assert held_b.position.context == ReadContext(OLD, GtidState((Gtid(0, 1, 2),)))  # before tx 3
    assert held_a.position.context == held_b.position.context
    # the daemon resumes at the lowest (tx 3, row 1) by GTID state 0-1-2: era 1 from the replica
    new = [e for s in range(3, 7) for e in tx(s, 3, era=1, server=NEW, offset=5000 + 100 * s)]
    for sink in (a, b):
        sink.apply(SinkBatch(tuple(new[1:]), AppliedState(new[-1].position)))  # the decoder skips row 0
    want = [s * 10 + r for s in range(1, 7) for r in range(3)]
    assert ahead.keys == want and behind.keys == want


def test_a_position_without_its_gtid_state_on_another_server_stops(tmp_path: Path) -> None:
    journal = GtidJournal(tmp_path, lambda: NEW)
    recorded = tx(1, 1, era=0, server=OLD, offset=100)
    journal.record(recorded[0].position)
    lost = MemorySink("lost")
    lost.position = Position(Gtid(0, 1, 7), "bin.000001", 900, 0)  # no entry for it
    with pytest.raises(TerminalError, match="server_id 1; the source is now server_id 2"):
        JournaledSink(lost, GtidJournal(tmp_path, lambda: NEW)).applied()
    # on the server it was read from, it is resumed by coordinates, as before
    assert JournaledSink(lost, GtidJournal(tmp_path, lambda: OLD)).applied() == AppliedState(lost.position)


def test_entries_below_every_sink_are_dropped(tmp_path: Path) -> None:
    journal = GtidJournal(tmp_path, lambda: OLD)
    sinks = [JournaledSink(MemorySink(n), journal) for n in ("x", "y")]
    for s in range(1, 6):
        events = tx(s, 1, era=0, server=OLD, offset=100 * s)
        for sink in sinks:
            sink.apply(SinkBatch(tuple(events), AppliedState(events[-1].position)))
            sink.flush()
    assert len((tmp_path / "embedded-gtids.json").read_text().splitlines()) <= 2


def test_a_torn_last_line_is_a_batch_no_sink_got(tmp_path: Path) -> None:
    journal = GtidJournal(tmp_path, lambda: OLD)
    events = tx(1, 1, era=0, server=OLD, offset=100)
    journal.record(events[0].position)
    with (tmp_path / "embedded-gtids.json").open("a") as out:
        out.write('["mdb1:00000')  # a crash in the middle of the next append
    again = GtidJournal(tmp_path, lambda: OLD)
    assert again.context_of(events[0].position) == events[0].position.context


def test_the_start_file_follows_the_pipeline_to_another_server(tmp_path: Path) -> None:
    old = PipelineIdentity("wiki", "db-a:3306", OLD)
    new = PipelineIdentity("wiki", "db-b:3306", NEW)
    with_state = RestartPoint(tx(1, 1, era=0, server=OLD, offset=100)[0].position)
    StartFile(tmp_path).write(with_state, old)
    assert StartFile(tmp_path).read(new, stamp=True) == with_state
    assert StartFile(tmp_path).read(new) == with_state  # stamped: no longer another server's
    # written by an older version (no GTID state): it cannot follow, and says so
    StartFile(tmp_path).write(RestartPoint(Position(Gtid(0, 1, 1), "bin.000001", 100)), old)
    with pytest.raises(ConfigError, match="records no GTID state"):
        StartFile(tmp_path).read(new)
    # another pipeline's state stays refused, as before
    with pytest.raises(ConfigError, match="belongs to another pipeline"):
        StartFile(tmp_path).read(PipelineIdentity("other", "db-a:3306", OLD))


def test_a_second_failover_while_a_sink_lags_stops(tmp_path: Path) -> None:
    journal = GtidJournal(tmp_path, lambda: 3)
    lagging = tx(1, 1, era=0, server=OLD, offset=100)[0].position
    journal.record(lagging)
    journal.record(tx(2, 1, era=1, server=NEW, offset=700)[0].position)  # another sink moved on
    sink = MemorySink("behind")
    sink.position = lagging
    with pytest.raises(TerminalError, match="a second failover while a sink lags"):
        JournaledSink(sink, GtidJournal(tmp_path, lambda: 3)).applied()
    # on the server of the later era it resumes (era 1 there is that server's)
    assert JournaledSink(sink, GtidJournal(tmp_path, lambda: NEW)).applied() is not None
