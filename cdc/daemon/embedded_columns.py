"""Embedded mode's batches as column chunks: the captured ChangeEvents as Arrow columns.

`cdc sink` hands its sinks ``ChunkRecords`` (:mod:`cdc.stream.kafka_chunks`): chunks that a sink
knowing the column-wise apply (sinks/sql/columnar_apply.py, sinks/iceberg/columnar_apply.py) reads
as :class:`~cdc.stream.arrow_changes.ChangeColumns`, and any other sink iterates as ChangeEvents.
Embedded mode has no envelopes to decode: its chunks are runs of the batch's own events, one table
version each, turned into columns only when a sink asks (``columns()``), once for every sink.

The columns hold the SAME values the Kafka path's decode gives for the same events, or there are
none (``columns()`` is None and the sink takes the chunk's events): each column's Python values
must all be of the class its Arrow kind is captured as (no bool among ints, no datetime among dates,
no str in a binary column, no zone on a DATETIME), floats finite, decimals within their scale, text
valid UTF-8; a chunk holding a truncate, an update that moves its key or an update of a keyless
table, or a TIME column, has none, as in :func:`cdc.stream.arrow_changes.change_columns`.
``json_image`` (the envelope's spelling: text for decimals, dates, times and base64 binary) is made
per column only when a sink reads it (SQLite and MariaDB bind some columns from it; PostgreSQL's
binary COPY and Iceberg never do). ``tests/unit/test_embcol_columns.py`` compares both decodes.

Most columns are made by the compiled ``image_columns`` (native/headwater_native/src/image_columns.rs)
in one pass over the images, the class and range checks included: transposing, checking each
value's class and ``pa.array`` per column cost ~1.0 of the 1.3-1.45 us of CPU per change of the
benchmark's 50,000 changes here, 0.87-0.93 with it; and the compiled ``position_texts`` spells the
positions (0.34 -> 0.14): 0.75-0.83 in all. Decimals, float32 and zoned timestamps are still made
with ``pa.array``; ``tests/unit/test_embpg_image_columns.py`` compares both ways on every kind,
every refusal and every position form.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast, overload

import pyarrow as pa
import pyarrow.compute as pc

from cdc.core.events import ChangeEvent, ColumnValue, Op, SchemaChange
from cdc.core.positions import LSN_FILE_BASE, Gtid, Position, lsn_position
from cdc.core.schemas import ArrowKind, TableSchema
from cdc.daemon.embedded_meta_columns import text_column
from cdc.stream.arrow_changes import INT_KINDS, ChangeColumns
from cdc.stream.json_values import ValueEncoder, column_encoder
from cdc.stream.kafka_chunks import ChunkRecords

try:
    from headwater_native import image_columns as _compiled
    from headwater_native import position_texts as _compiled_positions
except ImportError:  # pragma: no cover - an older build: the columns are made in Python, as before
    _compiled = _compiled_positions = None  # type: ignore[assignment]
# (tests set them to None for the Python path)
_image_columns = _compiled
_position_texts = _compiled_positions


def _tag(p: Position) -> str:
    return p.to_string().split(":", 1)[0]


# the three forms' tags, as Position.to_string spells them
_TAGS = (
    _tag(Position(Gtid(0, 0, 0), "x.000001", 0)),
    _tag(Position(Gtid(0, 0, 0), "x.000001", 0, era=1)),
    _tag(lsn_position(0, 0, 0)) + ":",
    LSN_FILE_BASE,
)

__all__ = ["EventChunk", "build_columns", "event_chunks", "events_as_columns"]

_FLOATS = frozenset({ArrowKind.FLOAT32, ArrowKind.FLOAT64})
_NONE = type(None)
_TZINFO = operator.attrgetter("tzinfo")
# the classes a column's captured values may have for its columns to be exact (None aside)
_CLASSES: dict[ArrowKind, frozenset[type]] = {
    **{kind: frozenset({int, _NONE}) for kind in INT_KINDS},
    ArrowKind.BOOL: frozenset({bool, _NONE}),
    ArrowKind.FLOAT32: frozenset({float, _NONE}),
    ArrowKind.FLOAT64: frozenset({float, _NONE}),
    ArrowKind.DECIMAL: frozenset({decimal.Decimal, _NONE}),
    ArrowKind.STRING: frozenset({str, _NONE}),
    ArrowKind.BINARY: frozenset({bytes, _NONE}),
    ArrowKind.DATE: frozenset({dt.date, _NONE}),
    ArrowKind.TIMESTAMP: frozenset({dt.datetime, _NONE}),
    ArrowKind.TIMESTAMP_UTC: frozenset({dt.datetime, _NONE}),
}
# the kinds native/headwater_native/src/image_columns.rs makes (0: left to pa.array here)
_CODES: dict[ArrowKind, int] = {
    ArrowKind.BOOL: 1,
    ArrowKind.INT8: 2,
    ArrowKind.INT16: 3,
    ArrowKind.INT32: 4,
    ArrowKind.INT64: 5,
    ArrowKind.UINT8: 6,
    ArrowKind.UINT16: 7,
    ArrowKind.UINT32: 8,
    ArrowKind.UINT64: 9,
    ArrowKind.FLOAT64: 10,
    ArrowKind.STRING: 11,
    ArrowKind.BINARY: 12,
    ArrowKind.DATE: 13,
    ArrowKind.TIMESTAMP: 14,
}
_CREATE, _UPDATE, _DELETE, _READ, _TRUNCATE = Op.CREATE, Op.UPDATE, Op.DELETE, Op.READ, Op.TRUNCATE
_REFUSED = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    TypeError,
    ValueError,
)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a table version's columns are built with (once per version)."""

    targets: tuple[pa.DataType, ...]
    classes: tuple[frozenset[type], ...]
    # per column: None when the JSON form is the typed image itself (ints, bools, text)
    encoders: tuple[ValueEncoder | None, ...]
    key: tuple[int, ...]
    codes: list[int]  # image_columns.rs's code of each column (0: made with pa.array)


_shapes: dict[str, _Shape | None] = {}


def _shape(schema: TableSchema) -> _Shape | None:
    if schema.version in _shapes:
        return _shapes[schema.version]
    shape = None
    kinds = [c.arrow_type.kind for c in schema.columns]
    if all(kind in _CLASSES for kind in kinds):  # no TIME column (the envelope's decode has none)
        shape = _Shape(
            tuple(c.arrow_type.to_pyarrow() for c in schema.columns),
            tuple(_CLASSES[kind] for kind in kinds),
            tuple(
                None if kind in INT_KINDS or kind in (ArrowKind.BOOL, ArrowKind.STRING) else column_encoder(c)
                for c, kind in zip(schema.columns, kinds, strict=True)
            ),
            schema.key_indexes(),
            [_CODES.get(kind, 0) if _image_columns is not None else 0 for kind in kinds],
        )
    _shapes[schema.version] = shape
    return shape


class _JsonImage(Sequence[pa.Array]):
    """``ChangeColumns.json_image``, each column made when first read."""

    __slots__ = ("_made", "_shape", "_values", "image")

    def __init__(self, shape: _Shape, values: _Values, image: tuple[pa.Array, ...]):
        self._shape = shape
        self._values = values
        self.image = image
        self._made: list[pa.Array | None] = [None] * len(image)

    def __len__(self) -> int:
        return len(self.image)

    @overload
    def __getitem__(self, index: int) -> pa.Array: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[pa.Array]: ...
    def __getitem__(self, index: int | slice) -> pa.Array | Sequence[pa.Array]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(len(self))[index])
        made = self._made[index]
        if made is None:
            made = self._made[index] = self._make(index)
        return made

    def __iter__(self) -> Iterator[pa.Array]:
        return (self[i] for i in range(len(self)))

    def _make(self, i: int) -> pa.Array:
        encode = self._shape.encoders[i]
        if encode is None:
            return self.image[i]
        values = self._values[i]
        if self._shape.targets[i] in (pa.float32(), pa.float64()):
            return pa.array(values, pa.float64())  # finite: the envelope's doubles
        return pa.array([None if v is None else encode(v) for v in values], pa.string())


def events_as_columns(events: Sequence[ChangeEvent]) -> ChangeColumns | None:
    """``events`` (of one table version) as columns; None when not exactly as the envelope's decode."""
    if not events:
        return None
    schema = events[0].schema
    shape = _shape(schema)
    if shape is None:
        return None
    n = len(events)
    if any(e.schema is not schema for e in events) and any(
        e.schema.version != schema.version for e in events
    ):
        return None
    kinds = [e.op for e in events]
    creates = kinds.count(_CREATE)  # counted by identity: an Op's hash is computed in Python
    if creates == n:  # a run of inserts, the common case
        ops: list[str] = ["c"] * n
        images: list[tuple[ColumnValue, ...] | None] = [e.after for e in events]
    else:
        if kinds.count(_UPDATE) and not _updates_keep_keys(events, shape.key):
            return None
        if creates + kinds.count(_UPDATE) + kinds.count(_DELETE) + kinds.count(_READ) != n:
            return None  # a truncate
        ops = [_op_text(op) for op in kinds]
        images = [e.before if e.op is _DELETE else e.after for e in events]
    if None in images:
        return None  # a change without the image it leaves
    rows = cast(list[tuple[ColumnValue, ...]], images)
    built = _image_columns(rows, shape.codes) if any(shape.codes) else None
    if built is None and any(shape.codes):
        return None  # refused by image_columns: exactly where the checks below refuse
    columns = _Values(rows, len(shape.targets), built is None)
    arrays = []
    try:
        for i, (target, classes) in enumerate(zip(shape.targets, shape.classes, strict=True)):
            made = built[i] if built is not None else None
            if made is not None:  # checked there as below
                arrays.append(_wrapped(target, n, made))
                continue
            values = columns[i]
            if not set(map(type, values)) <= classes:
                return None
            arrays.append(pa.array(values, target))
    except _REFUSED:
        return None
    for i, (column, array) in enumerate(zip(schema.columns, arrays, strict=True)):
        if built is not None and built[i] is not None:
            continue
        kind = column.arrow_type.kind
        if kind in _FLOATS and array.null_count < len(array) and not pc.all(pc.is_finite(array)).as_py():
            return None  # the envelope spells those as strings; the decode refuses them
        if kind is ArrowKind.TIMESTAMP and set(map(_TZINFO, filter(None, columns[i]))) - {None}:
            return None  # cast to UTC here, kept as its wall clock by the envelope
    image = tuple(arrays)
    return ChangeColumns(
        schema,
        text_column(ops),
        position_texts(events),
        pa.array([e.source_ts_ms for e in events], pa.int64()),
        text_column([e.transaction_id for e in events]),
        image,
        cast(tuple[pa.Array, ...], _JsonImage(shape, columns, image)),
    )


_Buffers = tuple[int, bytes | None, bytes, bytes | None]


def _wrapped(target: pa.DataType, n: int, buffers: _Buffers) -> pa.Array:
    """image_columns' buffers of a column as its array (no copy)."""
    nulls, validity, values, data = buffers
    wrapped = [None if validity is None else pa.py_buffer(validity), pa.py_buffer(values)]
    if data is not None:
        wrapped.append(pa.py_buffer(data))
    return pa.Array.from_buffers(target, n, wrapped, null_count=nulls)


class _Values:
    """The images' values column by column: all at once (``zip``) when every column is made here,
    else each when first read (the columns image_columns did not make, a JSON image asked for)."""

    __slots__ = ("_made", "_rows")

    def __init__(self, rows: list[tuple[ColumnValue, ...]], width: int, all_now: bool) -> None:
        self._rows = rows
        made: list[Sequence[ColumnValue] | None] = [None] * width
        if all_now:
            made = list(zip(*rows, strict=True))
        self._made = made

    def __getitem__(self, i: int) -> Sequence[ColumnValue]:
        made = self._made[i]
        if made is None:
            made = self._made[i] = [row[i] for row in self._rows]
        return made


def _op_text(op: Op) -> str:
    if op is _CREATE:
        return "c"
    if op is _UPDATE:
        return "u"
    return "d" if op is _DELETE else "r"


def _updates_keep_keys(events: Sequence[ChangeEvent], key: tuple[int, ...]) -> bool:
    """Whether every update has a key and keeps it (the history stores any other as two rows)."""
    if not key:
        return False
    for e in events:
        if e.op is _UPDATE:
            before, after = e.before, e.after
            if before is not None and after is not None and any(before[k] != after[k] for k in key):
                return False
    return True


def position_texts(events: Sequence[ChangeEvent]) -> pa.Array:
    """``e.position.to_string()`` of each event, as a string array. The rows of one transaction
    differ only in the row index, at one place of the text: each transaction (a run of one binlog
    offset whose positions share their GTID, file and era) has its first position spelled, and its
    rows' indexes are put in by Arrow (0.28 us per change; to_string 1.2, a template per row 0.42).
    The compiled ``position_texts`` spells them from the positions' keys, once per transaction too
    (0.34 -> 0.14 us per change)."""
    n = len(events)
    if _position_texts is not None:
        made = _position_texts(events if isinstance(events, list) else list(events), *_TAGS)
        if made is not None:
            offsets, data = made
            return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    positions = [e.position for e in events]
    offsets = pa.array([p.offset for p in positions], pa.int64())
    gtids = [p.gtid for p in positions]
    files = [p.file for p in positions]
    eras = [p.era for p in positions]
    cuts = (
        pc.indices_nonzero(pc.not_equal(offsets.slice(1), offsets.slice(0, n - 1))).to_pylist()
        if n > 1
        else []
    )
    bounds = [0, *(c + 1 for c in cuts), n]
    digits = pc.utf8_lpad(pa.array([p.row for p in positions], pa.int64()).cast(pa.string()), 10, "0")
    parts = []
    for a, b in itertools.pairwise(bounds):
        first, k = positions[a], b - a
        # list.count tests identity first: the rows of one transaction share these objects
        same = gtids[a:b].count(first.gtid) == k and files[a:b].count(first.file) == k
        head, tail, placed = (
            _row_place(first, first.to_string())
            if same and eras[a:b].count(first.era) == k
            else ("", "", False)
        )
        if placed:
            parts.append(pc.binary_join_element_wise(head, digits.slice(a, k), tail, ""))
        else:
            parts.append(pa.array([p.to_string() for p in positions[a:b]], pa.string()))
    return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)


def _row_place(p: Position, text: str) -> tuple[str, str, bool]:
    """The text before and after ``p``'s row index, checked against another row's text."""
    digits = f"{p.row:010d}"
    other = p.at_row(p.row + 1 if p.row < 9_999_999_999 else 0)
    at = text.find(digits)
    while at != -1:
        head, tail = text[:at], text[at + 10 :]
        if f"{head}{other.row:010d}{tail}" == other.to_string():
            return head, tail, True
        at = text.find(digits, at + 1)
    return "", "", False


class _Events:
    """The chunk's decoder: its values are its events already."""

    @staticmethod
    def events(values: Sequence[ChangeEvent]) -> list[ChangeEvent]:
        return list(values)

    @staticmethod
    def table_schema(version: str) -> TableSchema:
        raise LookupError(f"an embedded chunk has no schema topic to read {version} from")


_DECODER = _Events()


class EventChunk:
    """A run of a batch's events of one table version, shaped as ``ChangeChunk`` for the sinks."""

    __slots__ = ("_columns", "_events", "_tried", "decoder", "next_offsets", "partition", "values")

    def __init__(self, events: list[ChangeEvent]) -> None:
        self._events = events
        self.values = events  # what ``decoder.events`` takes
        self.decoder = _DECODER
        self.partition = ""
        self.next_offsets: list[int] = []
        self._columns: ChangeColumns | None = None
        self._tried = False

    def __len__(self) -> int:
        return len(self._events)

    def events(self) -> list[ChangeEvent]:
        return self._events

    def columns(self) -> ChangeColumns | None:
        if not self._tried:
            self._tried = True
            self._columns = events_as_columns(self._events)
        return self._columns

    def decoded_columns(self) -> ChangeColumns | None:
        return self._columns

    def last_position(self, prefer_columns: bool) -> Position:
        return self._events[-1].position


def event_chunks(records: Sequence[ChangeEvent | SchemaChange]) -> Sequence[ChangeEvent | SchemaChange]:
    """An embedded batch as ``ChunkRecords`` of runs of one table version (a truncate alone in its
    run); the batch as it is when it holds a schema change (sinks then see exactly what they saw)."""
    chunks: list[EventChunk] = []
    run: list[ChangeEvent] = []
    schema: TableSchema | None = None
    for record in records:
        if record.__class__ is not ChangeEvent:
            return records
        event = record
        same = event.schema is schema or (schema is not None and event.schema.version == schema.version)
        if not same or event.op is _TRUNCATE:  # (a version's schema objects may be several)
            if run:
                chunks.append(EventChunk(run))
            run, schema = [], event.schema if event.op is not _TRUNCATE else None
        run.append(event)
    if run:
        chunks.append(EventChunk(run))
    return ChunkRecords(chunks)  # type: ignore[arg-type]


# the fewest changes whose columns are built ahead: SQL sinks take smaller batches change by change
# (copy_threshold_rows, 100 by default), and the Iceberg history's columns are then a small part
EAGER_COLUMNS = 100


def build_columns(records: Sequence[ChangeEvent | SchemaChange]) -> None:
    """Builds the columns of ``records``' chunks now, on the caller's thread (the daemon's, while the
    apply thread waits on the sinks with the batch before); a sink asking later gets them made."""
    if isinstance(records, ChunkRecords) and len(records) >= EAGER_COLUMNS:
        for chunk in records.chunks:
            chunk.columns()
