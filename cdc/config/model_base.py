"""What every config model shares: frozen, unknown keys rejected, inputs kept out of errors."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

__all__ = ["NAME_PATTERN", "TABLE_PATTERN", "_Model", "_check_table_patterns"]

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
TABLE_PATTERN = re.compile(r"^[^.\s]+\.[^.\s]+$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _check_table_patterns(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        if not TABLE_PATTERN.match(pattern):
            raise ValueError(f"table pattern {pattern!r} must be 'db.table' (wildcards allowed: 'wikidb.*')")
    return patterns
