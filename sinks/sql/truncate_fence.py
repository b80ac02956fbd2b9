"""Truncates fenced by position in a serving table (the rule is in :mod:`sinks.contract`).

A truncate of table T at position P removes every change of T below P. The sink stores, with its
data, the position of the last truncate it applied per table; this module decides, for one batch,
what is left to apply given those stored fences:

- a truncate at or below the stored fence is a copy already applied (another partition's): dropped;
- per table, the highest truncate of the batch above the fence is applied, first;
- every row change of a table below its fence (stored, or the batch's new one) is older than a
  truncate applied and is dropped; the other rows keep their batch order (per key, that is
  per-partition order, which is the source's order for that key).

Why this is enough: the first copy of truncate P to reach the sink precedes, in its partition, that
partition's rows above P, and every other partition's rows above P come after that partition's own
copy, so no row above P can have been applied before the first copy: applying at the first copy
never wipes a newer row. Rows below P from partitions still behind arrive later and are dropped by
the fence; the later copies are no-ops. None of this depends on which process holds which
partition, nor on restarts, since the fence is stored with the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Position

__all__ = ["Fenced", "fence"]


@dataclass(frozen=True, slots=True)
class Fenced:
    events: list[ChangeEvent]  # the new truncates first (one per table), then the rows kept
    # None: no new truncate in the batch; else every table's fence after the batch (to store)
    truncates: dict[str, Position] | None


def fence(events: Sequence[ChangeEvent], held: Mapping[str, Position]) -> Fenced:
    """What of ``events`` to apply, given the fences ``held`` ("db.table" -> last truncate applied)."""
    truncate = Op.TRUNCATE
    top: dict[str, ChangeEvent] = {}
    for e in events:
        if e.op is truncate:
            name = str(e.table)
            above = top.get(name)
            floor = above.position if above is not None else held.get(name)
            if floor is None or e.position > floor:
                top[name] = e
    if not top and not held:
        return Fenced(list(events), None)  # the usual case: no truncate, ever
    cut = dict(held)
    for name, e in top.items():
        cut[name] = e.position
    out = list(top.values())
    # per schema object (a batch has few): its table's fence, if it has one
    fences: dict[int, Position | None] = {}
    for e in events:
        schema = e.schema
        try:
            floor = fences[id(schema)]
        except KeyError:
            floor = fences[id(schema)] = cut.get(str(schema.ref))
        if e.op is truncate or (floor is not None and e.position < floor):
            continue  # a truncate (the new ones are first) or a row older than a truncate applied
        out.append(e)
    return Fenced(out, cut if top else None)
