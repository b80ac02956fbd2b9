"""Shape for consumers (issue 12): MediaWiki's VARBINARY titles as text and BIGINT UNSIGNED ids as
bigint, in every copy: a Kafka consumer reads the title as a JSON string (not base64), PostgreSQL
holds text and bigint columns (not bytea and numeric), and page.page_id joins revision.rev_page
(INT UNSIGNED there, bigint in PostgreSQL either way) without a cast. Bootstrapped and streamed rows.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from confluent_kafka import Consumer, TopicPartition

from cdc.devstack.connections import StackConnections

CDC = [sys.executable, "-m", "cdc.cli"]


def _sql(stack: StackConnections, *statements: str) -> None:
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _cdc(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([*CDC, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def _values(stack: StackConnections, topic: str) -> list[dict[str, Any]]:
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka.bootstrap_servers,
            "group.id": f"policy-shape-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    out = []
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        while True:
            msg = consumer.poll(3)
            if msg is None:
                break
            if not msg.error() and msg.value():
                out.append(orjson.loads(msg.value() or b""))
    finally:
        consumer.close()
    assert out, f"{topic} is empty (high watermark {high})"
    return out


def test_binary_titles_as_text_and_unsigned_ids_as_bigint(stack: StackConnections, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    db, pg_db = f"policy_s{tag}", f"policy_s{tag}"
    name = db.replace("_", "-")
    m = stack.mariadb
    _sql(
        stack,
        f"CREATE DATABASE {db}",
        f"CREATE TABLE {db}.page (page_id BIGINT UNSIGNED PRIMARY KEY, page_title VARBINARY(255) NOT NULL)",
        f"CREATE TABLE {db}.revision (rev_id INT UNSIGNED PRIMARY KEY, rev_page BIGINT UNSIGNED)",
        f"INSERT INTO {db}.page VALUES (1, 'Main_Page'), (2, 'Zürich')",
        f"INSERT INTO {db}.revision VALUES (10, 1)",
    )
    admin = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {pg_db}"))
    config = tmp_path / "cdc.yaml"
    config.write_text(
        f"name: {name}\n"
        f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{PW}}',"
        f" server_id: {random.randint(4900, 4999)}, tables: ['{db}.*']}}\n"
        f"stream: {{bootstrap_servers: '{stack.kafka.bootstrap_servers}'}}\n"
        f"sinks: [{{type: sql, url: '{stack.postgres.sqlalchemy_url(pg_db)}'}}]\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "bootstrap: {mode: initial}\n"
        "policies:\n"
        "  tables:\n"
        f"    '{db}.*': {{'*_title': {{text: replace}}, page_id: bigint, rev_page: bigint, rev_id: bigint}}\n"
    )
    env = {**os.environ, "PW": m.password}
    engine = sa.create_engine(stack.postgres.sqlalchemy_url(pg_db))
    try:
        _cdc(["run", "-c", str(config), "--until-caught-up"], env)  # bootstraps the rows there
        _sql(
            stack,
            f"INSERT INTO {db}.page VALUES (3, X'4E6F7420FF5554462D38')",  # 'Not \xff UTF-8'
            f"INSERT INTO {db}.revision VALUES (11, 3), (12, 2)",
        )
        _cdc(["run", "-c", str(config), "--until-caught-up"], env)
        _cdc(["sink", "-c", str(config), "--until-caught-up"], env)

        titles = {
            v["after"]["page_id"]: v["after"]["page_title"] for v in _values(stack, f"{name}.{db}.page")
        }
        assert titles == {1: "Main_Page", 2: "Zürich", 3: "Not \ufffdUTF-8"}
        with engine.connect() as conn:
            types: dict[str, str] = dict(
                conn.execute(
                    sa.text(
                        "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                        " WHERE table_schema = 'public' AND table_name IN ('page', 'revision')"
                    )
                ).all()
            )
            joined = conn.execute(
                sa.text(
                    "SELECT r.rev_id, p.page_title FROM revision r JOIN page p ON p.page_id = r.rev_page"
                    " ORDER BY r.rev_id"
                )
            ).all()
        assert types["page.page_id"] == types["revision.rev_page"] == "bigint", types
        assert types["page.page_title"] in ("character varying", "text"), types
        assert [tuple(r) for r in joined] == [(10, "Main_Page"), (11, "Not \ufffdUTF-8"), (12, "Zürich")]
    finally:
        engine.dispose()
        _sql(stack, f"DROP DATABASE IF EXISTS {db}")
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"))
        admin.dispose()
