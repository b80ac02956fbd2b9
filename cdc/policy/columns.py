"""Column policies: each table version's shape and row images, as consumers may see them.

A table's plan is worked out once per source table version (the schema object is shared by all of
the version's events, so one identity check finds it) and applied to every row change: excluded
columns are dropped, hashed ones become a keyed HMAC-SHA256 in hex, redacted ones a fixed marker,
truncated ones their first N characters or bytes. The output TableSchema is built from the output
columns, so its version is as deterministic as the source's: the same source shape under the same
policies gives the same version after every restart, and a policy change gives a new one.

Primary keys: a hashed key column hashes the event's key too (the same function, so key and image
agree and a serving table's upsert still finds the row). A key column may not be excluded, redacted
or truncated: rows would collide; the daemon stops naming the column.
"""

from __future__ import annotations

import datetime as dt
import decimal
import fnmatch
import hmac
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cdc.config.models import ColumnPolicy, ColumnRule, PoliciesConfig, TextPolicy, TruncatePolicy
from cdc.core.errors import ConfigError, TerminalError
from cdc.core.events import ChangeEvent, ColumnValue, RowImage
from cdc.core.schemas import INTEGER_RANGES, ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.core.table_filter import TableFilter

__all__ = [
    "REDACTED",
    "ColumnPolicies",
    "PolicyViolation",
    "SourceColumnPolicy",
    "UnpresentableValue",
    "column_policies",
    "seal_state_keys",
]

REDACTED = "[redacted]"  # what a redacted non-NULL value becomes (NULL stays NULL)
_STRING = ArrowType(ArrowKind.STRING)
_BINARY = ArrowType(ArrowKind.BINARY)

_INT64 = ArrowType(ArrowKind.INT64)
_INT64_MAX = 2**63 - 1

Rule = ColumnRule
ValueFn = Callable[[ColumnValue], ColumnValue]


class PolicyViolation(ConfigError):
    """A policy cannot be applied to a table as it is (a key column excluded, redacted or truncated)."""


class UnpresentableValue(TerminalError):
    """A value does not fit the shape its column is presented in (bigint overflow, invalid UTF-8)."""


def canonical_bytes(value: ColumnValue) -> bytes:
    """The bytes a value is hashed from: the same value gives the same bytes in every table and type
    family (an INT 42 and a BIGINT UNSIGNED 42 hash alike), so hashed columns still join."""
    if value.__class__ is bytes:
        return value
    if value.__class__ is str:
        return value.encode()
    if value.__class__ is bool:
        return b"1" if value else b"0"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat().encode()
    if isinstance(value, decimal.Decimal | int):
        return str(value).encode()
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, dt.timedelta):
        return str(value // dt.timedelta(microseconds=1)).encode()  # microseconds, sign included
    raise TypeError(f"cannot hash a value of type {type(value).__name__}")


def _hasher(key: bytes) -> ValueFn:
    def hash_value(value: ColumnValue) -> ColumnValue:
        if value is None:
            return None
        # the one-shot digest: OpenSSL's HMAC without a Python HMAC object (1.9 us, not 3.2)
        return hmac.digest(key, canonical_bytes(value), "sha256").hex()

    return hash_value


def _redact(value: ColumnValue) -> ColumnValue:
    return None if value is None else REDACTED


def _truncater(length: int) -> ValueFn:
    def truncate(value: ColumnValue) -> ColumnValue:
        if value is None:
            return None
        if value.__class__ is str or value.__class__ is bytes:
            return value[:length]
        return canonical_bytes(value).decode()[:length]

    return truncate


def _as_bigint(ref: TableRef, column: str) -> ValueFn:
    def bigint(value: ColumnValue) -> ColumnValue:
        if value is not None and value > _INT64_MAX:  # type: ignore[operator]
            raise UnpresentableValue(
                f"policies: {ref}.{column} is presented as bigint, but the source holds a value above "
                f"2^63-1; present it as it is (remove its `bigint` rule) and re-bootstrap {ref}"
            )
        return value

    return bigint


def _as_text(ref: TableRef, column: str, errors: str) -> ValueFn:
    def text(value: ColumnValue) -> ColumnValue:
        if not isinstance(value, bytes):
            return value
        try:
            return value.decode("utf-8", errors)
        except UnicodeDecodeError:
            raise UnpresentableValue(
                f"policies: {ref}.{column} is presented as text ({{text: error}}), but a value is not "
                "valid UTF-8; use {text: replace} to show such bytes as U+FFFD, or remove the rule"
            ) from None

    return text


def _text_type(source_type: str) -> str:
    """``varbinary(255)`` -> ``varchar(255)``, ``binary(16)`` -> ``char(16)``, blobs -> ``text``."""
    low = source_type.lower()
    if low.startswith("varbinary("):
        return "varchar(" + low[len("varbinary(") :]
    if low.startswith("binary("):
        return "char(" + low[len("binary(") :]
    return "text"


@dataclass(frozen=True, slots=True)
class _Plan:
    schema: TableSchema  # the output shape
    keep: tuple[int, ...]  # source column indexes kept, in order
    fns: tuple[ValueFn | None, ...]  # per kept column: its value function (None: as it is)
    key_fns: tuple[ValueFn | None, ...]  # per primary-key column

    def image(self, row: RowImage | None) -> RowImage | None:
        if row is None:
            return None
        return tuple(row[i] if fn is None else fn(row[i]) for i, fn in zip(self.keep, self.fns, strict=True))

    def key(self, key: RowImage | None) -> RowImage | None:
        if key is None:
            return None
        return tuple(v if fn is None else fn(v) for v, fn in zip(key, self.key_fns, strict=True))


@dataclass(frozen=True, slots=True)
class SourceColumnPolicy:
    """A column's policy as a function of its source values (the daemon's own function)."""

    name: str  # "hash", "redact", "truncate 20", "exclude", "text replace"
    kind: ArrowKind  # the kind of the values the copies hold
    apply: ValueFn | None  # source value -> the value the copies hold (None: excluded)
    masked: bool  # protected values: shown by no report, log or error
    excluded: bool = False


def _keeps_keys(rule: Rule | None) -> bool:
    """Whether a key column may carry ``rule``: distinct keys must stay distinct (and present)."""
    if rule is None or rule is ColumnPolicy.HASH or rule is ColumnPolicy.BIGINT:
        return True
    return isinstance(rule, TextPolicy) and rule.text == "error"


class ColumnPolicies:
    """The compiled ``policies:`` section: transforms ChangeEvents (and their schemas)."""

    def __init__(self, config: PoliciesConfig, hash_key: bytes | None) -> None:
        self._rules = tuple(
            (TableFilter((pattern,)), tuple(columns.items())) for pattern, columns in config.tables.items()
        )
        self._hash = _hasher(hash_key) if hash_key is not None else None
        self._plans: dict[str, _Plan | None] = {}  # by source schema version
        self._last_schema: TableSchema | None = None
        self._last_plan: _Plan | None = None

    def _rule(self, db: str, table: str, column: str) -> Rule | None:
        name = column.lower()
        for tables, columns in self._rules:
            if not tables.accepts(db, table):
                continue
            for pattern, rule in columns:
                if fnmatch.fnmatchcase(name, pattern.lower()):
                    return rule
        return None

    def _plan_for(self, schema: TableSchema) -> _Plan | None:
        if schema is self._last_schema:
            return self._last_plan
        key = f"{schema.ref}\x1f{schema.version}"
        if key not in self._plans:
            self._plans[key] = self._compile(schema)
        self._last_schema, self._last_plan = schema, self._plans[key]
        return self._last_plan

    def _compile(self, schema: TableSchema) -> _Plan | None:
        ref = schema.ref
        rules = [self._rule(ref.db, ref.table, c.name) for c in schema.columns]
        if not any(rules):
            return None
        keys = set(schema.primary_key)
        keep: list[int] = []
        columns: list[Column] = []
        fns: list[ValueFn | None] = []
        by_name: dict[str, ValueFn | None] = {}
        for index, (column, rule) in enumerate(zip(schema.columns, rules, strict=True)):
            if column.name in keys and not _keeps_keys(rule):
                assert rule is not None
                what = rule.value if isinstance(rule, ColumnPolicy) else str(rule.model_dump())
                raise PolicyViolation(
                    f"policies: column {ref}.{column.name} is part of the primary key of {ref}; it may "
                    f"be hashed (the key is hashed alike) but not {what} (rows would collide or lose "
                    "their key): change its policy to hash, or remove it"
                )
            if rule is ColumnPolicy.EXCLUDE:
                continue
            fn: ValueFn | None = None
            shaped = column
            if rule is ColumnPolicy.HASH:
                if self._hash is None:  # the config validator requires the key's variable
                    raise PolicyViolation(f"policies: {ref}.{column.name} is hashed but no key is set")
                fn, shaped = self._hash, Column(column.name, "char(64)", _STRING, column.nullable)
            elif rule is ColumnPolicy.REDACT:
                fn = _redact
                shaped = Column(column.name, f"varchar({len(REDACTED)})", _STRING, column.nullable)
            elif isinstance(rule, TruncatePolicy):
                fn = _truncater(rule.truncate)
                binary = column.arrow_type.kind is ArrowKind.BINARY
                shaped = Column(
                    column.name,
                    f"{'varbinary' if binary else 'varchar'}({rule.truncate})",
                    _BINARY if binary else _STRING,
                    column.nullable,
                )
            elif rule is ColumnPolicy.BIGINT:
                if column.arrow_type.kind not in INTEGER_RANGES:
                    raise PolicyViolation(
                        f"policies: {ref}.{column.name} is {column.source_type}; `bigint` presents "
                        "integer columns only"
                    )
                fn = _as_bigint(ref, column.name) if column.arrow_type.kind is ArrowKind.UINT64 else None
                shaped = Column(column.name, "bigint", _INT64, column.nullable)
            elif isinstance(rule, TextPolicy) and column.arrow_type.kind is ArrowKind.BINARY:
                # (a text column under a text rule is already what it asks for)
                fn = _as_text(ref, column.name, "strict" if rule.text == "error" else "replace")
                shaped = Column(column.name, _text_type(column.source_type), _STRING, column.nullable)
            keep.append(index)
            columns.append(shaped)
            fns.append(fn)
            by_name[column.name] = fn
        out = TableSchema.build(ref, tuple(columns), schema.primary_key)
        return _Plan(out, tuple(keep), tuple(fns), tuple(by_name.get(k) for k in schema.primary_key))

    def source_column(self, ref: TableRef, column: str, kind: ArrowKind) -> SourceColumnPolicy | None:
        """What the policies do to the values of the source column ``ref.column`` (of Arrow ``kind``),
        for a comparison of the source with its copies (the reconciler applies it to source values);
        None when the copies hold the values as they are (no rule, or a rule that keeps the values)."""
        rule = self._rule(ref.db, ref.table, column)
        if rule is None or rule is ColumnPolicy.BIGINT:
            return None
        if rule is ColumnPolicy.EXCLUDE:
            return SourceColumnPolicy("exclude", kind, None, masked=True, excluded=True)
        if rule is ColumnPolicy.HASH:
            if self._hash is None:
                raise PolicyViolation(f"policies: {ref}.{column} is hashed but no key is set")
            return SourceColumnPolicy("hash", ArrowKind.STRING, self._hash, masked=True)
        if rule is ColumnPolicy.REDACT:
            return SourceColumnPolicy("redact", ArrowKind.STRING, _redact, masked=True)
        if isinstance(rule, TruncatePolicy):
            out = ArrowKind.BINARY if kind is ArrowKind.BINARY else ArrowKind.STRING
            return SourceColumnPolicy(
                f"truncate {rule.truncate}", out, _truncater(rule.truncate), masked=True
            )
        if isinstance(rule, TextPolicy) and kind is ArrowKind.BINARY:
            fn = _as_text(ref, column, "strict" if rule.text == "error" else "replace")
            return SourceColumnPolicy(f"text {rule.text}", ArrowKind.STRING, fn, masked=False)
        return None

    def table_schema(self, schema: TableSchema) -> TableSchema:
        """The shape consumers see of ``schema``."""
        plan = self._plan_for(schema)
        return schema if plan is None else plan.schema

    def event(self, event: ChangeEvent) -> ChangeEvent:
        plan = self._plan_for(event.schema)
        if plan is None:
            return event
        return ChangeEvent(
            event.op,
            plan.schema,
            plan.key(event.key),
            plan.image(event.before),
            plan.image(event.after),
            event.position,
            event.source_ts_ms,
            event.transaction_id,
        )

    def events(self, events: Sequence[ChangeEvent]) -> tuple[ChangeEvent, ...]:
        return tuple(self.event(e) for e in events)


def column_policies(
    config: PoliciesConfig | None, environ: dict[str, str] | None = None
) -> ColumnPolicies | None:
    """The config's policies, with the HMAC key read from its environment variable; None if none."""
    seal_state_keys(config, environ)
    if config is None or not config.tables:
        return None
    key: bytes | None = None
    if config.hash_key_env is not None:
        value = (os.environ if environ is None else environ).get(config.hash_key_env, "")
        hashed = any(r is ColumnPolicy.HASH for cols in config.tables.values() for r in cols.values())
        if hashed and not value:
            raise ConfigError(
                f"policies.hash_key_env: the environment variable {config.hash_key_env} that holds the "
                "HMAC key for hashed columns is not set (or empty); set it to a long random secret, the "
                "same one for every pipeline whose hashed columns must join"
            )
        key = value.encode() if value else None
    return ColumnPolicies(config, key)


def seal_state_keys(config: PoliciesConfig | None, environ: Mapping[str, str] | None = None) -> None:
    """With a hash key set, this process writes (and reads) the snapshot state's keys sealed.

    Without one it writes them plain: the seal is set (or dropped) for each config loaded, so a
    process that handles one pipeline after another never seals with the previous one's key.
    """
    from cdc.policy.seal import StateKeySeal
    from snapshotter.state import use_key_seal

    env_name = None if config is None else config.hash_key_env
    value = "" if env_name is None else (os.environ if environ is None else environ).get(env_name, "")
    use_key_seal(StateKeySeal(value.encode(), env_name) if env_name is not None and value else None)
