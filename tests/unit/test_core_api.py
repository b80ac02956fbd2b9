import subprocess
import sys

import cdc.core

EXPECTED = {
    "ArrowKind",
    "ArrowType",
    "BinlogPurged",
    "ChangeEvent",
    "Column",
    "ColumnValue",
    "ConfigError",
    "Gtid",
    "HeadwaterError",
    "Op",
    "Position",
    "PositionFormatError",
    "RestartPoint",
    "RowImage",
    "SchemaChange",
    "SchemaChangeKind",
    "SourceProtocolError",
    "SourceRecord",
    "SourceUnavailable",
    "TableRef",
    "TableSchema",
    "TerminalError",
    "TransactionEnd",
    "TransientError",
    "UnsupportedColumnType",
    "ZeroDateError",
}
HEAVY = ("pymysqlreplication", "pymysql", "confluent_kafka", "pyarrow", "pyiceberg", "sqlalchemy", "pydantic")


def test_all_is_pinned() -> None:
    assert set(cdc.core.__all__) == EXPECTED
    for name in cdc.core.__all__:
        assert hasattr(cdc.core, name)


def test_importing_core_pulls_in_no_heavy_dependency() -> None:
    code = (
        f"import sys, cdc.core\nheavy = [m for m in {HEAVY!r} if m in sys.modules]\nprint(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_error_markers() -> None:
    from cdc.core import errors

    assert issubclass(errors.BinlogPurged, errors.TerminalError)
    assert issubclass(errors.SourceUnavailable, errors.TransientError)
    assert not issubclass(errors.SourceUnavailable, errors.TerminalError)
    exc = errors.BinlogPurged("mdb1:x", "Could not find first log")
    assert "cdc bootstrap" in str(exc)
    unsupported = errors.UnsupportedColumnType("db", "t", "c", "weird")
    assert "db.t.c" in str(unsupported) and "weird" in str(unsupported)
