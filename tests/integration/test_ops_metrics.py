"""The daemons' metrics and health endpoints, scraped over HTTP from real `cdc run` / `cdc sink`
processes under a known workload (issue 12, "Operations").

- Embedded `cdc run`, and `cdc run` + `cdc sink` through Kafka: the row counters by table and op
  equal the workload's counts; the lag gauges are there; /healthz and /readyz answer 200.
- A source that cannot be reached (a closed port): /readyz 503 while the daemon backs off, /healthz
  200 (the process is fine: it retries), the error counted by kind; the JSON log lines parse and
  never show the password.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cdc.devstack.connections import StackConnections

SERVER_IDS = (4700, 4799)  # this area's replica ids
SEED_ROWS = 37
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The endpoint's samples: (name, labels) -> value."""
    status, text = _get(port, "/metrics")
    assert status == 200, text
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        out[(match["name"], labels)] = float(match["value"])
    return out


def events(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[tuple[str, str], int]:
    found = {}
    for (name, labels), value in samples.items():
        if name == "headwater_number_of_events_seen_total":
            d = dict(labels)
            found[(d["table"], d["op"])] = int(value)
    return found


def _value(port: int, name: str) -> float | None:
    return next((v for (n, _), v in scrape(port).items() if n == name), None)


def _by_label(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, label: str
) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


def _names(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> set[str]:
    return {name for name, _ in samples}


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()  # type: ignore[operator]
        if last is True:
            return
        time.sleep(0.3)
    raise AssertionError(f"{what}: last seen {last!r}")


def _config(
    tmp: Path,
    stack: StackConnections,
    db: str,
    *,
    kafka: bool,
    port: int,
    source_port: int = 0,
    bootstrap: str = "never",
) -> Path:
    m = stack.mariadb
    name = f"ops-{uuid.uuid4().hex[:8]}"
    stream = (
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}',"
        " flush_max_events: 2000, flush_max_ms: 100}\n"
        if kafka
        else ""
    )
    path = tmp / f"cdc-{port}.yaml"
    path.write_text(
        f"name: {name}\n"
        f"source: {{type: mariadb, host: {m.host}, port: {source_port or m.port}, user: {m.user},"
        f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {random.randint(*SERVER_IDS)},"
        f" tables: ['{db}.*'], heartbeat_seconds: 1, connect_timeout_seconds: 2}}\n"
        f"{stream}"
        "sinks:\n"
        f"  - {{type: sql, url: 'sqlite:///{tmp / 'serving.db'}'}}\n"
        "batch: {max_events: 2000, max_ms: 100, idle_flush_seconds: 1}\n"
        f"metrics: {{port: {port}}}\n"
        f"bootstrap: {{mode: {bootstrap}}}\n"
        f"state_dir: {tmp / 'state'}\n"
    )
    return path


@contextmanager
def daemon(
    config: Path, command: str, log: Path, password: str, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "CDC_SOURCE_PASSWORD": password}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc.cli", *extra, command, "-c", str(config)],
            stdout=out,
            stderr=out,
            env=env,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def database(stack: StackConnections) -> Iterator[str]:
    db = f"ops_{uuid.uuid4().hex[:8]}"
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.accounts (id INT PRIMARY KEY, balance INT NOT NULL)")
        cur.execute(f"CREATE TABLE {db}.notes (id INT PRIMARY KEY, body VARCHAR(50))")
        # rows from before the first start: `bootstrap: initial` reads them (op r)
        cur.execute(f"CREATE TABLE {db}.seed (id INT PRIMARY KEY)")
        cur.executemany(f"INSERT INTO {db}.seed VALUES (%s)", [(i,) for i in range(SEED_ROWS)])
    yield db
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {db}")


def workload(stack: StackConnections, db: str) -> dict[tuple[str, str], int]:
    """A known mix of changes; returns the expected row changes by (table, op)."""
    rng = random.Random()
    inserts_a, inserts_n = rng.randint(40, 80), rng.randint(10, 30)
    updates, deletes = rng.randint(5, 20), rng.randint(1, 5)
    with stack.mariadb.connect_root(database=db, autocommit=True) as conn, conn.cursor() as cur:
        for i in range(inserts_a):  # single-row transactions
            cur.execute("INSERT INTO accounts VALUES (%s, %s)", (i, i))
        cur.execute("BEGIN")  # one multi-row transaction
        cur.executemany("INSERT INTO notes VALUES (%s, %s)", [(i, f"n{i}") for i in range(inserts_n)])
        cur.execute("COMMIT")
        cur.execute("UPDATE accounts SET balance = balance + 1 WHERE id < %s", (updates,))
        cur.execute("DELETE FROM notes WHERE id < %s", (deletes,))
    return {
        (f"{db}.accounts", "c"): inserts_a,
        (f"{db}.notes", "c"): inserts_n,
        (f"{db}.accounts", "u"): updates,
        (f"{db}.notes", "d"): deletes,
    }


def _ready(port: int) -> bool | int:
    try:
        status, _ = _get(port, "/readyz")
    except OSError:
        return False
    return status == 200 or status


def _check_counts(port: int, expected: dict[tuple[str, str], int]) -> None:
    _wait(lambda: events(scrape(port)) == expected or events(scrape(port)), 60, f"counters on :{port}")


LAG_GAUGES = {
    "headwater_seconds_behind_source",
    "headwater_seconds_since_last_event",
    "headwater_seconds_since_last_commit",
}


def test_embedded_run_metrics_match_the_workload(
    stack: StackConnections, tmp_path: Path, database: str
) -> None:
    port = _free_port()
    config = _config(tmp_path, stack, database, kafka=False, port=port, bootstrap="initial")
    password = stack.mariadb.password
    with daemon(config, "run", tmp_path / "run.log", password):
        _wait(lambda: _ready(port), 60, "embedded cdc run ready")
        assert _get(port, "/healthz")[0] == 200
        # the first start bootstraps every table; the workload waits for it, so its rows are
        # counted as changes (c, u, d), never as snapshot reads
        _wait(lambda: _value(port, "headwater_remaining_table_count") == 0.0, 60, "bootstrap done")
        scanned = _by_label(scrape(port), "headwater_rows_scanned", "table")
        assert scanned == {f"{database}.seed": SEED_ROWS, f"{database}.accounts": 0, f"{database}.notes": 0}
        assert _value(port, "headwater_snapshot_running") == 0.0
        expected = workload(stack, database) | {(f"{database}.seed", "r"): SEED_ROWS}
        _check_counts(port, expected)
        # the binlog bytes lag comes from a poller every 15 s
        gauges = LAG_GAUGES | {"headwater_bytes_behind_source"}
        _wait(lambda: gauges <= _names(scrape(port)) or _names(scrape(port)), 40, "lag gauges")
        samples = scrape(port)
        transactions = next(
            v for (n, _), v in samples.items() if n == "headwater_number_of_committed_transactions_total"
        )
        # one per single-row insert, the notes transaction, the update, the delete
        assert transactions >= expected[(f"{database}.accounts", "c")] + 3
        depth = {n: v for (n, _), v in samples.items() if n.startswith("headwater_queue_")}
        assert depth["headwater_queue_total_capacity"] >= depth["headwater_queue_remaining_capacity"] >= 0
        behind = next(v for (n, _), v in samples.items() if n == "headwater_seconds_behind_source")
        assert 0 <= behind < 60
        assert _get(port, "/readyz")[0] == 200
        # the last reconciliation's verdict per table and copy, once `cdc reconcile` has run
        assert not _by_label(scrape(port), "headwater_reconciliation_verdict", "table")
        done = subprocess.run(
            [sys.executable, "-m", "cdc.cli", "reconcile", "-c", str(config)],
            env={**os.environ, "CDC_SOURCE_PASSWORD": password},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        verdicts = {
            (d["table"], d["sink"], d["verdict"])
            for (n, labels), v in scrape(port).items()
            if n == "headwater_reconciliation_verdict" and v == 1.0
            for d in [dict(labels)]
        }
        assert verdicts == {(f"{database}.{t}", "sql", "match") for t in ("accounts", "notes", "seed")}
    log = (tmp_path / "run.log").read_text()
    assert f"metrics on http://127.0.0.1:{port}/metrics" in log


def test_kafka_run_and_sink_metrics_match_the_workload(
    stack: StackConnections, tmp_path: Path, database: str
) -> None:
    run_port, sink_port = _free_port(), _free_port()
    run_config = _config(tmp_path, stack, database, kafka=True, port=run_port)
    # the same pipeline, another metrics port for `cdc sink`
    sink_config = tmp_path / "sink.yaml"
    sink_config.write_text(run_config.read_text().replace(f"port: {run_port}}}", f"port: {sink_port}}}"))
    password = stack.mariadb.password
    with (
        daemon(run_config, "run", tmp_path / "run.log", password),
        daemon(sink_config, "sink", tmp_path / "sink.log", password),
    ):
        _wait(lambda: _ready(run_port), 60, "cdc run ready")
        _wait(lambda: _ready(sink_port), 60, "cdc sink ready")
        expected = workload(stack, database)
        _check_counts(run_port, expected)
        _check_counts(sink_port, expected)
        for port in (run_port, sink_port):
            assert _get(port, "/healthz")[0] == 200
            assert _names(scrape(port)) >= LAG_GAUGES
        ready = {dict(labels)["daemon"]: v for port in (run_port, sink_port)
                 for (n, labels), v in scrape(port).items() if n == "headwater_ready"}  # fmt: skip
        assert ready == {"capture": 1.0, "sink": 1.0}


def test_unreachable_source_is_not_ready_and_logs_json(stack: StackConnections, tmp_path: Path) -> None:
    port, closed = _free_port(), _free_port()  # nothing listens on `closed`
    config = _config(tmp_path, stack, "ops_none", kafka=False, port=port, source_port=closed)
    log = tmp_path / "run.log"
    with daemon(config, "run", log, stack.mariadb.password, "--log-format", "json"):
        _wait(lambda: _ready(port) == 503, 30, "readiness 503")
        assert _get(port, "/healthz")[0] == 200  # alive: it backs off and retries
        _wait(
            lambda: any(n == "headwater_errors_total" and v >= 1 for (n, _), v in scrape(port).items()),
            30,
            "an error counted",
        )
        errors = {
            dict(labels)["kind"] for (n, labels), _ in scrape(port).items() if n == "headwater_errors_total"
        }
        assert errors, errors
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]
    assert {"ts", "level", "logger", "message"} <= set(parsed[0])
    assert any(str(closed) in p["message"] for p in parsed), lines[-5:]
    assert stack.mariadb.password not in log.read_text()
