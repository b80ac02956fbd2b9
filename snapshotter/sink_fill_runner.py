"""``python -m snapshotter.sink_fill_runner -c CONFIG --sink NAME [--replace] DB.TABLE...``: a sink
fill alone in a process, as the fault tests need it (users run `cdc bootstrap --sink`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from cdc.core.schemas import TableRef
from snapshotter.sink_fill import BATCH_ROWS, fill_sink

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 once filled, 2 on an error (printed, as `cdc` prints it)."""
    import argparse
    import sys

    from cdc.config import load_config
    from cdc.core.errors import HeadwaterError

    parser = argparse.ArgumentParser(prog="python -m snapshotter.sink_fill_runner")
    parser.add_argument("-c", "--config", required=True, type=Path)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--replace", action="store_true")
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS)
    parser.add_argument("tables", nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        refs = [TableRef(*t.split(".", 1)) for t in args.tables]
        batch = args.batch_rows
        result = fill_sink(config, args.sink, refs, replace=args.replace, progress=None, batch_rows=batch)
        print(result, flush=True)
    except HeadwaterError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
