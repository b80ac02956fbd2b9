"""Retention of the Iceberg history, end to end against the real MariaDB (embedded `cdc run`).

Old changes are made with a SESSION ``timestamp`` in the past (the binlog carries it as the commit
time). `cdc maintain` with ``history_retention_days`` must delete them and remove them from storage:
no file under the warehouse may hold an expired row's value afterwards (Parquet decoded, values and
column statistics; Avro manifests decompressed; every file's raw bytes), the files that held only
expired rows are gone, kept rows are untouched, a table without retention keeps everything, and a
daemon restarted after retention applies each change exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner
from pyiceberg.avro.file import AvroFile
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.io.pyarrow import PyArrowFileIO

from cdc.cli import main
from cdc.devstack.connections import StackConnections
from sinks.iceberg.catalogs import open_catalog

DAY = 86_400


def _sql(stack: StackConnections, *statements: str) -> None:
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _ok(args: list[str], env: dict[str, str]) -> str:
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output + str(result.exception)
    return result.output


def _avro_blocks(path: Path) -> bytes:
    """An Avro file's data blocks, decompressed (manifests are deflate-compressed by default)."""
    out = b""
    with AvroFile(PyArrowFileIO().new_input(str(path))) as avro:  # type: ignore[var-annotated]
        codec = avro.header.compression_codec()
        while True:
            try:
                avro.decoder.read_int()
                block = avro.decoder.read_bytes()
                avro.decoder.read(16)  # sync marker
            except EOFError:
                break
            out += codec.decompress(block) if codec else block
    return out


def _holding(warehouse: Path, needle: str) -> list[str]:
    """Every file under ``warehouse`` whose bytes, decoded values or statistics contain ``needle``."""
    raw = needle.encode()
    found = []
    for path in sorted(p for p in warehouse.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".avro":
            data += _avro_blocks(path)
        if path.suffix == ".parquet":
            parquet = pq.ParquetFile(path)
            data += repr(parquet.read().to_pylist()).encode()
            meta = parquet.metadata
            for g in range(meta.num_row_groups):
                for c in range(meta.num_columns):
                    stats = meta.row_group(g).column(c).statistics
                    if stats is not None and stats.has_min_max:
                        data += repr((stats.min, stats.max)).encode()
        if raw in data:
            found.append(str(path.relative_to(warehouse)))
    return found


def _config(stack: StackConnections, home: Path, db: str, days: float, daemon: bool = False) -> Path:
    m = stack.mariadb
    config = home / "cdc.yaml"
    home.mkdir()
    config.write_text(
        f"name: {db.replace('_', '-')}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
        f" server_id: {random.randint(5400, 5499)}, tables: ['{db}.*']}}\n"
        + ("batch: {idle_flush_seconds: 0.2}\n" if daemon else "")
        + "sinks:\n"
        # the running daemon: maintenance every 1.8 s, commits within 0.2 s
        + (
            "  - {type: iceberg, namespace: hist, maintenance_interval_hours: 0.0005, commit_seconds: 0.2,"
            if daemon
            else "  - {type: iceberg, namespace: hist, maintenance_interval_hours: 0,"
        )
        + f" catalog: {{type: sql,"
        f" uri: 'sqlite:///{home / 'catalog.db'}', warehouse: 'file://{home / 'warehouse'}'}}}}\n"
        f"state_dir: {home / 'state'}\n"
        f"catalog:\n  tables:\n    '{db}.users': {{history_retention_days: {days!r}}}\n"
    )
    return config


def test_retention_deletes_expired_changes_and_their_files(stack: StackConnections, tmp_path: Path) -> None:
    m = stack.mariadb
    db = f"retention_{uuid.uuid4().hex[:8]}"
    # every expired row carries it; short, so that the 16-character column bounds in manifests hold it
    secret = f"x{uuid.uuid4().hex[:10]}"
    now = int(dt.datetime.now(dt.UTC).timestamp())
    # the day across the horizon: one expired row at 03:00 and one kept row at 21:00 of it
    cut_day = (now - 100 * DAY) // DAY * DAY
    horizon = cut_day + 12 * 3600
    days = (now - horizon) / DAY
    _sql(
        stack,
        f"CREATE DATABASE {db}",
        f"CREATE TABLE {db}.users (id INT PRIMARY KEY, email VARCHAR(80))",
        f"CREATE TABLE {db}.notes (id INT PRIMARY KEY, body VARCHAR(80))",
    )
    home = tmp_path / "p"
    warehouse = home / "warehouse"
    config = _config(stack, home, db, days)
    env = {"PW": m.password}
    _ok(["run", "-c", str(config), "--until-caught-up"], env)  # the pipeline starts here
    _sql(
        stack,
        f"SET timestamp = {now - 200 * DAY}",
        f"INSERT INTO {db}.users VALUES (1, '{secret}-1'), (2, '{secret}-2')",
        f"INSERT INTO {db}.notes VALUES (1, 'old note {secret}')",  # no retention: kept
        f"SET timestamp = {now - 150 * DAY}",
        f"UPDATE {db}.users SET email = '{secret}-2b' WHERE id = 2",
        f"SET timestamp = {cut_day + 3 * 3600}",
        f"INSERT INTO {db}.users VALUES (3, '{secret}-3')",
        f"SET timestamp = {cut_day + 21 * 3600}",
        f"INSERT INTO {db}.users VALUES (4, 'kept-4')",
        "SET timestamp = DEFAULT",
        f"UPDATE {db}.users SET email = 'kept-1b' WHERE id = 1",
        f"INSERT INTO {db}.users VALUES (5, 'kept-5')",
    )
    _ok(["run", "-c", str(config), "--until-caught-up"], env)

    catalog = {"type": "sql", "uri": f"sqlite:///{home / 'catalog.db'}", "warehouse": f"file://{warehouse}"}
    users = open_catalog(catalog).load_table("hist.users__history")
    rows_before = users.scan().to_arrow().sort_by("_position").to_pylist()
    assert len(rows_before) == 7
    only_expired = set()
    for task in users.scan().plan_files():
        ts = pq.read_table(task.file.file_path.removeprefix("file://"), columns=["_source_ts"]).column(0)
        if max(ts.to_pylist()).timestamp() < horizon:
            only_expired.add(task.file.file_path.removeprefix("file://"))
    assert len(only_expired) == 2  # the 200- and 150-day-old days; the day across the horizon is mixed
    assert _holding(warehouse, secret)  # the search finds the values before retention

    out = _ok(["maintain", "-c", str(config)], env)
    assert "retention: 4 rows before" in out and "removed from storage" in out, out

    leftovers = _holding(warehouse, secret)
    assert leftovers == [p for p in leftovers if "notes__history" in p] and leftovers, leftovers
    assert not [p for p in only_expired if Path(p).exists()]
    users = open_catalog(catalog).load_table("hist.users__history")
    kept = [r for r in rows_before if r["_source_ts"].timestamp() >= horizon]
    assert users.scan().to_arrow().sort_by("_position").to_pylist() == kept
    notes = open_catalog(catalog).load_table("hist.notes__history")
    assert notes.scan().count() == 1

    # restart after retention: new changes land once, nothing older is applied again
    _sql(stack, f"INSERT INTO {db}.users VALUES (6, 'kept-6')", f"DELETE FROM {db}.users WHERE id = 5")
    _ok(["run", "-c", str(config), "--until-caught-up"], env)
    users = open_catalog(catalog).load_table("hist.users__history")
    after = users.scan().to_arrow().sort_by("_position").to_pylist()
    assert after[: len(kept)] == kept and [(r["_op"], r["id"]) for r in after[len(kept) :]] == [
        ("c", 6),
        ("d", 5),
    ]
    assert len({r["_position"] for r in after}) == len(after)

    # as-of reads: before the horizon refused, naming it; after it, the rows changed since
    early = dt.datetime.fromtimestamp(horizon - DAY, dt.UTC).isoformat()
    refused = CliRunner().invoke(main, ["history", "-c", str(config), f"{db}.users", "--at", early], env=env)
    assert refused.exit_code == 2 and "before the retention horizon" in refused.output, refused.output
    shown = _ok(["history", "-c", str(config), f"{db}.users", "--at", "2100-01-01", "--format", "jsonl"], env)
    ids = sorted(json.loads(line)["id"] for line in shown.splitlines() if line.startswith("{"))
    assert ids == [1, 4, 6]  # 2 and 3 were last changed before the horizon: their changes are gone
    listing = _ok(["catalog", "-c", str(config)], env)
    assert f"history kept {days:g} days" in listing


def _wait_for(what: str, check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_retention_inside_the_running_daemon(stack: StackConnections, tmp_path: Path) -> None:
    """The daemon's maintenance job applies retention while `cdc run` streams; nothing lost or doubled."""
    db = f"retention_{uuid.uuid4().hex[:8]}"
    secret = f"x{uuid.uuid4().hex[:10]}"
    now = int(dt.datetime.now(dt.UTC).timestamp())
    _sql(stack, f"CREATE DATABASE {db}", f"CREATE TABLE {db}.users (id INT PRIMARY KEY, email VARCHAR(80))")
    home = tmp_path / "d"
    config = _config(stack, home, db, 90.0, daemon=True)
    catalog = {
        "type": "sql",
        "uri": f"sqlite:///{home / 'catalog.db'}",
        "warehouse": f"file://{home / 'warehouse'}",
    }
    log = home / "daemon.log"

    def history_ids() -> list[int]:
        try:
            table = open_catalog(catalog).load_table("hist.users__history")
        except NoSuchTableError:  # not created yet
            return []
        return sorted(r["id"] for r in table.scan(selected_fields=("id",)).to_arrow().to_pylist())

    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc.cli", "run", "-c", str(config)],
            stdout=out,
            stderr=out,
            env={**os.environ, "PW": stack.mariadb.password},
        )
    try:
        _wait_for("the daemon to start", lambda: "applying " in log.read_text())
        _sql(
            stack,
            f"SET timestamp = {now - 200 * DAY}",
            f"INSERT INTO {db}.users VALUES (1, '{secret}-1'), (2, '{secret}-2')",
            "SET timestamp = DEFAULT",
            f"INSERT INTO {db}.users VALUES (3, 'kept-3')",
        )
        _wait_for("retention to delete 2 rows", lambda: "2 rows older than" in log.read_text())
        assert history_ids() == [3]
        _sql(
            stack,
            f"INSERT INTO {db}.users VALUES (4, 'kept-4')",
            f"UPDATE {db}.users SET email = 'k' WHERE id = 3",
        )
        _wait_for("the changes after retention", lambda: history_ids() == [3, 3, 4])
    finally:
        proc.terminate()
        code = proc.wait(60)
    assert code == 0, log.read_text()[-3000:]
    table = open_catalog(catalog).load_table("hist.users__history")
    positions = table.scan(selected_fields=("_position",)).to_arrow().column(0).to_pylist()
    assert len(set(positions)) == len(positions) == 3
    assert _holding(home / "warehouse", secret) == []
