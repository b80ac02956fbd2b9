"""A row image reader compiled per relation: pgoutput's TupleData of one table shape -> a tuple.

The generic reader (PgoutputDecoder._tuple) loops over the columns and looks up each one's
converter; this one is generated once per Relation message with the loop unrolled and each
converter bound to a local name, which halves the decoder's time per row (benchmarks/
pg_capture_bench.py). It handles the common case only (every column text or null, the expected
column count, every value convertible) and returns None otherwise: the generic reader then decodes
the image and names whatever is wrong with it (an unchanged TOASTed value, a value out of range).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from cdc.core.events import RowImage
from cdc.sources.postgresql.values import INLINE, INLINE_NAMES, Converter

__all__ = ["TupleReader", "compile_tuple_reader"]

_LENGTH = struct.Struct("!I").unpack_from
TupleReader = Callable[[bytes, int], "tuple[RowImage, int] | None"]


def compile_tuple_reader(converters: Sequence[Converter | None]) -> TupleReader:
    n = len(converters)
    lines = [
        "def read(data, at):",
        "    try:",
        f"        if (data[at] << 8) | data[at + 1] != {n}:",
        "            return None",
        "        at += 2",
    ]
    for i, conv in enumerate(converters):
        if conv is None:
            value = f'v{i} = raw.decode("utf-8", "surrogateescape")'
        else:
            value = INLINE.get(conv, "{v} = c" + str(i) + "(raw)").format(v=f"v{i}")
        lines += [
            "        k = data[at]",
            "        if k == 116:",  # 't'
            "            s = at + 5",
            "            at = s + u(data, at + 1)[0]",  # the length: struct, 3x int.from_bytes of a slice
            "            raw = data[s:at]",
            *("            " + line for line in value.split("\n")),
            "        elif k == 110:",  # 'n'
            f"            v{i} = None",
            "            at += 1",
            "        else:",
            "            return None",
        ]
    values = ", ".join(f"v{i}" for i in range(n)) + ("," if n == 1 else "")
    lines += [f"        return ({values}), at", "    except Exception:", "        return None"]
    namespace: dict[str, Any] = {f"c{i}": conv for i, conv in enumerate(converters) if conv is not None}
    namespace.update(INLINE_NAMES)
    namespace["u"] = _LENGTH
    exec("\n".join(lines), namespace)  # generated from column positions only, no input text
    reader: TupleReader = namespace["read"]
    return reader
