"""Recognise the statements of a QUERY event that change a table's shape, empty it, or write rows.

We only need to know *which* table and *what kind* of change: the new columns arrive with the next
TABLE_MAP, so no DDL grammar is parsed here. Row-writing statements (INSERT, REPLACE, UPDATE, DELETE,
LOAD DATA, CREATE TABLE ... SELECT) appear as QUERY events only when a session logged them as
statements (binlog_format=STATEMENT or MIXED): their rows are not in the binlog, so the caller must
stop. For them we name every table the statement may write, erring on the side of too many (a
multi-table UPDATE or DELETE names every table it joins).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from cdc.core.schemas import TableRef

__all__ = ["SavepointKind", "StatementKind", "TableStatement", "classify", "savepoint_statement"]

_NAME = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_QNAME_NC = rf"{_NAME}(?:\s*\.\s*{_NAME})?"
_QNAME = rf"({_QNAME_NC})"
_COMMENTS = re.compile(r"/\*(?!!).*?\*/|^\s*#[^\n]*$|--\s[^\n]*$", re.S | re.M)
_PATTERNS = [
    ("create", re.compile(rf"^CREATE\s+(?:OR\s+REPLACE\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_QNAME}", re.I)),
    ("alter", re.compile(rf"^ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\s+(?:IF\s+EXISTS\s+)?{_QNAME}", re.I)),
    ("drop", re.compile(rf"^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?((?:{_QNAME_NC}\s*,?\s*)+)", re.I)),
    ("rename", re.compile(r"^RENAME\s+TABLES?\s+(.+)$", re.I | re.S)),
    ("truncate", re.compile(rf"^TRUNCATE\s+(?:TABLE\s+)?{_QNAME}", re.I)),
    (
        "temporary",
        re.compile(
            rf"^CREATE\s+(?:OR\s+REPLACE\s+)?TEMPORARY\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_QNAME}", re.I
        ),
    ),
    (
        "drop_temporary",
        re.compile(rf"^DROP\s+TEMPORARY\s+TABLE\s+(?:IF\s+EXISTS\s+)?((?:{_QNAME_NC}\s*,?\s*)+)", re.I),
    ),
]
_INSERT = re.compile(
    rf"^(?:INSERT|REPLACE)\s+(?:(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE)\s+)*(?:INTO\s+)?{_QNAME}", re.I
)
_LOAD = re.compile(rf"^LOAD\s+(?:DATA|XML)\b.*?\bINTO\s+TABLE\s+{_QNAME}", re.I | re.S)
_UPDATE = re.compile(r"^UPDATE\s+(?:(?:LOW_PRIORITY|IGNORE)\s+)*(.*?)\s+SET\s", re.I | re.S)
_DELETE = re.compile(
    r"^DELETE\s+(?:(?:LOW_PRIORITY|QUICK|IGNORE)\s+)*(.*?)(?:\s+WHERE\s|\s+ORDER\s+BY\s|\s+LIMIT\s|\s+RETURNING\s|$)",
    re.I | re.S,
)
# A table reference starts a FROM list, follows a comma, a JOIN or an opening parenthesis.
_TABLE_REF = re.compile(rf"(?:\bSTRAIGHT_JOIN\b|\bJOIN\b|\bUSING\b|,|\(|^)\s*({_QNAME_NC})", re.I)
_FROM = re.compile(r"\bFROM\s", re.I)
_NOT_TABLES = frozenset({"select", "with", "lateral", "values", "table"})
_STRINGS = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"", re.S)
_SELECT = re.compile(r"\bSELECT\b", re.I)
_QUOTED = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"|`(?:[^`]|``)*`", re.S)
_SAVEPOINT = re.compile(
    r"^(SAVEPOINT|ROLLBACK\s+(?:WORK\s+)?TO(?:\s+SAVEPOINT)?|RELEASE\s+SAVEPOINT)\s+(\S.*)$", re.I | re.S
)


class StatementKind(enum.Enum):
    CREATE = "create"
    ALTER = "alter"
    DROP = "drop"
    RENAME = "rename"
    TRUNCATE = "truncate"
    TEMPORARY = "temporary"  # CREATE TEMPORARY TABLE (logged only with binlog_format=STATEMENT/MIXED)
    DROP_TEMPORARY = "drop_temporary"
    WRITE = "write"  # a row-writing statement logged as a statement: its rows are not in the binlog


@dataclass(frozen=True, slots=True)
class TableStatement:
    kind: StatementKind
    table: TableRef
    renamed_to: TableRef | None = None


def _unquote(name: str) -> str:
    name = name.strip()
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def _ref(qualified: str, default_db: str) -> TableRef:
    parts = re.findall(_NAME, qualified)
    if len(parts) == 2:
        return TableRef(_unquote(parts[0]), _unquote(parts[1]))
    return TableRef(default_db, _unquote(parts[0]))


def classify(query: str, default_db: str) -> list[TableStatement]:
    """The table-level changes a statement makes (empty for anything else, e.g. CREATE DATABASE,
    SAVEPOINT). Row-writing statements give ``WRITE`` entries, one per table they may write."""
    text = _COMMENTS.sub(" ", query).strip()
    head = text[:8].upper()
    if head.startswith(("INSERT", "REPLACE", "UPDATE", "DELETE", "LOAD")):
        return [TableStatement(StatementKind.WRITE, ref) for ref in _written_tables(text, default_db)]
    for name, pattern in _PATTERNS:
        match = pattern.match(text)
        if match is None:
            continue
        kind = StatementKind(name)
        if kind is StatementKind.CREATE and _SELECT.search(_QUOTED.sub("''", text[match.end() :])):
            # In ROW format the server logs CREATE ... SELECT as a plain CREATE plus row events; the
            # SELECT is still there only when the session logged it as a statement.
            ref = _ref(match[1], default_db)
            return [TableStatement(kind, ref), TableStatement(StatementKind.WRITE, ref)]
        if kind in (StatementKind.DROP, StatementKind.DROP_TEMPORARY):
            names = re.findall(_QNAME_NC, match[1])
            return [TableStatement(kind, _ref(n, default_db)) for n in names]
        if kind is StatementKind.RENAME:
            out = []
            for pair in match[1].split(","):
                parts = re.split(r"\s+TO\s+", pair.strip(), maxsplit=1, flags=re.I)
                if len(parts) == 2:
                    out.append(TableStatement(kind, _ref(parts[0], default_db), _ref(parts[1], default_db)))
            return out
        return [TableStatement(kind, _ref(match[1], default_db))]
    return []


def _written_tables(text: str, default_db: str) -> list[TableRef]:
    for pattern in (_INSERT, _LOAD):
        match = pattern.match(text)
        if match is not None:
            return [_ref(match[1], default_db)]
    match = _UPDATE.match(text) or _DELETE.match(text)
    if match is None:
        return []
    tables = _STRINGS.sub("''", match[1])
    if text[:6].upper() == "DELETE":
        # DELETE [targets] FROM tables [USING tables]: targets may be aliases; the tables follow FROM
        found = _FROM.search(tables)
        tables = tables[found.end() :] if found else tables
    refs = _TABLE_REF.findall(tables)
    names = [_ref(r, default_db) for r in refs if _unquote(r).lower() not in _NOT_TABLES]
    return list(dict.fromkeys(names))


class SavepointKind(enum.Enum):
    SET = "set"
    ROLLBACK_TO = "rollback_to"
    RELEASE = "release"


def savepoint_statement(query: str) -> tuple[SavepointKind, str] | None:
    """``SAVEPOINT x`` / ``ROLLBACK TO x`` / ``RELEASE SAVEPOINT x`` (as the server logs them, with
    the name in backquotes) as (kind, name); None for any other statement."""
    match = _SAVEPOINT.match(query.strip())
    if match is None:
        return None
    verb = match[1].upper()
    kind = (
        SavepointKind.SET
        if verb == "SAVEPOINT"
        else SavepointKind.RELEASE
        if verb.startswith("RELEASE")
        else SavepointKind.ROLLBACK_TO
    )
    return kind, _unquote(match[2].strip())
