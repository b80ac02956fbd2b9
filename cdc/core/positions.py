"""Where a row change sits in a MariaDB server's history, and where to resume after a restart.

A Position names one row change: the GTID of its transaction, the binlog file and offset where the
transaction starts (its GTID event), and the index of the row change inside the transaction.
Positions are totally ordered by era, then binlog coordinates (file sequence, offset, row), which is
the order the server wrote them; the GTID rides along as the failover-safe name of the transaction.

Binlog coordinates only compare within one server's binlog. The era is raised when the pipeline
moves to another server (a failover to a promoted replica, found by GTID): every position read from
the new server sorts after every position read from the old one. Era 0 is what every position was
before eras existed, and keeps that text form (``mdb1:...``); a later era is written
``mdb2:<era>:...``, which sorts after it.

The serialized form sorts like the positions themselves: every numeric field is zero-padded to a
fixed width (a binlog file sequence is compared as a number, so ``bin.1000000`` sorts after
``bin.999999``), and the only free-text field, the binlog base name, comes last.

A position read from a server also carries, in memory only, where it was read (``ReadContext``: the
server's ``@@server_id`` and the GTID state at its transaction's start), so that a restart point
built from it can be resumed on another server by GTID. It is not part of the text form, of
equality or of the order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cdc.core.errors import PositionFormatError

__all__ = [
    "ANCHOR_SERVER_ID",
    "Gtid",
    "GtidState",
    "Position",
    "ReadContext",
    "RestartPoint",
    "lsn_position",
    "snapshot_row_position",
]

_U32 = 2**32 - 1
_U64 = 2**64 - 1
_FORMAT_TAG = "mdb1"  # era 0
_ERA_TAG = "mdb2"  # later eras: "mdb2:<era>:" then the era-0 form's fields ("mdb1:" < "mdb2:")
_ERA_PREFIX_LEN = len(_ERA_TAG) + 12  # "mdb2:" + 10 digits + ":"
_FILE_RE = re.compile(r"^(?P<base>[^/\s]+)\.(?P<seq>\d{6,10})$")
_GTID_RE = re.compile(r"^(\d{1,10})-(\d{1,10})-(\d{1,20})$")
_POSITION_RE = re.compile(
    rf"^(?:{_FORMAT_TAG}:|{_ERA_TAG}:(?P<era>\d{{10}}):)(?P<file_seq>\d{{10}}):(?P<offset>\d{{10}}):(?P<row>\d{{10}})"
    r":(?P<domain>\d{10})-(?P<server>\d{10})-(?P<seq>\d{20}):(?P<base>[^/\s:]+)$",
    re.ASCII,  # \d is [0-9] only: other scripts' digits are no position's text form
)
_RESTART_RE = re.compile(
    r"^(?P<position>[^+]+)\+skip=(?P<skip>\d{10})(?:\+source=(?P<source>\d{1,10})\+gtids=(?P<gtids>[0-9,-]*))?$"
)
# The GTID of a snapshot anchor (see snapshot_row_position): a real GTID never has seq 0, and a
# boundary on a server that never wrote one uses server_id 0, so this pair names no transaction.
ANCHOR_SERVER_ID = _U32


def _check_range(name: str, value: int, upper: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise PositionFormatError(f"{name} must be an integer in [0, {upper}], got {value!r}")


@dataclass(frozen=True, slots=True, order=True)
class Gtid:
    """MariaDB GTID ``domain-server-seq``; ordered within a domain by ``seq``."""

    domain: int
    server_id: int
    seq: int

    def __post_init__(self) -> None:
        _check_range("gtid domain", self.domain, _U32)
        _check_range("gtid server_id", self.server_id, _U32)
        _check_range("gtid seq", self.seq, _U64)

    def __str__(self) -> str:
        return f"{self.domain}-{self.server_id}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> Gtid:
        match = _GTID_RE.match(text)
        if match is None:
            raise PositionFormatError(f"not a MariaDB GTID (domain-server-seq): {text!r}")
        return cls(int(match[1]), int(match[2]), int(match[3]))


@dataclass(frozen=True, slots=True)
class GtidState:
    """A MariaDB GTID state: the last GTID of each replication domain, as ``@@gtid_binlog_pos`` or
    ``BINLOG_GTID_POS(file, offset)`` give it (``"0-1-42,1-3-7"``; empty on a server that never
    wrote a GTID). Started from, a server sends every transaction after it, in every domain."""

    gtids: tuple[Gtid, ...] = ()  # one per domain, by domain

    def __post_init__(self) -> None:
        domains = [g.domain for g in self.gtids]
        if domains != sorted(set(domains)):
            raise PositionFormatError(f"a GTID state has one GTID per domain, by domain: {self}")

    def __str__(self) -> str:
        return ",".join(str(g) for g in self.gtids)

    @classmethod
    def parse(cls, text: str) -> GtidState:
        entries = [Gtid.parse(e.strip()) for e in text.split(",") if e.strip()]
        by_domain = {g.domain: g for g in entries}
        if len(by_domain) != len(entries):
            raise PositionFormatError(f"a GTID state names each domain once: {text!r}")
        return cls(tuple(by_domain[d] for d in sorted(by_domain)))

    def get(self, domain: int) -> Gtid | None:
        for g in self.gtids:
            if g.domain == domain:
                return g
        return None

    def advanced(self, gtid: Gtid) -> GtidState:
        """The state after transaction ``gtid``."""
        rest = [g for g in self.gtids if g.domain != gtid.domain]
        return GtidState(tuple(sorted((*rest, gtid), key=lambda g: g.domain)))

    def covers(self, gtid: Gtid) -> bool:
        """``gtid``'s transaction is in this state (its domain has reached its sequence number)."""
        own = self.get(gtid.domain)
        return own is not None and own.seq >= gtid.seq


@dataclass(frozen=True, slots=True)
class ReadContext:
    """Where a position was read: the server (its ``@@server_id``) and the GTID state at the start
    of the position's transaction (for a boundary: at that place), from which another server that
    has the same transactions can be asked to resume."""

    server_id: int
    gtid_state: GtidState


@dataclass(frozen=True, slots=True)
class Position:
    """One row change: its transaction's GTID, the transaction's start in the binlog, its row index,
    and the era of the server it was read from (raised at each failover to another server)."""

    gtid: Gtid
    file: str  # binlog file name, e.g. "mysql-bin.000003"
    offset: int  # offset of the transaction's GTID event in ``file``
    row: int = 0  # index of the row change inside the transaction
    era: int = 0  # 0 until the first failover
    # in memory only, from the reader: not in the text form, equality or order
    context: ReadContext | None = field(default=None, repr=False, compare=False)
    _key: tuple[int, int, int, int, int, int, int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        match = _FILE_RE.match(self.file) if isinstance(self.file, str) else None
        if match is None:
            raise PositionFormatError(f"binlog file name must look like 'base.000123', got {self.file!r}")
        file_seq = int(match["seq"])
        _check_range("binlog file sequence", file_seq, 9_999_999_999)
        if self.file != f"{match['base']}.{file_seq:06d}":
            # MariaDB writes "%06lu"; any other spelling would not survive a round trip.
            raise PositionFormatError(f"binlog file name is not canonical: {self.file!r}")
        _check_range("binlog offset", self.offset, _U32)
        _check_range("row index", self.row, 9_999_999_999)
        _check_range("era", self.era, 9_999_999_999)
        key = (
            self.era,
            file_seq,
            self.offset,
            self.row,
            self.gtid.domain,
            self.gtid.server_id,
            self.gtid.seq,
            match["base"],
        )
        object.__setattr__(self, "_key", key)

    # Ordering is by era then binlog coordinates; equality includes every field but the context, so
    # order is total and consistent with ==.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Position) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __lt__(self, other: Position) -> bool:
        return self._key < other._key

    def __le__(self, other: Position) -> bool:
        return self._key <= other._key

    def __gt__(self, other: Position) -> bool:
        return self._key > other._key

    def __ge__(self, other: Position) -> bool:
        return self._key >= other._key

    @property
    def file_seq(self) -> int:
        return self._key[1]

    @property
    def is_snapshot_anchor(self) -> bool:
        """A place for snapshot rows just before a binlog boundary (see snapshot_row_position)."""
        return self.gtid.seq == 0 and self.gtid.server_id == ANCHOR_SERVER_ID

    @property
    def file_base(self) -> str:
        return self._key[7]

    @property
    def lsn(self) -> int | None:
        """A PostgreSQL position's commit LSN (see lsn_position); None for a MariaDB position."""
        if self._key[7] != LSN_FILE_BASE:
            return None
        return (self._key[1] << 32) | self._key[2]

    @property
    def lsn_text(self) -> str | None:
        """The commit LSN as PostgreSQL writes it (``16/B374D848``); None for a MariaDB position."""
        if self._key[7] != LSN_FILE_BASE:
            return None
        return f"{self._key[1]:X}/{self._key[2]:X}"

    def at_row(self, row: int) -> Position:
        """The position of another row change of the same transaction.

        Hot path (one call per row change): copies the validated fields instead of re-parsing them.
        """
        if row.__class__ is not int or not 0 <= row <= 9_999_999_999:
            _check_range("row index", row, 9_999_999_999)
        new = object.__new__(Position)
        set_ = object.__setattr__
        set_(new, "gtid", self.gtid)
        set_(new, "file", self.file)
        set_(new, "offset", self.offset)
        set_(new, "row", row)
        set_(new, "era", self.era)
        set_(new, "context", self.context)
        key = self._key
        set_(new, "_key", (key[0], key[1], key[2], row, key[4], key[5], key[6], key[7]))
        return new

    def in_same_file(
        self, gtid: Gtid, offset: int, row: int = 0, context: ReadContext | None = None
    ) -> Position:
        """A position in this position's binlog file and era (hot path: the file name is not parsed
        again)."""
        _check_range("binlog offset", offset, _U32)
        _check_range("row index", row, 9_999_999_999)
        new = object.__new__(Position)
        set_ = object.__setattr__
        set_(new, "gtid", gtid)
        set_(new, "file", self.file)
        set_(new, "offset", offset)
        set_(new, "row", row)
        set_(new, "era", self.era)
        set_(new, "context", context)
        key = self._key
        set_(new, "_key", (key[0], key[1], offset, row, gtid.domain, gtid.server_id, gtid.seq, key[7]))
        return new

    def with_context(self, context: ReadContext | None) -> Position:
        new = self.at_row(self.row)
        object.__setattr__(new, "context", context)
        return new

    def to_string(self) -> str:
        """Sortable text form: string order equals Position order."""
        era, file_seq, offset, row, domain, server, seq, base = self._key
        if base == LSN_FILE_BASE:
            return f"{_LSN_TAG}{file_seq:010X}:{offset:010X}:{row:010d}:{server:010d}-{seq:020d}"
        tail = f"{file_seq:010d}:{offset:010d}:{row:010d}:{domain:010d}-{server:010d}-{seq:020d}:{base}"
        if era:
            return f"{_ERA_TAG}:{era:010d}:{tail}"
        return f"{_FORMAT_TAG}:{tail}"

    def __str__(self) -> str:
        return self.to_string()

    @classmethod
    def parse(cls, text: str) -> Position:
        """Load a position written by :meth:`to_string`; refuses anything incomplete or malformed."""
        if not isinstance(text, str):
            raise PositionFormatError(f"a position is a string, got {type(text).__name__}")
        # The rows of one transaction differ only in the row field: the rest was validated once.
        cut = 27 if text.startswith("mdb1:") else 38
        digits = text[cut : cut + 10]
        known = _TXN_MEMO.get(text[:cut] + text[cut + 10 :])
        if known is not None and len(digits) == 10 and digits.isascii() and digits.isdigit():
            return _same_transaction(known, int(digits))
        fast = _parse_fixed_width(text)
        if fast is not None:
            if len(_TXN_MEMO) >= _TXN_MEMO_MAX:
                _TXN_MEMO.clear()
            _TXN_MEMO[text[:cut] + text[cut + 10 :]] = fast
            return fast
        if text.startswith(_LSN_TAG):
            return _parse_lsn(text)
        match = _POSITION_RE.match(text)
        if match is None:
            raise PositionFormatError(f"malformed MariaDB position: {text!r}")
        era = int(match["era"]) if match["era"] is not None else 0
        if match["era"] is not None and era == 0:
            raise PositionFormatError(f"era 0 is written {_FORMAT_TAG}:..., not {text!r}")
        gtid = Gtid(int(match["domain"]), int(match["server"]), int(match["seq"]))
        file = f"{match['base']}.{int(match['file_seq']):06d}"
        return cls(gtid, file, int(match["offset"]), int(match["row"]), era)


# -- PostgreSQL positions ---------------------------------------------------------------------------
# A PostgreSQL row change is named by its transaction's commit LSN and its index in the transaction.
# It lives in the same Position type (so the stream, sinks and history take it unchanged): the LSN's
# high 32 bits as the "file sequence", its low 32 bits as the "offset" (the order is then commit LSN,
# row), the transaction id as the GTID's sequence number, and a file base that no MariaDB binlog can
# have (a ':' is refused in a MariaDB position's text). Its text form has its own tag, "pgl1:", and
# the LSN halves in fixed-width upper-case hex, so text order is position order and the row index
# sits at the same offsets (27..37) as in a MariaDB position's text (the envelope splices it there).
LSN_FILE_BASE = "pg:lsn"
_LSN_TAG = "pgl1:"
_LSN_RE = re.compile(r"^pgl1:([0-9A-F]{10}):([0-9A-F]{10}):(\d{10}):(\d{10})-(\d{20})$")


def lsn_position(commit_lsn: int, row: int, xid: int, anchor: bool = False) -> Position:
    """The position of row ``row`` of the PostgreSQL transaction ``xid`` that committed at
    ``commit_lsn`` (``anchor``: a place that names no transaction, see snapshot_row_position)."""
    _check_range("commit LSN", commit_lsn, _U64)
    gtid = Gtid(0, ANCHOR_SERVER_ID, 0) if anchor else Gtid(0, 0, xid)
    return Position(gtid, f"{LSN_FILE_BASE}.{commit_lsn >> 32:06d}", commit_lsn & _U32, row)


def _parse_lsn(text: str) -> Position:
    match = _LSN_RE.match(text)
    if match is None:
        raise PositionFormatError(f"malformed PostgreSQL position: {text!r}")
    high, low = int(match[1], 16), int(match[2], 16)
    if high > _U32 or low > _U32:
        raise PositionFormatError(f"PostgreSQL position's LSN is out of range: {text!r}")
    gtid = Gtid(0, int(match[4]), int(match[5]))
    return Position(gtid, f"{LSN_FILE_BASE}.{high:06d}", low, int(match[3]))


# Position text with its row field cut out -> a position of that transaction, parsed and checked in
# full once. Every change consumed from Kafka carries a position, and most share their transaction's
# with the ones before (1000-row statements): the full parse was a third of `cdc sink`'s time
# (benchmarks/results/profiles/apply_*_kafka). Bounded: cleared when full (a dict op is atomic
# under the GIL, so threads sharing it at worst parse again).
_TXN_MEMO: dict[str, Position] = {}
_TXN_MEMO_MAX = 4096


def _same_transaction(known: Position, row: int) -> Position:
    """``known.at_row(row)`` for a row already checked (10 digits), through the slots' own setters:
    the frozen class's ``object.__setattr__`` by name was half of the memo path's cost."""
    new = _new_position(Position)
    _set_gtid(new, known.gtid)
    _set_file(new, known.file)
    _set_offset(new, known.offset)
    _set_row(new, row)
    _set_era(new, known.era)
    _set_context(new, None)
    key = known._key
    _set_key(new, (key[0], key[1], key[2], row, key[4], key[5], key[6], key[7]))
    return new


_new_position = object.__new__
_set_gtid, _set_file, _set_offset, _set_row, _set_era, _set_context, _set_key = (
    getattr(Position, name).__set__ for name in ("gtid", "file", "offset", "row", "era", "context", "_key")
)


def _parse_fixed_width(text: str) -> Position | None:
    """The hot path of :meth:`Position.parse` (every change consumed from Kafka carries one): the
    fields sit at fixed offsets, so slicing replaces the regex and the file-name check. Returns None
    for anything that is not exactly that shape; the regex path then decides (and names the error).
    Measured: ~4x faster than the regex path on the consume side (benchmarks/results/profiles)."""
    era = 0
    if not text.startswith("mdb1:"):
        # a later era: the same fields after "mdb2:<era>:" (sliced away, so era 0 pays nothing)
        if not text.startswith("mdb2:") or len(text) <= _ERA_PREFIX_LEN or text[15] != ":":
            return None
        digits = text[5:15]
        if not (digits.isascii() and digits.isdigit()) or digits == "0000000000":
            return None  # era 0 in this form is not canonical: the regex path names it
        era, text = int(digits), "mdb1:" + text[_ERA_PREFIX_LEN:]
    if (
        len(text) < 82
        or text[15] != ":"
        or text[26] != ":"
        or text[37] != ":"
        or text[48] != "-"
        or text[59] != "-"
        or text[80] != ":"
    ):
        return None
    fields = (text[5:15], text[16:26], text[27:37], text[38:48], text[49:59], text[60:80])
    if not all(d.isascii() and d.isdigit() for d in fields):
        return None
    base = text[81:]
    if "/" in base or ":" in base or any(ch.isspace() for ch in base):
        return None
    file_seq, offset, row, domain, server, seq = (int(d) for d in fields)
    if offset > _U32 or domain > _U32 or server > _U32 or seq > _U64:
        return None
    gtid = object.__new__(Gtid)
    object.__setattr__(gtid, "domain", domain)
    object.__setattr__(gtid, "server_id", server)
    object.__setattr__(gtid, "seq", seq)
    new = object.__new__(Position)
    set_ = object.__setattr__
    set_(new, "gtid", gtid)
    set_(new, "file", f"{base}.{file_seq:06d}")
    set_(new, "offset", offset)
    set_(new, "row", row)
    set_(new, "era", era)
    set_(new, "context", None)
    set_(new, "_key", (era, file_seq, offset, row, domain, server, seq, base))
    return new


@dataclass(frozen=True, slots=True)
class RestartPoint:
    """Where a reader resumes: the start of a transaction plus the row changes of it already handled.

    ``transaction`` is the position of the transaction's first row (row 0); ``skip_rows`` row changes
    of it are read again and dropped. A restart at a transaction boundary has ``skip_rows == 0``.

    When ``transaction`` carries its ReadContext (it was read from a server, not parsed from an old
    text), the text form records it too (``+source=<server_id>+gtids=<state>``): the server it was
    read from, and the GTID state at the transaction's start. On the same server a reader resumes by
    binlog coordinates; on another (a promoted replica) by that GTID state, in the next era.
    """

    transaction: Position
    skip_rows: int = 0

    def __post_init__(self) -> None:
        if self.transaction.row != 0:
            raise PositionFormatError("a restart point starts at a transaction's first row (row 0)")
        _check_range("skip_rows", self.skip_rows, 9_999_999_999)

    @classmethod
    def after(cls, position: Position) -> RestartPoint:
        """Resume just after ``position`` (its transaction may be only partly handled)."""
        return cls(position.at_row(0), position.row + 1)

    @property
    def is_boundary(self) -> bool:
        """Nothing of a transaction is to be skipped: reading starts at a transaction's start.

        A restart after snapshot rows emitted at an anchor is one: the anchor lies one byte before
        the boundary, and its rows are not in the binlog to skip.
        """
        return self.skip_rows == 0 or self.transaction.is_snapshot_anchor

    @property
    def binlog_offset(self) -> int:
        """Where to start reading ``transaction.file``: the anchor's boundary is one byte after it."""
        offset = self.transaction.offset
        return offset + 1 if self.transaction.is_snapshot_anchor else offset

    @property
    def context(self) -> ReadContext | None:
        return self.transaction.context

    def to_string(self) -> str:
        text = f"{self.transaction.to_string()}+skip={self.skip_rows:010d}"
        context = self.transaction.context
        if context is not None:
            text += f"+source={context.server_id}+gtids={context.gtid_state}"
        return text

    @classmethod
    def parse(cls, text: str) -> RestartPoint:
        """Load a restart point written by :meth:`to_string` (with or without its read context)."""
        match = _RESTART_RE.match(text) if isinstance(text, str) else None
        if match is None:
            raise PositionFormatError(f"malformed restart point: {text!r}")
        transaction = Position.parse(match["position"])
        if match["source"] is not None:
            server_id = int(match["source"])
            _check_range("source server_id", server_id, _U32)
            context = ReadContext(server_id, GtidState.parse(match["gtids"]))
            transaction = transaction.with_context(context)
        return cls(transaction, int(match["skip"]))


def snapshot_row_position(at: RestartPoint, index: int) -> Position:
    """The position of the ``index``-th snapshot row (op ``r``) emitted at restart point ``at``.

    Snapshot rows are read from a consistent view of the source at a binlog boundary and emitted
    where the stream stands, between two transactions. Their positions must sort after every change
    already emitted and before the next transaction, so that sinks (which skip what is at or before
    their position) and the history (ordered by position) place them there:
    - after a transaction T of which ``s`` rows were emitted (``at`` = (T, skip s)): T's rows s, s+1...
      (T has no rows there; the next transaction starts further on);
    - at a boundary B (a transaction's start, nothing to skip): an *anchor* one byte before B, whose
      GTID names no transaction. Every earlier transaction starts more than one byte before B;
    - after rows already emitted at an anchor: that anchor's next rows.
    ``RestartPoint.after`` of the last row emitted is where the stream resumes; for an anchor, the
    reader starts at the boundary (RestartPoint.binlog_offset) and skips nothing.
    """
    tx = at.transaction
    if at.skip_rows or tx.is_snapshot_anchor:
        return tx.at_row(at.skip_rows + index)
    if tx.offset < 1:
        raise PositionFormatError(f"no snapshot anchor before offset 0 of {tx.file}")
    anchor = Gtid(tx.gtid.domain, ANCHOR_SERVER_ID, 0)
    # the anchor's read context is the boundary's: a restart after its rows reads from there
    return Position(anchor, tx.file, tx.offset - 1, index, tx.era, tx.context)
