"""Recognise the statements of a QUERY event that change a table's shape or empty it.

We only need to know *which* table and *what kind* of change: the new columns arrive with the next
TABLE_MAP, so no DDL grammar is parsed here.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from cdc.core.schemas import TableRef

__all__ = ["StatementKind", "TableStatement", "classify"]

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
]


class StatementKind(enum.Enum):
    CREATE = "create"
    ALTER = "alter"
    DROP = "drop"
    RENAME = "rename"
    TRUNCATE = "truncate"


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
    """The table-level changes a statement makes (empty for anything else, e.g. DML, CREATE DATABASE,
    temporary tables, which MariaDB does not log in ROW format anyway)."""
    text = _COMMENTS.sub(" ", query).strip()
    for name, pattern in _PATTERNS:
        match = pattern.match(text)
        if match is None:
            continue
        kind = StatementKind(name)
        if kind is StatementKind.DROP:
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
