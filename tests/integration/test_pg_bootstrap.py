"""`cdc bootstrap` with a PostgreSQL source (issue 13; the bootstrap is issue 9's): key chunks read
in short REPEATABLE READ views while the stream goes on, merged by the watermark method.

A table is added to the include patterns after the pipeline started; its rows predate that. A
workload inserts, updates and deletes its rows (a version per key) while the bootstrap runs, in
chunks small enough that chunks and stream interleave many times. Afterwards the copies equal the
table row by row, and the history (Iceberg, or the Kafka topic) holds every position once, at most
one snapshot row per key, and each snapshot row holds the version the key had just before the
stream's changes that follow it: a chunk row never goes out after a newer change it missed.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from cdc.devstack.connections import PgSourceConnection, StackConnections

ROWS = 800
CHUNK = 100
WRITERS = 2  # each its own keys (id % WRITERS), so that each key's changes commit in a known order


@dataclass
class Db:
    conn: PgSourceConnection
    name: str

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.conn.admin_conninfo(self.name), autocommit=True)

    def rows(self) -> dict[int, tuple[int, str]]:
        with self.admin() as c:
            return {int(str(r[0])): (int(str(r[1])), str(r[2])) for r in c.execute("SELECT * FROM late")}


@pytest.fixture(scope="module", autouse=True)
def _daemons_warm() -> None:
    from tests.support.pgsrc_daemon import warm_up

    warm_up()


@pytest.fixture
def db(stack: StackConnections) -> Iterator[Db]:
    from tests.support.pg_databases import pg_source_database

    assert stack.pgsource is not None, "the dev stack has no pgsource cluster: run `cdc dev up`"
    with pg_source_database(stack.pgsource, "pgboot") as name:
        found = Db(stack.pgsource, name)
        with found.admin() as c:
            c.execute("CREATE PUBLICATION pgboot_pub FOR ALL TABLES")
            c.execute("CREATE TABLE base (id int PRIMARY KEY, v text)")
            c.execute("CREATE TABLE late (id int PRIMARY KEY, ver int NOT NULL, note text)")
            c.execute("ALTER TABLE late REPLICA IDENTITY FULL")  # deletes carry the version they removed
            c.execute(f"INSERT INTO late SELECT g, 1, 'seed ' || g FROM generate_series(1, {ROWS}) g")
            c.execute(f"GRANT SELECT ON base, late TO {stack.pgsource.user}")
        yield found


@dataclass
class Workload:
    """One writer: inserts, updates (ver + 1) and deletes of `late`'s keys, one key per transaction,
    remembering each key's committed (op, ver) in commit order."""

    db: Db
    versions: dict[int, int] = field(default_factory=lambda: dict.fromkeys(range(1, ROWS + 1), 1))
    expected: dict[int, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    done: int = 0

    def run(self, writer: int) -> None:
        rng = secrets.SystemRandom()
        try:
            with self.db.admin() as c:
                while not self.stop.is_set():
                    key = rng.randrange(1, ROWS + 100)
                    if key % WRITERS != writer:
                        continue
                    ver = self.versions.get(key)
                    if ver is None:
                        c.execute("INSERT INTO late VALUES (%s, 1, 'new')", (key,))
                        change = ("c", 1)
                    elif rng.random() < 0.8:
                        c.execute("UPDATE late SET ver = %s, note = 'upd' WHERE id = %s", (ver + 1, key))
                        change = ("u", ver + 1)
                    else:
                        c.execute("DELETE FROM late WHERE id = %s", (key,))
                        change = ("d", ver)
                    self.expected[key].append(change)
                    if change[0] == "d":
                        del self.versions[key]
                    else:
                        self.versions[key] = change[1]
                    self.done += 1
                    time.sleep(0.001)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def __enter__(self) -> Workload:
        self._threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(WRITERS)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(10)
        assert self.error is None, self.error


def write_config(tmp: Path, stack: StackConnections, db: Db, *, kafka: bool, exclude_late: bool) -> Path:
    pg = db.conn
    path = tmp / "pg.yaml"
    stream = (
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}',"
        " flush_max_events: 2000, flush_max_ms: 50}\n"
        if kafka
        else "sinks:\n"
        f"  - {{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}\n"
        f"  - {{type: iceberg, namespace: {db.name}, commit_rows: 5000, commit_seconds: 1,"
        f" catalog: {{type: sql, uri: 'sqlite:///{tmp / 'catalog.db'}',"
        f" warehouse: '{(tmp / 'wh').as_uri()}'}}}}\n"
        "batch: {max_events: 500, max_ms: 50, idle_flush_seconds: 1}\n"
    )
    path.write_text(
        f"name: {db.name.replace('_', '-')}\n"
        "source:\n"
        "  type: postgresql\n"
        f"  host: {pg.host}\n  port: {pg.port}\n  user: {pg.user}\n  password: {pg.password}\n"
        f"  database: {db.name}\n  slot: {db.name}\n  publication: pgboot_pub\n  heartbeat_seconds: 0.5\n"
        f"  exclude_tables: [{'public.late' if exclude_late else ''}]\n"
        f"{stream}"
        f"bootstrap: {{min_chunk_rows: {CHUNK}, max_chunk_rows: {CHUNK}, chunk_seconds: 0.05}}\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return path


def bootstrap(config: Path, *args: str) -> tuple[int, str]:
    from cdc.cli import main

    result = CliRunner().invoke(main, ["bootstrap", "-c", str(config), *args])
    return result.exit_code, result.output


def check_history(
    entries: dict[int, list[tuple[str, str, int]]], workload: Workload, rows: dict[int, Any]
) -> None:
    """Per key, (position, op, ver) as the history holds them: no position twice, at most one
    snapshot row, which holds the version just before the stream's changes that follow it; the last
    entry is the source's row."""
    positions = [p for e in entries.values() for p, _, _ in e]
    assert len(positions) == len(set(positions)), "a change is in the history twice"
    reads = 0
    for key, found in entries.items():
        found.sort()
        ops = [op for _, op, _ in found]
        assert ops.count("r") <= 1, f"{key}: read twice by the bootstrap: {found}"
        after = [(op, ver) for _, op, ver in found if op != "r"]
        expected = workload.expected.get(key, [])
        if "r" in ops:
            reads += 1
            index = ops.index("r")
            following = [(op, ver) for _, op, ver in found[index + 1 :]]
            before = expected[: len(expected) - len(following)]
            assert following == expected[len(before) :], f"{key}: {found} vs {expected}"
            held = before[-1][1] if before else 1  # the seeded row's version, if never changed
            assert not before or before[-1][0] != "d", f"{key}: a snapshot row of a deleted key: {found}"
            assert found[index][2] == held, f"{key}: the snapshot row is stale: {found} vs {expected}"
        else:
            assert after == expected[len(expected) - len(after) :], f"{key}: {after} vs {expected}"
        if found[-1][1] == "d":
            assert key not in rows, f"{key}: deleted in the history, present in the source"
        else:
            assert key in rows and rows[key][0] == found[-1][2], (
                f"{key}: {found} ends elsewhere than {rows.get(key)}"
            )
    assert not set(rows) - set(entries), f"rows the history never got: {sorted(set(rows) - set(entries))[:5]}"
    assert reads > ROWS // 2, reads  # most keys came from the bootstrap, not the stream


def iceberg_history(tmp: Path, db: Db) -> dict[int, list[tuple[str, str, int]]]:
    from sinks.iceberg import read_history
    from sinks.iceberg.history_schema import to_source_values

    catalog = {"type": "sql", "uri": f"sqlite:///{tmp / 'catalog.db'}", "warehouse": (tmp / "wh").as_uri()}
    found = read_history(catalog, db.name, "public.late")
    out: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    for r in to_source_values(found.rows, found.column_kinds):
        out[int(r["id"])].append((str(r["_position"]), str(r["_op"]), int(r["ver"])))
    return out


def kafka_history(stack: StackConnections, pipeline: str) -> dict[int, list[tuple[str, str, int]]]:
    from tests.support.kafka_replay import change_events, consume_all, pipeline_topics

    topics = [t for t in pipeline_topics(stack.kafka.bootstrap_servers, pipeline) if t.endswith(".late")]
    out: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    for e in change_events(consume_all(stack.kafka.bootstrap_servers, topics)):
        op = e.value["op"]
        image = e.value["before"] if op == "d" else e.value["after"]
        out[int(image["id"])].append((e.position, op, int(image["ver"])))
    return out


def serving_rows(tmp: Path) -> dict[int, tuple[int, str]]:
    with sqlite3.connect(tmp / "serving.db") as lite:
        return {int(r[0]): (int(r[1]), str(r[2])) for r in lite.execute("SELECT id, ver, note FROM late")}


@pytest.mark.parametrize("kafka", [False, True], ids=["embedded", "kafka"])
def test_table_added_later_is_bootstrapped_through_the_running_daemon_under_writes(
    db: Db, stack: StackConnections, tmp_path: Path, kafka: bool
) -> None:
    from tests.support.pgsrc_daemon import ForkedDaemon

    config = write_config(tmp_path, stack, db, kafka=kafka, exclude_late=True)
    daemon = ForkedDaemon(config, tmp_path / "cdc.log")
    daemon.catch_up(60)  # the pipeline starts without `late`
    write_config(tmp_path, stack, db, kafka=kafka, exclude_late=False)  # then its patterns take it in
    with Workload(db) as workload:
        marker = "INFO cdc.run: capturing " if kafka else "INFO cdc.run: applying "
        started = daemon.log_text().count(marker)
        daemon.start()
        deadline = time.monotonic() + 30
        while daemon.log_text().count(marker) <= started and time.monotonic() < deadline:
            time.sleep(0.02)  # it holds the run lock once it says which tables it captures
        code, output = bootstrap(config, "public.late")
        assert code == 0, output + daemon.log_text()[-3000:]
        assert "handed to the running `cdc run`" in output, output
        assert workload.done > 50, workload.done  # the workload ran throughout
    assert daemon.proc is not None
    daemon.proc.terminate()
    daemon.proc.join(30)
    daemon.catch_up(60)
    rows = db.rows()
    if kafka:
        entries = kafka_history(stack, db.name.replace("_", "-"))
        last = {k: max(e) for k, e in entries.items()}
        assert {k: ver for k, (_, op, ver) in last.items() if op != "d"} == {k: v[0] for k, v in rows.items()}
    else:
        assert serving_rows(tmp_path) == rows
        entries = iceberg_history(tmp_path, db)
    check_history(entries, workload, rows)


def test_bootstrap_without_a_daemon_killed_then_resumed(
    db: Db, stack: StackConnections, tmp_path: Path
) -> None:
    """No `cdc run`: `cdc bootstrap` streams and reads chunks itself; SIGKILLed after some chunks are
    committed, the same command resumes after the last of them; the sink ends equal to the table."""
    from tests.support.pgsrc_daemon import ForkedDaemon

    config = write_config(tmp_path, stack, db, kafka=False, exclude_late=False)
    ForkedDaemon(config, tmp_path / "cdc.log").catch_up(60)
    state = tmp_path / "state" / f"snapshot-state-{db.name.replace('_', '-')}.json"
    with Workload(db):
        first = ForkedDaemon(config, tmp_path / "boot1.log", command="bootstrap")
        first.start("public.late")
        deadline = time.monotonic() + 60
        while (
            '"chunks":2' not in (state.read_text() if state.exists() else "") and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        first.kill()
        assert "no `cdc run` is running, bootstrapping here" in first.log_text(), first.log_text()
        again = ForkedDaemon(config, tmp_path / "boot2.log", command="bootstrap")
        again.start("public.late")
        assert again.proc is not None
        again.proc.join(60)
        assert again.proc.exitcode == 0, again.log_text()[-3000:]
        assert "resuming after its last committed chunk" in again.log_text(), again.log_text()
    ForkedDaemon(config, tmp_path / "cdc.log").catch_up(60)
    assert serving_rows(tmp_path) == db.rows()
    entries = iceberg_history(tmp_path, db)
    assert sum(1 for e in entries.values() for _, op, _ in e if op == "r") <= ROWS + 100  # never started over


def test_sink_added_later_is_filled_from_one_view_under_writes(
    db: Db, stack: StackConnections, tmp_path: Path
) -> None:
    """Embedded mode: a sink added to a running pipeline is filled by `cdc bootstrap --sink` (the
    daemon stopped) from one view at a new temporary slot's consistent point, writes going on; the
    next `cdc run` feeds it every change after that point: it ends equal to the table."""
    from tests.support.pgsrc_daemon import ForkedDaemon

    config = write_config(tmp_path, stack, db, kafka=False, exclude_late=False)
    ForkedDaemon(config, tmp_path / "cdc.log").catch_up(60)  # the pipeline runs with its first sinks
    lines = config.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("sinks:")) + 1
    lines.insert(at, f"  - {{name: later, type: sql, url: 'sqlite:///{tmp_path / 'later.db'}'}}")
    config.write_text("\n".join(lines) + "\n")
    with Workload(db):
        filler = ForkedDaemon(config, tmp_path / "fill.log", command="bootstrap")
        filler.start("public.late", "--sink", "later")
        assert filler.proc is not None
        filler.proc.join(60)
        assert filler.proc.exitcode == 0, filler.log_text()[-3000:]
        time.sleep(0.2)
    ForkedDaemon(config, tmp_path / "cdc.log").catch_up(60)
    with sqlite3.connect(tmp_path / "later.db") as lite:
        got = {int(r[0]): (int(r[1]), str(r[2])) for r in lite.execute("SELECT id, ver, note FROM late")}
    assert got == db.rows()


def test_kafka_mode_sink_added_later_is_filled_while_capture_runs_under_writes(
    db: Db, stack: StackConnections, tmp_path: Path
) -> None:
    """Kafka mode: `cdc run` captures into Kafka and `cdc sink` feeds sink `first`; a sink added
    later is filled by `cdc bootstrap --sink later` while `cdc run` captures and writes go on. The
    fill reads one view and records the topics' offsets that view stands for; `cdc sink` then feeds
    `later` from those offsets on: both sinks end equal to the table."""
    from tests.support.pgsrc_daemon import ForkedDaemon

    config = write_config(tmp_path, stack, db, kafka=True, exclude_late=False)
    first = f"sinks:\n  - {{name: first, type: sql, url: 'sqlite:///{tmp_path / 'first.db'}'}}\n"
    config.write_text(config.read_text().replace("stream:", first + "stream:"))
    ForkedDaemon(config, tmp_path / "cdc.log").catch_up(60)  # the pipeline runs
    code, output = bootstrap(config, "public.late")  # no daemon: `late`'s rows go to Kafka directly
    assert code == 0, output
    ForkedDaemon(config, tmp_path / "sink.log", command="sink").catch_up(60)
    lines = config.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("sinks:")) + 1
    lines.insert(at, f"  - {{name: later, type: sql, url: 'sqlite:///{tmp_path / 'later.db'}'}}")
    config.write_text("\n".join(lines) + "\n")
    capture = ForkedDaemon(config, tmp_path / "cdc.log")
    with Workload(db) as workload:
        capture.start()
        deadline = time.monotonic() + 30
        while "INFO cdc.run: capturing " not in capture.log_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        filler = ForkedDaemon(config, tmp_path / "fill.log", command="bootstrap")
        filler.start("public.late", "--sink", "later")
        assert filler.proc is not None
        filler.proc.join(90)
        assert filler.proc.exitcode == 0, filler.log_text()[-3000:]
        time.sleep(0.3)
        assert workload.done > 50, workload.done
    assert capture.proc is not None
    capture.proc.terminate()
    capture.proc.join(30)
    capture.catch_up(60)
    ForkedDaemon(config, tmp_path / "sink.log", command="sink").catch_up(90)
    rows = db.rows()
    for name in ("first", "later"):
        with sqlite3.connect(tmp_path / f"{name}.db") as lite:
            got = {int(r[0]): (int(r[1]), str(r[2])) for r in lite.execute("SELECT id, ver, note FROM late")}
        assert got == rows, f"sink {name}: {len(got)} rows against the table's {len(rows)}"


def test_replace_without_a_daemon_empties_a_drifted_copy_and_refills_it_under_writes(
    db: Db, stack: StackConnections, tmp_path: Path
) -> None:
    """`cdc bootstrap public.late --replace`, no daemon: the serving copy holds a row the table never
    had and misses one; the copies are emptied before the first chunk's view and read again while
    writes go on. The serving table and the history's state end equal to the table."""
    from tests.support.pgsrc_daemon import ForkedDaemon

    config = write_config(tmp_path, stack, db, kafka=False, exclude_late=False)
    ForkedDaemon(config, tmp_path / "cdc.log").catch_up(60)
    code, output = bootstrap(config, "public.late")
    assert code == 0, output
    with sqlite3.connect(tmp_path / "serving.db") as lite:  # drift behind the pipeline's back
        lite.execute("INSERT INTO late (id, ver, note) VALUES (999999, 1, 'extra')")
        lite.execute("DELETE FROM late WHERE id = 7")
    with Workload(db) as workload:
        code, output = bootstrap(config, "public.late", "--replace")
        assert code == 0, output
        time.sleep(0.2)
        assert workload.done > 50, workload.done
    ForkedDaemon(config, tmp_path / "cdc.log").catch_up(60)
    rows = db.rows()
    assert serving_rows(tmp_path) == rows
    from sinks.iceberg import read_history
    from sinks.iceberg.history_schema import to_source_values

    catalog = {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path / 'catalog.db'}",
        "warehouse": (tmp_path / "wh").as_uri(),
    }
    found = read_history(catalog, db.name, "public.late")
    history = sorted(to_source_values(found.rows, found.column_kinds), key=lambda r: str(r["_position"]))
    assert sum(1 for r in history if r["_op"] == "t") == 1  # the one truncate of --replace
    state: dict[int, int] = {}
    for r in history:
        if r["_op"] == "t":
            state.clear()
        elif r["_op"] == "d":
            state.pop(int(r["id"]), None)
        else:
            state[int(r["id"])] = int(r["ver"])
    assert state == {k: v[0] for k, v in rows.items()}


def test_a_table_added_after_an_idle_checkpoint_is_taken_in(
    db: Db, stack: StackConnections, tmp_path: Path
) -> None:
    """Embedded: writes to a table outside the selection make an idle checkpoint, which the daemon
    acknowledges to the slot; the table is then added to the selection. The restart used to stop
    ("slot advanced past the checkpoint by something other than this pipeline": its sinks do not
    resume over a stretch observed under another selection, and the slot cannot go back); a loaded
    CI rehearsal hit it by timing in the test above. Now it reads from the slot's point, warns that
    the added table needs a bootstrap for what came before, and the bootstrap brings it in."""
    from tests.support.pgsrc_daemon import ForkedDaemon

    config = write_config(tmp_path, stack, db, kafka=False, exclude_late=True)
    daemon = ForkedDaemon(config, tmp_path / "cdc.log")
    daemon.catch_up(60)  # the pipeline starts without `late`: nothing captured yet
    with db.admin() as c:
        c.execute("UPDATE late SET ver = ver + 1 WHERE id <= 10")  # not captured: an idle stretch
    progress = tmp_path / "state" / "embedded-progress.json"
    # the first run may have recorded a stretch of its own (other tests write to the same server):
    # what counts is one the running daemon records, which also says it is past its start (a
    # SIGTERM before the daemon's handler is installed kills it: a CI rehearsal saw exit -15)
    before = progress.read_bytes() if progress.exists() else None
    daemon.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not progress.exists() or progress.read_bytes() == before):
        time.sleep(0.1)
    assert progress.exists() and progress.read_bytes() != before, daemon.log_text()[-3000:]
    time.sleep(1.0)  # the slot's acknowledgement follows the file (feedback every 0.25 s)
    assert daemon.proc is not None
    daemon.proc.terminate()
    daemon.proc.join(30)
    assert daemon.proc.exitcode == 0, daemon.log_text()[-3000:]

    write_config(tmp_path, stack, db, kafka=False, exclude_late=False)  # `late` taken in
    daemon.catch_up(60)
    assert "by this pipeline's idle checkpoint under another table selection" in daemon.log_text()
    code, output = bootstrap(config, "public.late")
    assert code == 0, output
    daemon.catch_up(60)
    with sqlite3.connect(tmp_path / "serving.db") as conn:
        got = {int(r[0]): (int(r[1]), str(r[2])) for r in conn.execute("SELECT id, ver, note FROM late")}
    assert got == db.rows()
