"""How a table's shape changed between two versions, from the versions alone.

Sources do not parse DDL: a new version of a table arrives with the next row event's full column
metadata. Comparing the two versions is enough to tell additions, drops and type changes apart by
name. A rename is a column that keeps its place (ordinal) and its type while its name changes to one
the old version did not have; that is how MariaDB's ``RENAME COLUMN``/``CHANGE`` look in the binlog.
The rule depends only on the two versions, so every sink reaches the same verdict whether or not a
restart fell between them. Its one ambiguity: a single ALTER that drops a column and adds one of the
same type at the same ordinal (say, the last) looks like a rename (the values are carried over).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc.core.schemas import Column, TableSchema

__all__ = ["SchemaDiff", "diff_schemas"]


@dataclass(frozen=True, slots=True)
class SchemaDiff:
    added: tuple[Column, ...] = ()
    dropped: tuple[Column, ...] = ()
    renamed: tuple[tuple[Column, Column], ...] = ()  # (old, new)
    retyped: tuple[tuple[Column, Column], ...] = ()  # same name, another type or nullability
    key_changed: bool = False

    @property
    def empty(self) -> bool:
        return not (self.added or self.dropped or self.renamed or self.retyped or self.key_changed)

    def describe(self) -> str:
        parts = [f"add {c.name} {c.source_type}" for c in self.added]
        parts += [f"drop {c.name}" for c in self.dropped]
        parts += [f"rename {old.name} to {new.name}" for old, new in self.renamed]
        parts += [f"change {o.name} from {o.source_type} to {n.source_type}" for o, n in self.retyped]
        if self.key_changed:
            parts.append("primary key changed")
        return ", ".join(parts) or "no change"


def diff_schemas(old: TableSchema, new: TableSchema) -> SchemaDiff:
    old_names = {c.name: c for c in old.columns}
    new_names = {c.name: c for c in new.columns}
    renamed: list[tuple[Column, Column]] = []
    for before, after in zip(old.columns, new.columns, strict=False):
        if (
            before.name != after.name
            and before.name not in new_names
            and after.name not in old_names
            and before.source_type == after.source_type
            and before.arrow_type == after.arrow_type
        ):
            renamed.append((before, after))
    gone = {o.name for o, _ in renamed}
    came = {n.name for _, n in renamed}
    added = tuple(c for c in new.columns if c.name not in old_names and c.name not in came)
    dropped = tuple(c for c in old.columns if c.name not in new_names and c.name not in gone)
    retyped = tuple(
        (old_names[c.name], c) for c in new.columns if c.name in old_names and old_names[c.name] != c
    )
    renames = dict((o.name, n.name) for o, n in renamed)
    key_changed = tuple(renames.get(k, k) for k in old.primary_key) != new.primary_key
    return SchemaDiff(added, dropped, tuple(renamed), retyped, key_changed)
