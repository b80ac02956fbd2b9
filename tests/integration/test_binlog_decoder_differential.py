"""Our decoder against python-mysql-replication and mariadb-binlog on a table with every type.

Intended differences from python-mysql-replication (ours first), each normalised below:
- BIT(n): int, not a string of '0'/'1'.
- UUID, INET4, INET6: canonical text (looked up in the data dictionary), not the raw stored bytes.
- BINARY(n): n bytes, with the trailing zero bytes MariaDB strips in the binlog put back (as SELECT
  returns them); the library returns the stripped bytes.
- GEOMETRY: WKB (the 4-byte SRID prefix of MariaDB's internal format removed).
- TIMESTAMP: timezone-aware UTC datetime; the library returns a naive local datetime.
- SET: comma-joined text in definition order (as MariaDB prints it), not a Python set.
- empty BINARY/VARBINARY/BLOB: b"" (bytes); the library sometimes returns "" (str).

Where the library is wrong (checked against MariaDB's own values in test_edge_values_are_exact):
- negative TIME with fractional seconds: '-838:59:59.999999' comes back as -838:59:58.000001.
- YEAR 0000: the library says 1900.
- empty SET '': the library says NULL.
- zero TIMESTAMP '0000-00-00 00:00:00': the library says 1970-01-01 (we apply the zero-date policy).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from cdc.core import ChangeEvent, Op
from cdc.devstack.connections import StackConnections
from cdc.sources.mariadb import ConnectionSettings, MariaDbBinlogReader, ReaderConfig, StartAt
from cdc.sources.mariadb.dump_command import FixedBinLogStreamReader

COLUMNS = """
  id INT NOT NULL PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT,
  miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  d65 DECIMAL(65,30), d10 DECIMAL(10,2), d5 DECIMAL(5,0), f FLOAT, db DOUBLE,
  b1 BIT(1), b10 BIT(10), b64 BIT(64),
  dte DATE, dt0 DATETIME, dt3 DATETIME(3), dt6 DATETIME(6), ts0 TIMESTAMP NULL, ts6 TIMESTAMP(6) NULL,
  t0 TIME, t6 TIME(6), y YEAR,
  c_latin CHAR(10) CHARACTER SET latin1, c_utf CHAR(10) CHARACTER SET utf8mb4,
  vc_latin VARCHAR(300) CHARACTER SET latin1, vc_utf VARCHAR(100) CHARACTER SET utf8mb4,
  txt TEXT CHARACTER SET utf8mb4, ltxt LONGTEXT CHARACTER SET utf8mb4,
  bin BINARY(6), vbin VARBINARY(300), blb BLOB, mblb MEDIUMBLOB,
  e ENUM('small','medium','large'), st SET('red','green','blue'),
  j JSON, g GEOMETRY, u UUID, i4 INET4, i6 INET6
"""
EMOJI = "héllo 😀 wörld 🎉"
ROW_MAX = (
    "(1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807,"
    " 18446744073709551615, '" + "9" * 35 + "." + "9" * 30 + "', 12345678.99, 99999, 1.5,"
    " 1.7976931348623157e308,"
    " b'1', b'1111111111', b'" + "1" * 64 + "',"
    " '9999-12-31', '9999-12-31 23:59:59', '2024-02-29 12:34:56.789', '9999-12-31 23:59:59.999999',"
    " '2038-01-19 03:14:07', '2038-01-19 03:14:07.999999', '838:59:59', '838:59:59.999999', 2155,"
    " 'Ünïcødé', '" + EMOJI[:10] + "', '" + "é" * 300 + "', '" + EMOJI + "', '" + EMOJI * 20 + "',"
    " REPEAT('x', 70000), x'000102', x'00ff00ff', x'deadbeef', REPEAT(x'ab', 70000),"
    " 'large', 'red,blue', '{\"k\": [1, 2, \"😀\"]}', ST_GeomFromText('POINT(1 2)'),"
    " '123e4567-e89b-12d3-a456-426655440000', '255.255.255.255', '2001:db8::ff00:42:8329')"
)
ROW_MIN = (
    "(2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,"
    " '-" + "9" * 35 + "." + "9" * 29 + "1', -0.01, -99999, -1.5e-10, -2.2250738585072014e-308,"
    " b'0', b'0000000000', b'0', '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00.001',"
    " '1000-01-01 00:00:00.000001', '1970-01-01 00:00:01', '1970-01-01 00:00:01.000001',"
    " '-838:59:59', '-838:59:59.999999', 1901, '', '', '', '', '', '', '', '', '', '',"
    " 'small', '', '[]', ST_GeomFromText('LINESTRING(0 0, 1 1)'), '00000000-0000-0000-0000-000000000000',"
    " '0.0.0.0', '::')"
)
ROW_NULLS = "(3" + ", NULL" * 44 + ")"
ROW_ZERO = (
    "(4" + ", NULL" * 18 + ", '0000-00-00', '0000-00-00 00:00:00', NULL, NULL, '0000-00-00 00:00:00', NULL,"
    " '-00:00:00.5', '-12:34:56.000001', 0" + ", NULL" * 17 + ")"
)


@pytest.fixture(scope="module")
def workload(stack: StackConnections) -> Iterator[tuple[str, str]]:
    db = stack.mariadb
    conn = db.connect_root(autocommit=True, charset="utf8mb4")
    schema = f"hw_diff_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {schema}")
        cur.execute(f"CREATE TABLE {schema}.alltypes ({COLUMNS}) DEFAULT CHARSET=latin1")
        cur.execute("SELECT @@gtid_binlog_pos")
        row = cur.fetchone()
        assert row is not None
        start = str(row[0])
        cur.execute("SET SESSION sql_mode = '', time_zone = '+00:00'")
        cur.execute(f"INSERT INTO {schema}.alltypes VALUES {ROW_MAX}, {ROW_MIN}, {ROW_NULLS}")
        cur.execute(f"INSERT INTO {schema}.alltypes VALUES {ROW_ZERO}")
        cur.execute(
            f"UPDATE {schema}.alltypes SET vc_utf = '🎉', d10 = d10 + 1, t0 = '-01:00:00' WHERE id <= 2"
        )
        cur.execute(f"DELETE FROM {schema}.alltypes WHERE id = 3")
    yield start, schema
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE {schema}")
    conn.close()


def _replica_id() -> int:
    """A replica server_id of its own for each reader: two at once with one id (this file's tests
    under `-n 2` without loadfile) would make MariaDB drop the first connection."""
    return random.randint(73_000, 73_999)


def _ours(stack: StackConnections, start: str, schema: str) -> list[ChangeEvent]:
    db = stack.mariadb
    cfg = ReaderConfig(
        ConnectionSettings(db.host, db.port, db.user, db.password),
        server_id=_replica_id(),
        tables=(f"{schema}.*",),
        blocking=False,
    )
    return [r for r in MariaDbBinlogReader(cfg).records(StartAt.gtid(start)) if isinstance(r, ChangeEvent)]


def _library(stack: StackConnections, start: str, schema: str) -> list[tuple[str, Any, Any]]:
    db = stack.mariadb
    reader = FixedBinLogStreamReader(
        {"host": db.host, "port": db.port, "user": db.user, "password": db.password},
        server_id=_replica_id(),
        blocking=False,
        is_mariadb=True,
        auto_position=start,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[schema],
        enable_logging=False,
    )
    out: list[tuple[str, Any, Any]] = []
    try:
        while (event := reader.fetchone()) is not None:
            for row in event.rows:
                if isinstance(event, WriteRowsEvent):
                    out.append(("c", None, row["values"]))
                elif isinstance(event, UpdateRowsEvent):
                    out.append(("u", row["before_values"], row["after_values"]))
                else:
                    out.append(("d", row["values"], None))
    finally:
        reader.close()
    return out


_BINARY_TYPES = {
    "binary",
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
    "geometry",
    "uuid",
    "inet4",
    "inet6",
}


def _normalise_library(name: str, source_type: str, value: Any) -> Any:
    """Map the library's representation onto ours for the documented differences."""
    if value is None:
        return None
    if isinstance(value, str) and source_type.split("(")[0] in _BINARY_TYPES:
        value = value.encode("latin-1")  # the library returns "" (str) for some empty binary values
    if source_type.startswith("bit"):
        return int(value, 2)
    if source_type == "uuid":
        h = value.ljust(16, b"\0").hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if source_type == "inet4":
        return ".".join(str(b) for b in value.ljust(4, b"\0"))
    if source_type == "inet6":
        return str(ipaddress.IPv6Address(value.ljust(16, b"\0")))
    if source_type.startswith("binary("):
        return value.ljust(int(source_type[7:-1]), b"\0")
    if source_type == "geometry":
        return value[4:]
    if source_type.startswith("timestamp"):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if source_type.startswith("set("):
        return value  # compared as sets below
    return value


def _known_library_bug(source_type: str, mine: Any, lib: Any) -> bool:
    if source_type.startswith("time(") and isinstance(mine, dt.timedelta):
        return mine < dt.timedelta(0) and mine.microseconds != 0
    if source_type == "year":
        return mine == 0 and lib == 1900
    if source_type.startswith("set("):
        return mine == set() and lib is None
    if source_type.startswith("timestamp"):
        return mine is None and lib == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return False


def _compare(ours: tuple[Any, ...] | None, theirs: Any, columns: list[tuple[str, str]]) -> list[str]:
    if ours is None or theirs is None:
        return [] if ours is None and theirs is None else ["image presence differs"]
    problems = []
    for (name, source_type), mine in zip(columns, ours, strict=True):
        lib = _normalise_library(name, source_type, theirs[name])
        if source_type.startswith("set(") and mine is not None:
            mine, lib = set(filter(None, mine.split(","))), lib if lib is None else set(lib)
        if mine != lib and not _known_library_bug(source_type, mine, lib):
            problems.append(f"{name} ({source_type}): ours={mine!r} library={lib!r}")
    return problems


def test_every_type_matches_python_mysql_replication(
    stack: StackConnections, workload: tuple[str, str]
) -> None:
    ours = _ours(stack, *workload)
    theirs = _library(stack, *workload)
    assert [e.op.value for e in ours] == [t[0] for t in theirs] == ["c", "c", "c", "c", "u", "u", "d"]
    columns = [(c.name, c.source_type) for c in ours[0].schema.columns]
    problems = []
    for mine, (_op, before, after) in zip(ours, theirs, strict=True):
        problems += _compare(mine.before, before, columns) + _compare(mine.after, after, columns)
    assert problems == [], "\n".join(problems)


def test_edge_values_are_exact(stack: StackConnections, workload: tuple[str, str]) -> None:
    events = _ours(stack, *workload)
    names = events[0].schema.column_names
    row_max = dict(zip(names, events[0].after or (), strict=True))
    row_min = dict(zip(names, events[1].after or (), strict=True))
    row_zero = dict(zip(names, events[3].after or (), strict=True))
    assert row_max["biu"] == 2**64 - 1 and row_min["bi"] == -(2**63)
    assert row_max["d65"] == Decimal("9" * 35 + "." + "9" * 30)
    assert row_min["d65"] == Decimal("-" + "9" * 35 + "." + "9" * 29 + "1")
    assert row_max["b64"] == 2**64 - 1
    assert row_max["dt6"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert row_max["ts6"] == dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=dt.UTC)
    assert row_max["t6"] == dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=999999)
    assert row_min["t6"] == -dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=999999)
    assert row_zero["t0"] == dt.timedelta(0)  # TIME(0) rounds -00:00:00.5
    assert row_zero["t6"] == -dt.timedelta(hours=12, minutes=34, seconds=56, microseconds=1)
    assert row_max["vc_utf"] == EMOJI and row_max["txt"] == EMOJI * 20
    assert row_max["c_latin"] == "Ünïcødé" and row_max["vc_latin"] == "é" * 300
    assert row_max["u"] == "123e4567-e89b-12d3-a456-426655440000"
    assert row_max["i6"] == "2001:db8::ff00:42:8329"
    assert row_min["u"] == "00000000-0000-0000-0000-000000000000" and row_min["i6"] == "::"
    assert row_max["st"] == "red,blue" and row_max["e"] == "large" and row_min["st"] == ""
    assert row_max["bin"] == b"\x00\x01\x02\x00\x00\x00"
    assert row_zero["dte"] is None and row_zero["dt0"] is None and row_zero["ts0"] is None
    row_nulls = dict(zip(names, events[2].after or (), strict=True))
    assert all(v is None for k, v in row_nulls.items() if k != "id")
    update = events[4]
    assert update.op is Op.UPDATE and update.key == (1,) and update.after is not None
    assert dict(zip(names, update.after, strict=True))["vc_utf"] == "🎉"
    assert [e.position.row for e in events[:3]] == [0, 1, 2]  # one multi-row insert, one position per row
    assert events[3].position.row == 0 and events[3].position > events[2].position


def test_mariadb_binlog_agrees_on_representative_columns(
    stack: StackConnections, workload: tuple[str, str]
) -> None:
    # scripts/setup.sh installs mariadb-client; without it this comparison must fail, not vanish
    assert shutil.which("mariadb-binlog"), "mariadb-binlog is missing: apt-get install mariadb-client"
    events = _ours(stack, *workload)
    first = events[0].position
    db = stack.mariadb
    out = subprocess.run(
        [
            "mariadb-binlog",
            "--read-from-remote-server",
            f"--host={db.host}",
            f"--port={db.port}",
            f"--user={db.root_user}",
            f"--password={db.root_password}",
            "-vv",
            "--base64-output=DECODE-ROWS",
            f"--start-position={first.offset}",
            first.file,
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode("utf-8", "replace")
    insert = out.split("### INSERT INTO")[1]
    values = {}
    for line in insert.splitlines():
        if line.startswith("###   @"):
            index, _, rest = line[7:].partition("=")
            values[int(index)] = rest.split(" /*")[0]
    names = events[0].schema.column_names
    row = dict(zip(names, events[0].after or (), strict=True))
    at = {name: values[i + 1] for i, name in enumerate(names)}
    assert at["biu"].startswith("-1") and "18446744073709551615" in at["biu"]
    assert at["d65"] == str(row["d65"])
    assert at["dt6"] == "'9999-12-31 23:59:59.999999'" or at["dt6"] == "9999-12-31 23:59:59.999999"
    assert at["t6"].strip("'") == "838:59:59.999999"
    assert at["y"] == "2155"
    assert at["i"] == "2147483647"


def test_final_images_match_select(stack: StackConnections, workload: tuple[str, str]) -> None:
    """Ground truth: the last image we decoded for each surviving row equals what SELECT returns.

    FLOAT is left out (SELECT prints a rounded decimal of the stored float32, we return the float32
    itself); TIMESTAMP is read with the session in UTC; GEOMETRY from SELECT carries the SRID prefix.
    """
    start, schema = workload
    latest: dict[object, tuple[Any, ...]] = {}
    events = _ours(stack, start, schema)
    for event in events:
        assert event.key is not None
        if event.after is None:
            latest.pop(event.key[0], None)
        else:
            latest[event.key[0]] = event.after
    columns = events[0].schema.columns
    m = stack.mariadb
    conn = m.connect_root(charset="utf8mb4", init_command="SET time_zone = '+00:00'")
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {schema}.alltypes WHERE id IN (1, 2) ORDER BY id")
        selected = cur.fetchall()
    conn.close()
    problems = []
    for row in selected:
        ours = latest[row[0]]
        for col, mine, truth in zip(columns, ours, row, strict=True):
            if col.source_type == "float":
                continue
            if col.source_type.startswith("bit"):
                truth = int.from_bytes(truth, "big")
            elif col.source_type == "geometry":
                truth = truth[4:]
            elif col.source_type.startswith("timestamp") and mine is not None:
                mine = mine.replace(tzinfo=None)
            if mine != truth:
                problems.append(f"id={row[0]} {col.name} ({col.source_type}): ours={mine!r} select={truth!r}")
    assert problems == [], "\n".join(problems)
