"""`cdc dev demo`: the embedded default end to end, on the local stack.

A small MediaWiki-like wiki (actor, page, revision; VARBINARY titles as MediaWiki stores them) gets a
live workload of edits while `cdc run -c configs/embedded.yaml` applies every change to SQLite
(current state) and Iceberg (full history). At the end the demo checks the SQLite copy against the
source row by row and queries the history with DuckDB, including the wiki "as of" an earlier moment.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import click
import pymysql
import pymysql.cursors

from cdc.config import PipelineConfig, load_config
from cdc.config.models import FileLineageTransport, IcebergSinkConfig, SqlSinkConfig
from cdc.core.errors import HeadwaterError
from cdc.core.schemas import TableRef
from cdc.daemon.embedded_wiring import embedded_daemon
from cdc.devstack.connections import MariaDbConnection, StackConnections, default_state_dir
from cdc.lineage import demo_lineage

# MediaWiki stores titles as VARBINARY and names actors in a VARBINARY column too.
SCHEMA = (
    "CREATE DATABASE IF NOT EXISTS wikidb",
    """CREATE TABLE IF NOT EXISTS wikidb.actor (
        actor_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        actor_user INT UNSIGNED NULL,
        actor_name VARBINARY(255) NOT NULL,
        UNIQUE KEY actor_name (actor_name)) DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS wikidb.page (
        page_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        page_namespace INT NOT NULL,
        page_title VARBINARY(255) NOT NULL,
        page_is_redirect TINYINT UNSIGNED NOT NULL DEFAULT 0,
        page_touched BINARY(14) NOT NULL,
        page_latest INT UNSIGNED NOT NULL DEFAULT 0,
        page_len INT UNSIGNED NOT NULL DEFAULT 0,
        UNIQUE KEY page_name_title (page_namespace, page_title)) DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS wikidb.revision (
        rev_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        rev_page INT UNSIGNED NOT NULL,
        rev_actor BIGINT UNSIGNED NOT NULL,
        rev_timestamp DATETIME(6) NOT NULL,
        rev_minor_edit TINYINT UNSIGNED NOT NULL DEFAULT 0,
        rev_len INT UNSIGNED NULL,
        rev_sha1 VARBINARY(32) NOT NULL DEFAULT '',
        rev_comment TEXT NULL) DEFAULT CHARSET=utf8mb4""",
)
TABLES = ("actor", "page", "revision")
WORDS = ("River", "Source", "Delta", "Spring", "Basin", "Lake", "Café", "Fjord", "Ωmega", "Tributary")


def _root(m: MariaDbConnection) -> pymysql.Connection[pymysql.cursors.Cursor]:
    return m.connect_root(charset="utf8mb4", autocommit=False)


class WikiWorkload:
    """Editors creating, editing, renaming and deleting pages, one transaction per action."""

    def __init__(self, m: MariaDbConnection, seed: int) -> None:
        self._m = m
        self._rng = random.Random(seed)
        self.actions = 0

    def run(self, seconds: float) -> None:
        rng = self._rng
        deadline = time.monotonic() + seconds
        with _root(self._m) as conn, conn.cursor() as cur:
            actors = []
            for name in ("Ada", "Grace", "Linus", "Émilie", "Ürsula"):
                cur.execute(
                    "INSERT INTO wikidb.actor (actor_user, actor_name) VALUES (%s, %s) "
                    "ON DUPLICATE KEY UPDATE actor_user = VALUES(actor_user)",
                    (rng.randint(1, 10_000), name.encode()),
                )
                cur.execute("SELECT actor_id FROM wikidb.actor WHERE actor_name = %s", (name.encode(),))
                actors.append(int(cur.fetchone()[0]))  # type: ignore[index]
            conn.commit()
            while time.monotonic() < deadline:
                cur.execute("SELECT page_id, page_title FROM wikidb.page ORDER BY RAND() LIMIT 1")
                page = cur.fetchone()
                roll = rng.random()
                if page is None or roll < 0.3:
                    title = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{rng.randint(1, 10**6)}".encode()
                    cur.execute(
                        "INSERT IGNORE INTO wikidb.page (page_namespace, page_title, page_touched) "
                        "VALUES (0, %s, %s)",
                        (title, time.strftime("%Y%m%d%H%M%S").encode()),
                    )
                    page = (cur.lastrowid, title)
                if roll < 0.8 and page[0]:
                    text_len = rng.randint(10, 5000)
                    cur.execute(
                        "INSERT INTO wikidb.revision (rev_page, rev_actor, rev_timestamp, rev_len, "
                        "rev_sha1, rev_comment, rev_minor_edit) VALUES (%s, %s, NOW(6), %s, %s, %s, %s)",
                        (
                            page[0],
                            rng.choice(actors),
                            text_len,
                            os.urandom(16).hex()[:31].encode(),
                            rng.choice(("typo", "expand", "cite sources ✓", None)),
                            int(rng.random() < 0.2),
                        ),
                    )
                    cur.execute(
                        "UPDATE wikidb.page SET page_latest = %s, page_len = %s, page_touched = %s "
                        "WHERE page_id = %s",
                        (cur.lastrowid, text_len, time.strftime("%Y%m%d%H%M%S").encode(), page[0]),
                    )
                elif roll < 0.9:
                    cur.execute(
                        "UPDATE IGNORE wikidb.page SET page_title = %s WHERE page_id = %s",
                        (page[1] + b"_(disambiguation)", page[0]),
                    )
                else:
                    cur.execute("DELETE FROM wikidb.revision WHERE rev_page = %s", (page[0],))
                    cur.execute("DELETE FROM wikidb.page WHERE page_id = %s", (page[0],))
                conn.commit()
                self.actions += 1
                time.sleep(0.005)


def _source_rows(m: MariaDbConnection, table: str) -> dict[Any, dict[str, Any]]:
    with _root(m) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM wikidb.{table}")
        rows = cur.fetchall()
    key = {"actor": "actor_id", "page": "page_id", "revision": "rev_id"}[table]
    return {row[key]: dict(row) for row in rows}


def _check_serving_copy(config: PipelineConfig, m: MariaDbConnection) -> None:
    from sinks.sql import create_sql_sink

    for sink_config in config.sinks:
        if not isinstance(sink_config, SqlSinkConfig):
            continue
        sink = create_sql_sink(sink_config, config.name)
        sink.open()
        try:
            total = 0
            for table in TABLES:
                want = _source_rows(m, table)
                key = next(iter(sink.primary_key(TableRef("wikidb", table)) or ("",)))
                got = {row[key]: row for row in sink.read_rows(TableRef("wikidb", table))}
                if got != want:
                    differing = [k for k in set(got) | set(want) if got.get(k) != want.get(k)]
                    raise click.ClickException(
                        f"{sink.name}: wikidb.{table} differs from the source at keys {differing[:5]}"
                    )
                total += len(want)
            click.echo(
                f"  {sink.name}: equal to the source, row by row ({total} rows in {len(TABLES)} tables)"
            )
        finally:
            sink.close()


def _query_history(config: PipelineConfig, before: dt.datetime) -> None:
    import duckdb

    from sinks.iceberg import read_history, state_as_of

    for sink_config in config.sinks:
        if not isinstance(sink_config, IcebergSinkConfig):
            continue
        pages = read_history(sink_config.catalog, sink_config.namespace, TableRef("wikidb", "page")).rows
        revisions = read_history(
            sink_config.catalog, sink_config.namespace, TableRef("wikidb", "revision")
        ).rows
        wiki_then = state_as_of(sink_config.catalog, sink_config.namespace, "wikidb.page", before)
        click.echo(f"\nIceberg history ({sink_config.namespace}.page__history, ...), queried with DuckDB:")
        duckdb.sql(
            "SELECT _op AS op, count(*) AS changes, min(_source_ts) AS first, max(_source_ts) AS last "
            "FROM pages GROUP BY _op ORDER BY _op"
        ).show()  # type: ignore[union-attr]
        click.echo("most edited pages (revisions in the history):")
        duckdb.sql(
            "SELECT decode(p.page_title) AS title, count(*) AS edits FROM revisions r "
            "JOIN (SELECT page_id, last(page_title ORDER BY _position) AS page_title FROM pages "
            "GROUP BY page_id) p ON p.page_id = r.rev_page WHERE r._op = 'c' "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5"
        ).show()  # type: ignore[union-attr]
        click.echo(f"the wiki as of {before.isoformat(timespec='seconds')} (state rebuilt from the history):")
        duckdb.sql("SELECT count(*) AS pages, sum(page_len) AS total_len FROM wiki_then").show()  # type: ignore[union-attr]
        del pages, revisions, wiki_then


@click.command("demo")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("configs/embedded.yaml"),
    show_default=True,
    help="The pipeline config to run (the embedded default: SQLite and Iceberg).",
)
@click.option("--seconds", type=float, default=15.0, show_default=True, help="How long the workload runs.")
@click.option(
    "--dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dev stack state directory (default .devstack, or HEADWATER_DEVSTACK_DIR).",
)
def demo(config_path: Path, seconds: float, state_dir: Path | None) -> None:
    """Run the embedded default end to end on the local stack, with a live MediaWiki-like workload."""
    conns = StackConnections.read(state_dir or default_state_dir())
    m = conns.mariadb
    os.environ.setdefault("CDC_SOURCE_PASSWORD", m.password)  # the dev stack's replica user
    os.environ.setdefault("PWD", str(Path.cwd()))
    try:
        config = load_config(config_path)
    except HeadwaterError as exc:
        raise click.ClickException(str(exc)) from None
    config = demo_lineage.with_file_lineage(config)  # OpenLineage events of the live run, to a file
    # The demo starts from an empty state directory and a wiki that already has pages, as a real one
    # does: the pipeline's first start bootstraps them (bootstrap.mode: initial), then streams.
    state = config.state_dir.resolve()
    if state.exists():
        if Path.cwd().resolve() not in state.parents:
            raise click.ClickException(
                f"the demo resets {state}; use a config whose state_dir is under the current directory"
            )
        shutil.rmtree(state)
    with _root(m) as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS wikidb")
        for statement in SCHEMA:
            cur.execute(statement)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    click.echo(f"0. reset: database wikidb is recreated, {config.state_dir}/ starts empty")
    history = WikiWorkload(m, seed=int(time.time()) ^ 0x5EED)
    history.run(max(seconds / 3, 2.0))  # the wiki's past: edits made before the pipeline existed
    existing = {table: len(_source_rows(m, table)) for table in TABLES}
    click.echo(
        f"1. source: MariaDB {m.host}:{m.port}, wikidb with "
        + ", ".join(f"{n} {table} rows" for table, n in existing.items())
        + " already there"
    )
    first = embedded_daemon(config, until_caught_up=True)
    if first.run() != 0:
        raise click.ClickException("the first start failed: see the log above")
    mode = config.bootstrap.mode.value
    click.echo(
        f"   first start (bootstrap.mode: {mode}): {first.rows_applied} rows bootstrapped into each sink,"
        " in consistent chunks, without locking the source"
    )

    click.echo(f"2. `cdc run -c {config_path}` is applying changes while editors work for {seconds:g}s ...")
    daemon = embedded_daemon(config, until_caught_up=False, idle_flush_seconds=1.0)
    runner = threading.Thread(target=daemon.run, name="cdc-run", daemon=True)
    from cdc.lineage.emitter import LineageRun  # openlineage only when the demo runs

    lineage = LineageRun(config, "run")
    lineage.start()
    runner.start()
    workload = WikiWorkload(m, seed=int(time.time()))
    workload.run(seconds / 2)
    middle = dt.datetime.now(dt.UTC)
    workload.run(seconds / 2)
    time.sleep(1.0)
    daemon.request_stop()
    runner.join(60)
    catch_up = embedded_daemon(config, until_caught_up=True)
    if catch_up.run() != 0:
        raise click.ClickException("catching up failed: see the log above")
    lineage.finish(0)
    click.echo(
        f"   {workload.actions} edit transactions; {daemon.rows_applied + catch_up.rows_applied} "
        "changes applied to each sink"
    )
    click.echo("3. the serving copy against the source:")
    _check_serving_copy(config, m)
    _query_history(config, middle)
    assert config.lineage is not None and isinstance(config.lineage.transport, FileLineageTransport)
    click.echo(
        f"\n4. OpenLineage run events ({demo_lineage.event_counts(config)}) written to "
        f"{config.lineage.transport.path} (file transport); catalog page: "
        f"{demo_lineage.write_catalog_page(config)} (cdc catalog -c {config_path} --html PATH)"
    )
    from cdc.demo_reconcile import reconcile_step

    reconcile_step(config, config_path, 5)
    click.echo(
        f"\nRun it yourself: CDC_SOURCE_PASSWORD=... cdc run -c {config_path}; "
        "cdc history -c CONFIG wikidb.page --at TIME; cdc reconcile -c CONFIG --report PATH"
    )
