"""real/double NaN, Infinity and -Infinity from the PostgreSQL source, through Kafka, into a serving table.

JSON has no such numbers: the envelope carries them as the strings "NaN", "Infinity", "-Infinity"
(as Debezium and Avro-JSON do), the topic's JSON Schema allows exactly those strings for float
columns, and `cdc sink` reads them back to the floats they were.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
import pytest
import sqlalchemy as sa

from cdc.devstack.connections import StackConnections
from tests.support.kafka_replay import change_events, consume_all, pipeline_topics
from tests.support.pgsrc_daemon import ForkedDaemon

pytestmark = pytest.mark.integration

# (id, real, double precision): each special value in both columns, a finite pair, NULLs
ROWS = [
    (1, "NaN", "NaN"),
    (2, "Infinity", "-Infinity"),
    (3, "-Infinity", "Infinity"),
    (4, "1.5", "-2.25"),
    (5, None, None),
]
JSON = {
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1.5": 1.5,
    "-2.25": -2.25,
    None: None,
}


def _same(got: Any, want: str | None) -> bool:
    if want is None:
        return got is None
    expected = float(want)
    return isinstance(got, float) and (math.isnan(got) if math.isnan(expected) else got == expected)


@pytest.fixture
def nanfloat_dbs(stack: StackConnections) -> Iterator[tuple[str, str]]:
    """A source database on pgsource (with a publication) and a serving database on postgres."""
    assert stack.pgsource is not None, "the dev stack has no pgsource cluster: run `cdc dev up`"
    name = f"nanfloat_{secrets.token_hex(4)}"
    with psycopg.connect(stack.pgsource.admin_conninfo("postgres"), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(stack.pgsource.admin_conninfo(name), autocommit=True) as c:
        c.execute("CREATE PUBLICATION nanfloat_pub FOR ALL TABLES")
    admin = sa.create_engine(stack.postgres.sqlalchemy_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name, stack.postgres.sqlalchemy_url(name)
    finally:
        with psycopg.connect(stack.pgsource.admin_conninfo("postgres"), autocommit=True) as c:
            c.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (name,),
            )
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_nanfloat_through_kafka_into_postgresql(
    nanfloat_dbs: tuple[str, str], stack: StackConnections, tmp_path: Path
) -> None:
    name, serving_url = nanfloat_dbs
    assert stack.pgsource is not None
    pg = stack.pgsource
    pipeline = f"nanfloat-{secrets.token_hex(4)}"
    config = tmp_path / "pg.yaml"
    config.write_text(
        f"name: {pipeline}\n"
        "source:\n"
        "  type: postgresql\n"
        f"  host: {pg.host}\n  port: {pg.port}\n  user: {pg.user}\n"
        f"  password: {pg.password}\n  database: {name}\n  slot: {name}\n"
        "  publication: nanfloat_pub\n"
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}'}}\n"
        f"sinks: [{{type: sql, url: '{serving_url}'}}]\n"
        "bootstrap: {mode: initial}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    with psycopg.connect(pg.admin_conninfo(name), autocommit=True) as c:
        c.execute("CREATE TABLE f (id int PRIMARY KEY, r real, d double precision)")
        c.execute(f"GRANT SELECT ON f TO {pg.user}")  # the bootstrap reads it
        c.execute("INSERT INTO f VALUES (%s, %s::real, %s::float8)", ROWS[0])  # a snapshot read (op r)
    ForkedDaemon(config, tmp_path / "run.log").catch_up(90)
    with psycopg.connect(pg.admin_conninfo(name), autocommit=True) as c:
        c.execute("DELETE FROM f")  # then every row as a streamed insert (op c)
        c.cursor().executemany("INSERT INTO f VALUES (%s, %s::real, %s::float8)", ROWS)
    ForkedDaemon(config, tmp_path / "run.log").catch_up(90)

    records = consume_all(
        stack.kafka.bootstrap_servers, pipeline_topics(stack.kafka.bootstrap_servers, pipeline)
    )
    schemas = {
        r.value["version"]: r.value["value_schema"]
        for r in records
        if r.value is not None and r.value.get("type") == "table_schema"
    }
    events = change_events(records)
    assert [e.value["op"] for e in events] == ["r", "d"] + ["c"] * len(ROWS)
    for e in events:
        jsonschema.Draft202012Validator(schemas[e.value["source"]["schema_version"]]).validate(e.value)
    assert events[0].value["after"] == {"id": 1, "r": "NaN", "d": "NaN"}
    afters = [e.value["after"] for e in events[2:]]
    assert afters == [{"id": i, "r": JSON[r], "d": JSON[d]} for i, r, d in ROWS]
    # a float column's schema refuses any other string
    with pytest.raises(jsonschema.ValidationError):
        bad = {**events[2].value, "after": {"id": 1, "r": "nan", "d": 1.0}}
        jsonschema.Draft202012Validator(schemas[events[2].value["source"]["schema_version"]]).validate(bad)

    ForkedDaemon(config, tmp_path / "sink.log", command="sink").catch_up(90)
    engine = sa.create_engine(serving_url)
    try:
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT id, r, d FROM f ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [row[0] for row in got] == [i for i, _, _ in ROWS]
    for (i, r, d), (_, got_r, got_d) in zip(ROWS, got, strict=True):
        assert _same(got_r, r) and _same(got_d, d), (i, got_r, got_d)
