"""What the snapshotter must remember across restarts, and its text form.

The state travels with the stream's own commits (``SnapshotProgress.state``): in Kafka mode inside
the checkpoint record of the Kafka transaction that holds the snapshot rows, in embedded mode in a
file written once the sinks have flushed them. So a bootstrap killed at any moment resumes after the
last chunk whose rows are committed, never from the start.

- ``known``: the tables the pipeline has already bootstrapped or decided not to (``never`` mode, or
  present at the first start). A captured table missing from it appeared later (a new include
  pattern) and is bootstrapped under ``initial`` and ``when_needed``.
- ``jobs``: tables being bootstrapped, in order, each with the key after which the next chunk starts.
- ``finished``: the last few finished table bootstraps, for ``cdc status`` and ``cdc bootstrap``.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from cdc.core.errors import ConfigError
from cdc.core.events import ColumnValue, RowImage
from cdc.core.schemas import TableRef

__all__ = [
    "FinishedTable",
    "KeySeal",
    "SnapshotState",
    "TableJob",
    "decode_key",
    "encode_key",
    "use_key_seal",
]

_FORMAT = 1
_KEEP_FINISHED = 50


def _encode_value(value: ColumnValue) -> list[Any]:
    # tagged, so that a key read back has exactly the type it was read with (a key compares with the
    # stream's keys and is sent back to the server as the keyset bound)
    if value is None:
        return ["n"]
    if value.__class__ is bool:
        return ["?", value]
    if isinstance(value, int):
        return ["i", str(value)]  # as text: unsigned BIGINT does not fit a JSON number everywhere
    if isinstance(value, float):
        return ["f", repr(value)]
    if isinstance(value, decimal.Decimal):
        return ["d", str(value)]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, bytes):
        return ["b", base64.b64encode(value).decode()]
    if isinstance(value, dt.datetime):
        return ["t", value.isoformat()]
    if isinstance(value, dt.date):
        return ["D", value.isoformat()]
    if isinstance(value, dt.timedelta):
        return ["T", value.days, value.seconds, value.microseconds]
    raise TypeError(f"a key value of type {type(value).__name__} cannot be stored")


def _decode_value(item: Sequence[Any]) -> ColumnValue:
    tag = item[0]
    if tag == "n":
        return None
    if tag == "?":
        return bool(item[1])
    if tag == "i":
        return int(item[1])
    if tag == "f":
        return float(item[1])
    if tag == "d":
        return decimal.Decimal(item[1])
    if tag == "s":
        return str(item[1])
    if tag == "b":
        return base64.b64decode(item[1])
    if tag == "t":
        return dt.datetime.fromisoformat(item[1])
    if tag == "D":
        return dt.date.fromisoformat(item[1])
    if tag == "T":
        return dt.timedelta(days=item[1], seconds=item[2], microseconds=item[3])
    raise ValueError(f"unknown key value tag {tag!r}")


class KeySeal(Protocol):
    def seal(self, data: bytes) -> str: ...
    def open(self, token: str) -> bytes: ...


# Column policies may hash a key column for every consumer while its raw values are personal data;
# the resume point must not hold them raw either. A process whose config has a hash key registers
# a seal (cdc.policy), and keys are then written sealed (tag "x") and read back through it.
_SEAL: list[KeySeal] = []


def use_key_seal(seal: KeySeal | None) -> None:
    _SEAL[:] = [] if seal is None else [seal]


def encode_key(key: RowImage) -> list[list[Any]]:
    items = [_encode_value(v) for v in key]
    if _SEAL:
        return [["x", _SEAL[0].seal(orjson.dumps(items))]]
    return items


def decode_key(items: Sequence[Sequence[Any]]) -> RowImage:
    if items and items[0][0] == "x":
        if not _SEAL:
            raise ConfigError(
                "the snapshot state holds sealed keys (column policies with a hash key): run with the "
                "environment variable named by policies.hash_key_env set"
            )
        items = orjson.loads(_SEAL[0].open(items[0][1]))
    return tuple(_decode_value(item) for item in items)


def _ref(text: str) -> TableRef:
    db, _, table = text.partition(".")
    return TableRef(db, table)


@dataclass(frozen=True, slots=True)
class TableJob:
    """One table being bootstrapped: chunks are read after ``after`` (None: from the first key)."""

    request: str  # the request's id (``cdc bootstrap`` prints it)
    table: TableRef
    after: RowImage | None = None
    rows: int = 0  # snapshot rows emitted so far
    chunks: int = 0
    started_at: str = ""  # ISO time, UTC
    replace: bool = False  # a truncate goes before the first chunk (re-bootstrap after a gap)
    total_estimate: int = 0  # the table's row estimate when the job started (for progress/ETA)
    # a repair: only these keys are read again (rows found go out as op r, keys the source does not
    # have as deletes); None: the whole table, in key chunks
    keys: tuple[RowImage, ...] | None = None

    @property
    def is_repair(self) -> bool:
        return self.keys is not None

    def advanced(self, after: RowImage | None, rows: int, keys_done: int = 0) -> TableJob:
        keys = self.keys[keys_done:] if self.keys is not None else None
        return replace(
            self, after=after, rows=self.rows + rows, chunks=self.chunks + 1, replace=False, keys=keys
        )


@dataclass(frozen=True, slots=True)
class FinishedTable:
    request: str
    table: TableRef
    rows: int
    chunks: int
    started_at: str
    finished_at: str
    refused: str = ""  # why the table was not bootstrapped (e.g. it has no primary key)

    def to_json(self) -> dict[str, object]:
        return {
            "request": self.request,
            "table": str(self.table),
            "rows": self.rows,
            "chunks": self.chunks,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            **({"refused": self.refused} if self.refused else {}),
        }


@dataclass(frozen=True, slots=True)
class SnapshotState:
    known: frozenset[TableRef] = frozenset()
    jobs: tuple[TableJob, ...] = ()
    finished: tuple[FinishedTable, ...] = field(default=())
    initialized: bool = False  # the first start's decision (bootstrap all or none) was taken
    # the position of the last snapshot row emitted: rows emitted later at the same binlog boundary
    # (after a restart that resumes exactly there) must take the anchor's next row numbers, or sinks
    # that hold the earlier ones would skip them as already applied
    last_position: str | None = None

    @property
    def current(self) -> TableJob | None:
        return self.jobs[0] if self.jobs else None

    def with_jobs(self, jobs: Sequence[TableJob]) -> SnapshotState:
        """Append jobs for tables not already queued (a table is bootstrapped once at a time)."""
        queued = {job.table for job in self.jobs}
        fresh = tuple(job for job in jobs if job.is_repair or job.table not in queued)
        return replace(self, jobs=self.jobs + fresh, known=self.known | {j.table for j in fresh})

    def queued(
        self,
        request: str,
        tables: Sequence[TableRef],
        *,
        replace: bool = False,
        keys: Mapping[TableRef, tuple[RowImage, ...]] | None = None,
    ) -> SnapshotState:
        """Jobs for ``tables`` under the request ``request``, started now (``keys``: a repair's)."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return self.with_jobs(
            [
                TableJob(request, t, started_at=now, replace=replace, keys=None if keys is None else keys[t])
                for t in tables
            ]
        )

    def advanced(self, job: TableJob) -> SnapshotState:
        assert self.jobs and self.jobs[0].table == job.table
        return replace(self, jobs=(job, *self.jobs[1:]))

    def finished_current(self, job: TableJob, refused: str = "") -> SnapshotState:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        done = FinishedTable(job.request, job.table, job.rows, job.chunks, job.started_at, now, refused)
        return replace(
            self, jobs=self.jobs[1:], finished=(*self.finished, done)[-_KEEP_FINISHED:], known=self.known
        )

    def to_text(self) -> str:
        return orjson.dumps(
            {
                "format": _FORMAT,
                "initialized": self.initialized,
                **({} if self.last_position is None else {"last_position": self.last_position}),
                "known": sorted(str(t) for t in self.known),
                "jobs": [
                    {
                        "request": j.request,
                        "table": str(j.table),
                        "after": None if j.after is None else encode_key(j.after),
                        "rows": j.rows,
                        "chunks": j.chunks,
                        "started_at": j.started_at,
                        "replace": j.replace,
                        "total_estimate": j.total_estimate,
                        **({} if j.keys is None else {"keys": [encode_key(k) for k in j.keys]}),
                    }
                    for j in self.jobs
                ],
                "finished": [f.to_json() for f in self.finished],
            }
        ).decode()

    @classmethod
    def parse(cls, text: str | None) -> SnapshotState:
        if not text:
            return cls()
        try:
            data: Any = orjson.loads(text)
            if data.get("format") != _FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            jobs = tuple(
                TableJob(
                    request=str(j["request"]),
                    table=_ref(j["table"]),
                    after=None if j["after"] is None else decode_key(j["after"]),
                    rows=int(j["rows"]),
                    chunks=int(j["chunks"]),
                    started_at=str(j["started_at"]),
                    replace=bool(j["replace"]),
                    total_estimate=int(j.get("total_estimate", 0)),
                    keys=None if j.get("keys") is None else tuple(decode_key(k) for k in j["keys"]),
                )
                for j in data["jobs"]
            )
            finished = tuple(
                FinishedTable(
                    str(f["request"]),
                    _ref(f["table"]),
                    int(f["rows"]),
                    int(f["chunks"]),
                    str(f["started_at"]),
                    str(f["finished_at"]),
                    str(f.get("refused", "")),
                )
                for f in data["finished"]
            )
            known = frozenset(_ref(t) for t in data["known"])
            last = data.get("last_position")
            return cls(known, jobs, finished, bool(data["initialized"]), None if last is None else str(last))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"the stored snapshot state is unreadable ({exc}); it is kept in the pipeline's "
                "checkpoint (Kafka mode) or in state_dir/snapshot-state.json (embedded mode)"
            ) from exc
