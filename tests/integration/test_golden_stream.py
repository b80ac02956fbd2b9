"""Golden stream tests: SQL in, expected change envelopes out, through the real pipeline.

Each file in tests/golden/ holds SQL statements (``golden.`` names the test's own database) followed by
the records they must produce, one ``-> {json}`` line each, in source order:

- ``{"op", "table", "key", "before", "after"}``: a change envelope in the table's topic (only the
  fields given are compared; images are compared whole unless the line says ``"partial": true``);
- ``{"ddl": kind, "table"}``: a schema-change record in the pipeline's ``__schema`` topic.

The run: `cdc run`'s daemon starts once (committing the source's current position), the SQL runs,
the daemon runs again ``--until-caught-up`` from its checkpoint, and a read_committed consumer reads
every topic of the pipeline. Nothing more and nothing less than the expected records may appear.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from cdc.config.models import KafkaStreamConfig, MariaDbSourceConfig
from cdc.daemon.capture import CaptureDaemon, CaptureOptions
from cdc.daemon.mariadb_source import MariaDbSource
from cdc.devstack.connections import StackConnections
from cdc.stream import KafkaStreamWriter
from tests.support.kafka_replay import consume_all, pipeline_topics

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def parse_golden(text: str) -> tuple[list[str], list[dict[str, Any]]]:
    statements: list[str] = []
    expected: list[dict[str, Any]] = []
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        if stripped.startswith("->"):
            expected.append(json.loads(stripped[2:]))
            continue
        current.append(line)
        if stripped.endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    assert not current, f"statement without a closing ';': {current}"
    return statements, expected


def run_daemon(source: MariaDbSourceConfig, stream: KafkaStreamConfig, pipeline: str) -> None:
    daemon = CaptureDaemon(
        lambda: KafkaStreamWriter(stream, pipeline, source.server_id),
        lambda: MariaDbSource(source, blocking=False),
        CaptureOptions(until_caught_up=True),
    )
    assert daemon.run() == 0


def actual_records(bootstrap: str, pipeline: str, db: str) -> list[tuple[str, dict[str, Any]]]:
    topics = [t for t in pipeline_topics(bootstrap, pipeline) if not t.endswith("__checkpoints")]
    out: list[tuple[str, dict[str, Any]]] = []
    for r in consume_all(bootstrap, topics):
        v = r.value
        if v is None:
            continue  # tombstones follow deletes; their presence is the stream tests' business
        if "op" in v:
            if v["op"] == "t" and any(p == v["source"]["position"] for p, _ in out):
                continue  # a truncate goes to every partition of the table's topic: count it once
            record = {
                "op": v["op"],
                "table": v["source"]["table"],
                "key": r.key,
                "before": v["before"],
                "after": v["after"],
            }
            out.append((v["source"]["position"], record))
        elif v.get("type") == "schema_change" and v["db"] == db:
            out.append((v["position"], {"ddl": v["kind"], "table": v["table"]}))
    out.sort(key=lambda pair: pair[0])
    return out


def matches(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    partial = expected.get("partial", False)
    for name, want in expected.items():
        if name == "partial":
            continue
        got = actual.get(name)
        if partial and isinstance(want, dict) and isinstance(got, dict):
            if any(got.get(k, object()) != v for k, v in want.items()):
                return False
        elif got != want:
            return False
    return True


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.sql")), ids=lambda p: p.stem)
def test_golden(path: Path, stack: StackConnections) -> None:
    db = f"golden_{path.stem}"
    pipeline = f"golden-{path.stem}-{uuid.uuid4().hex[:8]}"
    statements, expected = parse_golden(path.read_text(encoding="utf-8").replace("golden.", f"{db}."))
    m = stack.mariadb
    root = m.connect_root(charset="utf8mb4", autocommit=True)
    source = MariaDbSourceConfig(
        host=m.host,
        port=m.port,
        user=m.user,
        password=m.password,
        server_id=random.randint(10_000, 4_000_000),
        tables=[f"{db}.*"],
    )
    stream = KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers, partitions=2)
    with root, root.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {db}")
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute("SET time_zone = '+00:00'")
        run_daemon(source, stream, pipeline)  # first start: commits the current position
        for statement in statements:
            cur.execute(statement)
    run_daemon(source, stream, pipeline)

    actual = actual_records(stack.kafka.bootstrap_servers, pipeline, db)
    shown = "\n".join(json.dumps(a, ensure_ascii=False) for _, a in actual)
    assert len(actual) == len(expected), f"expected {len(expected)} records, got {len(actual)}:\n{shown}"
    for index, (want, (_, got)) in enumerate(zip(expected, actual, strict=True)):
        assert matches(want, got), (
            f"record {index}: expected\n  {json.dumps(want, ensure_ascii=False)}\n"
            f"got\n  {json.dumps(got, ensure_ascii=False)}\nall:\n{shown}"
        )
