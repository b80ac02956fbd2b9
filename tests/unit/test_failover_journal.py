"""Embedded mode across a failover (issue 8, item 16): the journal gives each sink's applied position
its GTID state, and a sink skips, by GTID, the next era's records it already holds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cdc.core.errors import ConfigError, TerminalError
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, GtidState, Position, ReadContext, RestartPoint
from cdc.core.schemas import TableRef
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


def test_a_sink_ahead_keeps_what_it_holds_across_a_second_restart_on_the_new_server(tmp_path: Path) -> None:
    """After the failover, the daemon resumes from the sink that is behind. Batches that hold only
    what the sink ahead already has must not move that sink's position into the new era: its
    position there would say less than it holds, and the next restart, on the same (new) server,
    resumes it by coordinates without skipping by GTID: what it held comes twice. The embedded
    failover SIGKILL test failed so under load (a SIGTERM before the sink behind caught up)."""
    old = [e for s in range(1, 7) for e in tx(s, 2, era=0, server=OLD, offset=100 * s)]
    journal = GtidJournal(tmp_path, lambda: OLD)
    ahead, behind = MemorySink("ahead"), MemorySink("behind")
    a, b = JournaledSink(ahead, journal), JournaledSink(behind, journal)
    for s in range(0, 12, 2):  # one batch per transaction; "behind" stops after tx 2 (a crash)
        batch = SinkBatch(tuple(old[s : s + 2]), AppliedState(old[s + 1].position))
        a.apply(batch)
        if s < 4:
            b.apply(batch)

    def attempt() -> tuple[JournaledSink, JournaledSink]:  # a daemon start on the promoted replica
        journal = GtidJournal(tmp_path, lambda: NEW)
        a, b = JournaledSink(ahead, journal), JournaledSink(behind, journal)
        assert a.applied() is not None and b.applied() is not None
        return a, b

    new = [e for s in range(3, 9) for e in tx(s, 2, era=1, server=NEW, offset=5000 + 100 * s)]
    a, b = attempt()
    first = SinkBatch(tuple(new[:2]), AppliedState(new[1].position))  # tx 3: "ahead" holds it
    for sink in (a, b):
        sink.apply(first)
    a, b = attempt()  # stopped (SIGTERM) and started again, before tx 4-6 came by
    rest = SinkBatch(tuple(new[2:]), AppliedState(new[-1].position))
    for sink in (a, b):
        sink.apply(rest)
    want = [s * 10 + r for s in range(1, 9) for r in range(2)]
    assert behind.keys == want
    assert ahead.keys == want, "the sink ahead got changes it held a second time"


class HistorySink(MemorySink):
    """Like an Iceberg history: each table commits before the sink's progress, so after a crash a
    table can hold more than applied() says (``table_positions``)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.tables: dict[TableRef, Position] = {}

    def apply(self, batch: SinkBatch) -> None:
        super().apply(batch)
        for record in batch.records:
            if isinstance(record, ChangeEvent):
                self.tables[record.schema.ref] = batch.state.position

    def table_positions(self) -> dict[TableRef, Position]:
        return dict(self.tables)


OTHER = replace(SCHEMA, ref=TableRef("db", "u"))


def tx2(seq: int, *, era: int, server: int, offset: int) -> list[ChangeEvent]:
    """Transaction 0-1-seq: one row of table t (key seq*10) and one of table u (key seq*10+1)."""
    t, u = tx(seq, 2, era=era, server=server, offset=offset)
    return [t, replace(u, schema=OTHER)]


def test_a_table_ahead_of_its_sink_keeps_what_it_holds_across_a_second_restart(tmp_path: Path) -> None:
    """A history sink crashed after table t committed through tx 5 but before its progress (tx 2).
    After the failover, batches with rows of table u move the sink into the new era while t still
    holds more: the next restart on the same (new) server must still skip t's held rows by GTID,
    and the journal must keep t's entry for it."""
    old = [tx2(s, era=0, server=OLD, offset=100 * s) for s in range(1, 7)]
    journal = GtidJournal(tmp_path, lambda: OLD)
    for events in old:
        journal.record(events[-1].position)
    sink = HistorySink("history")
    sink.keys = [k for s in range(1, 6) for k in (s * 10, s * 10 + 1) if s <= 2 or k % 10 == 0]
    sink.position = old[1][-1].position  # progress: tx 2
    sink.tables = {SCHEMA.ref: old[4][-1].position, OTHER.ref: old[1][-1].position}  # t: tx 5

    new = [tx2(s, era=1, server=NEW, offset=5000 + 100 * s) for s in range(3, 9)]
    a = JournaledSink(sink, GtidJournal(tmp_path, lambda: NEW))
    assert a.applied() is not None
    for events in new[:2]:  # tx 3 and 4: t's rows held, u's applied
        a.apply(SinkBatch(tuple(events), AppliedState(events[-1].position)))
        a.flush()
    a = JournaledSink(sink, GtidJournal(tmp_path, lambda: NEW))  # stopped and started again
    assert a.applied() is not None
    rest = [e for events in new[2:] for e in events]  # tx 5 to 8
    a.apply(SinkBatch(tuple(rest), AppliedState(rest[-1].position)))
    got = sorted(sink.keys)
    assert got == sorted(k for s in range(1, 9) for k in (s * 10, s * 10 + 1)), f"t or u twice or lost: {got}"
