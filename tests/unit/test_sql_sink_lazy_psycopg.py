"""A SQLite or MariaDB sink never imports psycopg: ~9 MiB of `cdc sink`'s RSS it does not use.

The PostgreSQL modules of sinks/sql (pg_*, postgres_copy, read_batch_copy) import psycopg; the sink
imports them where a PostgreSQL sink needs them. Here a SQLite sink made from a config applies
batches from Kafka both ways (column-wise and per change) in a fresh interpreter, which must end
without psycopg loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_APPLY = """
from cdc.config.models import SqlSinkConfig
from sinks.contract import SinkBatch
from sinks.registry import open_sink
from sinks.sql.columnar_apply import apply_columns
from tests.sinks.test_sinkcol_sqlite import ALL, _chunks, _row, _state, _stream
first, second = _stream(ALL, _row)
sink = open_sink(SqlSinkConfig(url="sqlite:///{path}", copy_threshold_rows=10), "lazy")
sink.open()
sink.apply(SinkBatch(first, _state(first, 60, ALL)))  # events: the per-change path
assert apply_columns(sink, SinkBatch(_chunks(second, 60, ALL), _state(second, 200, ALL)))  # chunks
assert len(sink.read_rows(ALL.ref)) == 60 + 40 - 10 - 5 + 3
sink.close()
import json, sys
print(json.dumps(sorted(sys.modules)))
"""


def test_a_sqlite_sink_applies_from_kafka_without_psycopg(tmp_path: Path) -> None:
    code = _APPLY.format(path=tmp_path / "serving.db")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "sinks.sql.sqlite_columnar" in loaded
    assert not [name for name in loaded if name.split(".")[0] in ("psycopg", "psycopg2", "psycopg_binary")]
