"""From a source column to a target column type per dialect, and the value codecs that keep it exact.

Every value must come back out of the target equal to what went in (``decode(encode(v)) == v``);
where a dialect has no exact native type the value is stored in a form that is exact (documented in
``sinks.sql``'s package docstring). Widening rules for schema changes live here too, next to the
types they compare.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.types import TypeEngine, UserDefinedType

from cdc.core.schemas import INTEGER_RANGES, ArrowKind, ArrowType, Column

__all__ = [
    "Dialect",
    "Family",
    "TargetType",
    "checker",
    "decoder",
    "encoder",
    "is_widening",
    "key_bytes",
    "mariadb_key_budget",
    "pg_copy_type",
    "problem",
    "sa_type",
    "target_type",
]

_UTC = dt.UTC
_INT64_MAX = 2**63 - 1
# MariaDB indexes at most 3072 bytes per key part; utf8mb4 takes up to 4 bytes per character.
_MARIADB_KEY_CHARS = 768
_MARIADB_KEY_BYTES = 3072


class Dialect(enum.Enum):
    POSTGRESQL = "postgresql"
    MARIADB = "mariadb"  # also MySQL
    SQLITE = "sqlite"

    @classmethod
    def of(cls, name: str) -> Dialect:
        if name == "postgresql":
            return cls.POSTGRESQL
        if name in ("mysql", "mariadb"):
            return cls.MARIADB
        if name == "sqlite":
            return cls.SQLITE
        raise ValueError(f"unsupported SQL dialect {name!r} (postgresql, mariadb/mysql, sqlite)")


class Family(enum.Enum):
    """What a target type can hold, for deciding whether a type change is a widening."""

    INT = "int"  # bounds = (min, max)
    DECIMAL = "decimal"  # precision, scale
    TEXT = "text"  # length in characters, None = unbounded
    BINARY = "binary"  # length in bytes, None = unbounded
    EXACT = "exact"  # anything else: must stay the same Arrow kind


_INT_BOUNDS = INTEGER_RANGES
_LENGTH_RE = re.compile(r"^(?:var)?(?:char|binary)\((\d+)\)")


@dataclass(frozen=True, slots=True)
class TargetType:
    """A column's shape in the target: its Arrow kind plus what bounds it."""

    kind: ArrowKind
    family: Family
    bounds: tuple[int, int] = (0, 0)  # INT
    precision: int = 0  # DECIMAL
    scale: int = 0  # DECIMAL
    length: int | None = None  # TEXT / BINARY


def target_type(column: Column) -> TargetType:
    """The target shape of a source column (dialect-independent; :func:`sa_type` renders it)."""
    arrow = column.arrow_type
    kind = arrow.kind
    if kind in _INT_BOUNDS:
        return TargetType(kind, Family.INT, bounds=_INT_BOUNDS[kind])
    if kind is ArrowKind.DECIMAL:
        return TargetType(kind, Family.DECIMAL, precision=arrow.precision, scale=arrow.scale)
    if kind in (ArrowKind.STRING, ArrowKind.BINARY):
        match = _LENGTH_RE.match(column.source_type.lower())
        length = int(match[1]) if match else None
        family = Family.TEXT if kind is ArrowKind.STRING else Family.BINARY
        return TargetType(kind, family, length=length)
    return TargetType(kind, Family.EXACT)


def is_widening(old: TargetType, new: TargetType) -> bool:
    """True if every value ``old`` holds is exactly representable in ``new`` (equal counts as widening)."""
    if old == new:
        return True
    if old.family is not new.family:
        return False
    if old.family is Family.INT:
        return new.bounds[0] <= old.bounds[0] and old.bounds[1] <= new.bounds[1]
    if old.family is Family.DECIMAL:
        return new.scale >= old.scale and new.precision - new.scale >= old.precision - old.scale
    if old.family in (Family.TEXT, Family.BINARY):
        return new.length is None or (old.length is not None and new.length >= old.length)
    return False


class _SqliteNoAffinity(UserDefinedType[Any]):
    """SQLite column declared ``BLOB``: no type affinity, values are stored as bound (see encoder)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "BLOB"


class _MariaDbTime(mysql.TIME):
    """TIME(6) read as the driver's timedelta (SQLAlchemy would fold it into a time of day)."""

    cache_ok = True

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Any:
        return None


def key_bytes(target: TargetType) -> int | None:
    """Bytes a key column takes in a MariaDB index; None for unbounded text/binary (sized to fit)."""
    if target.family is Family.TEXT:
        return None if target.length is None else 4 * target.length
    if target.family is Family.BINARY:
        return target.length
    return 32 if target.family is Family.DECIMAL else 8


def mariadb_key_budget(key_targets: list[TargetType]) -> int:
    """Bytes each unbounded text/binary key column may take so that the whole key fits InnoDB's 3072."""
    sizes = [key_bytes(t) for t in key_targets]
    unbounded = sum(1 for s in sizes if s is None)
    fixed = sum(s for s in sizes if s is not None)
    return max(4, (_MARIADB_KEY_BYTES - fixed) // max(unbounded, 1))


def sa_type(target: TargetType, dialect: Dialect, is_key: bool, key_budget: int = 3072) -> TypeEngine[Any]:
    """The SQLAlchemy type that stores ``target`` exactly on ``dialect``.

    ``key_budget``: the index bytes an unbounded text or binary key column may take (MariaDB).
    """
    k, d = target.kind, dialect
    if target.family is Family.INT:
        return _int_type(target, d)
    if k is ArrowKind.BOOL:
        return sa.Boolean(create_constraint=False)
    if k in (ArrowKind.FLOAT32, ArrowKind.FLOAT64):
        # float32 too: FLOAT/REAL print only ~6 significant digits in the text protocols, so a float32
        # read back as text would not equal the double it was sent as.
        return mysql.DOUBLE(asdecimal=False) if d is Dialect.MARIADB else sa.Double()
    if k is ArrowKind.DECIMAL:
        if d is Dialect.SQLITE:
            return sa.Text()  # SQLite has no exact decimal: the canonical decimal string
        return sa.Numeric(target.precision, target.scale, asdecimal=True)
    if k is ArrowKind.STRING:
        if d is Dialect.MARIADB:
            if target.length is not None:
                return mysql.VARCHAR(target.length, charset="utf8mb4", collation="utf8mb4_nopad_bin")
            if is_key:
                chars = min(_MARIADB_KEY_CHARS, key_budget // 4)
                return mysql.VARCHAR(chars, charset="utf8mb4", collation="utf8mb4_nopad_bin")
            return mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_nopad_bin")
        if d is Dialect.POSTGRESQL and target.length is not None:
            return sa.String(target.length)
        return sa.Text()
    if k is ArrowKind.BINARY:
        if d is Dialect.MARIADB:
            if target.length is not None:
                return mysql.VARBINARY(target.length)
            return mysql.VARBINARY(min(_MARIADB_KEY_BYTES, key_budget)) if is_key else mysql.LONGBLOB()
        return postgresql.BYTEA() if d is Dialect.POSTGRESQL else sa.LargeBinary()
    if k is ArrowKind.DATE:
        return sa.Date()
    if k is ArrowKind.TIMESTAMP:
        if d is Dialect.POSTGRESQL:
            return postgresql.TIMESTAMP(timezone=False, precision=6)
        return mysql.DATETIME(fsp=6) if d is Dialect.MARIADB else sa.DateTime()
    if k is ArrowKind.TIMESTAMP_UTC:
        if d is Dialect.POSTGRESQL:
            return postgresql.TIMESTAMP(timezone=True, precision=6)
        # MariaDB TIMESTAMP ends in 2038 and follows the session time zone: DATETIME(6) holding UTC.
        return mysql.DATETIME(fsp=6) if d is Dialect.MARIADB else sa.DateTime()
    if k is ArrowKind.DURATION:
        if d is Dialect.POSTGRESQL:
            return postgresql.INTERVAL(precision=6)
        return _MariaDbTime(fsp=6) if d is Dialect.MARIADB else sa.BigInteger()  # SQLite: microseconds
    raise ValueError(f"no target type for Arrow kind {k}")


def _int_type(target: TargetType, d: Dialect) -> TypeEngine[Any]:
    k = target.kind
    if d is Dialect.MARIADB:
        unsigned = target.bounds[0] == 0
        cls: Callable[..., TypeEngine[Any]] = {
            ArrowKind.INT8: mysql.TINYINT, ArrowKind.UINT8: mysql.TINYINT,
            ArrowKind.INT16: mysql.SMALLINT, ArrowKind.UINT16: mysql.SMALLINT,
            ArrowKind.INT32: mysql.INTEGER, ArrowKind.UINT32: mysql.INTEGER,
            ArrowKind.INT64: mysql.BIGINT, ArrowKind.UINT64: mysql.BIGINT,
        }[k]  # fmt: skip
        return cls(unsigned=unsigned)
    if k is ArrowKind.UINT64:
        if d is Dialect.POSTGRESQL:
            return sa.Numeric(20, 0, asdecimal=True)  # PostgreSQL has no unsigned 64-bit integer
        return _SqliteNoAffinity()
    if d is Dialect.SQLITE:
        return sa.Integer()  # one 64-bit INTEGER storage class; "INTEGER" keeps rowid aliasing simple
    if k in (ArrowKind.INT8, ArrowKind.UINT8, ArrowKind.INT16):
        return sa.SmallInteger()
    if k in (ArrowKind.INT32, ArrowKind.UINT16):
        return sa.Integer()
    return sa.BigInteger()  # INT64, UINT32


Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


def _sqlite_uint64(value: int) -> int | str:
    # Above INT64_MAX SQLite would turn the number into a REAL: keep it as 20-digit text instead.
    # Zero-padding keeps text order = numeric order, and every INTEGER sorts before every TEXT.
    return value if value <= _INT64_MAX else f"{value:020d}"


def _utc_naive(value: dt.datetime) -> dt.datetime:
    return value.astimezone(_UTC).replace(tzinfo=None)


def _micros(value: dt.timedelta) -> int:
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


def _mariadb_time(value: dt.timedelta) -> str:
    # pymysql's own escaping mangles negative times with minutes (-1:30 becomes -2:30).
    micros = _micros(value)
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    seconds, frac = divmod(micros, 1_000_000)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"{sign}{hours:02d}:{minute:02d}:{sec:02d}.{frac:06d}"


def encoder(arrow: ArrowType, dialect: Dialect) -> Encoder | None:
    """Python value -> bound parameter, or None when the driver binds the value exactly as it is."""
    k, d = arrow.kind, dialect
    if d is Dialect.SQLITE:
        if k is ArrowKind.UINT64:
            return _sqlite_uint64
        if k is ArrowKind.DECIMAL:
            return str
        if k is ArrowKind.DURATION:
            return _micros
        if k is ArrowKind.TIMESTAMP_UTC:
            return _utc_naive
    if d is Dialect.MARIADB:
        if k is ArrowKind.TIMESTAMP_UTC:
            return _utc_naive
        if k is ArrowKind.DURATION:
            return _mariadb_time
    return None


def decoder(arrow: ArrowType, dialect: Dialect) -> Decoder | None:
    """Value read from the target -> the source's Python value (None: already exact)."""
    k, d = arrow.kind, dialect
    if k is ArrowKind.UINT64:
        return int
    if k is ArrowKind.BOOL:
        return bool
    if k is ArrowKind.DECIMAL and d is Dialect.SQLITE:
        return decimal.Decimal
    if k is ArrowKind.TIMESTAMP_UTC:
        if d is Dialect.POSTGRESQL:
            return lambda v: v.astimezone(_UTC)
        return lambda v: v.replace(tzinfo=_UTC)
    if k is ArrowKind.DURATION and d is Dialect.SQLITE:
        return lambda v: dt.timedelta(microseconds=v)
    if k is ArrowKind.BINARY:
        return bytes  # memoryview (psycopg) / bytearray
    return None


def problem(value: object, target: TargetType, dialect: Dialect) -> str | None:
    """Why ``value`` cannot be stored exactly in ``target`` on ``dialect``; None if it can."""
    if value is None:
        return None
    if isinstance(value, str):
        if dialect is Dialect.POSTGRESQL and "\x00" in value:
            return "text contains a NUL character, which PostgreSQL text cannot store"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "text is not valid Unicode (lone surrogate)"
        if target.length is not None and dialect is not Dialect.SQLITE and len(value) > target.length:
            return f"text of {len(value)} characters exceeds the target length {target.length}"
    elif isinstance(value, bytes):
        if target.length is not None and dialect is Dialect.MARIADB and len(value) > target.length:
            return f"{len(value)} bytes exceed the target length {target.length}"
    elif isinstance(value, float) and not math.isfinite(value) and dialect is not Dialect.POSTGRESQL:
        text = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        if dialect is Dialect.MARIADB:  # DOUBLE has neither (pymysql refuses to send them)
            return f"{text} cannot be stored in MariaDB"
        if value != value:  # SQLite binds a NaN as NULL without a word; its REAL holds ±Infinity
            return "NaN cannot be stored in SQLite (it would become NULL)"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def checker(target: TargetType, dialect: Dialect) -> Callable[[Any], str | None] | None:
    """A fast per-value :func:`problem` for one column; None when no value of it can be a problem."""
    if target.family is Family.TEXT:
        nul_bad = dialect is Dialect.POSTGRESQL
        limit = target.length if dialect is not Dialect.SQLITE else None

        def check_text(value: Any) -> str | None:
            if value is None or (
                (limit is None or len(value) <= limit)
                and not (nul_bad and "\x00" in value)
                and (value.isascii() or _encodable(value))
            ):
                return None
            return problem(value, target, dialect)

        return check_text
    if target.family is Family.BINARY and dialect is Dialect.MARIADB and target.length is not None:
        return lambda value: problem(value, target, dialect)
    if target.kind in (ArrowKind.FLOAT32, ArrowKind.FLOAT64) and dialect is not Dialect.POSTGRESQL:
        return lambda value: problem(value, target, dialect)
    return None


_PG_COPY_TYPES = {
    ArrowKind.BOOL: "bool",
    ArrowKind.INT8: "int2",
    ArrowKind.UINT8: "int2",
    ArrowKind.INT16: "int2",
    ArrowKind.INT32: "int4",
    ArrowKind.UINT16: "int4",
    ArrowKind.INT64: "int8",
    ArrowKind.UINT32: "int8",
    ArrowKind.UINT64: "numeric",
    ArrowKind.FLOAT32: "float8",
    ArrowKind.FLOAT64: "float8",
    ArrowKind.DECIMAL: "numeric",
    ArrowKind.STRING: "text",
    ArrowKind.BINARY: "bytea",
    ArrowKind.DATE: "date",
    ArrowKind.TIMESTAMP: "timestamp",
    ArrowKind.TIMESTAMP_UTC: "timestamptz",
    ArrowKind.DURATION: "interval",
}


def pg_copy_type(arrow: ArrowType) -> str:
    """The PostgreSQL type name binary COPY sends a column's values as (matches :func:`sa_type`)."""
    return _PG_COPY_TYPES[arrow.kind]
