"""Include/exclude patterns ``db.table`` with ``*`` wildcards (the source's tables, each sink's tables)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cdc.core.errors import ConfigError

__all__ = ["TableFilter"]


def _compile(pattern: str) -> re.Pattern[str]:
    if pattern.count(".") != 1 or not all(pattern.split(".")):
        raise ConfigError(f"table pattern {pattern!r} must look like 'db.table' (with * wildcards)")
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


@dataclass(frozen=True)
class TableFilter:
    include: tuple[str, ...] = ("*.*",)
    exclude: tuple[str, ...] = ()
    _inc: tuple[re.Pattern[str], ...] = field(init=False, repr=False)
    _exc: tuple[re.Pattern[str], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inc", tuple(_compile(p) for p in self.include))
        object.__setattr__(self, "_exc", tuple(_compile(p) for p in self.exclude))

    def accepts(self, db: str, table: str) -> bool:
        name = f"{db}.{table}"
        return any(p.match(name) for p in self._inc) and not any(p.match(name) for p in self._exc)
