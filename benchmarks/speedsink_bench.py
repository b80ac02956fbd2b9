"""Only the sink side of the benchmarks: apply from Kafka (and embedded, and each reference) per target.

    .venv/bin/python -m benchmarks.speedsink_bench [--rows 200000] [--targets postgresql,iceberg]
        [--pipeline NAME] [--embedded] [--reference] [--profile DIR]

Writes the sinks range and captures it once into a pipeline (or reuses ``--pipeline``, a pipeline an
earlier run captured: its topics are still on the broker), then runs ``benchmarks.child sink_kafka``
for each target, as ``benchmarks.run`` does. Prints one JSON document; for quick A/B runs of the
consume-and-apply path without the whole suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.run import SIZES, Runner
from benchmarks.tasks import TARGETS
from benchmarks.workload import Workload
from cdc.devstack.connections import StackConnections, default_state_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--pipeline", help="an already captured pipeline (its range is not rewritten)")
    parser.add_argument("--embedded", action="store_true", help="also the embedded apply (needs the range)")
    parser.add_argument("--reference", action="store_true", help="also each target's bulk-load reference")
    parser.add_argument("--profile", type=Path, help="write sink_kafka profiles here")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    stack = StackConnections.read(default_state_dir())
    profiles = args.profile or Path(tempfile.mkdtemp(prefix="hw-speedsink-prof-"))
    runner = Runner(stack, profiles.parent, replace(SIZES["medium"], sink=args.rows, profile=False))
    runner.profiles = profiles
    tmp = Path(tempfile.mkdtemp(prefix="hw-speedsink-"))
    result: dict[str, Any] = {}
    try:
        if args.pipeline:
            pipeline = args.pipeline
        else:
            runner.start(Workload.create(runner.server))
            pipeline = f"bench{runner.run_id}sinks"
            result["capture"] = runner.with_range("sinks", partial(runner.capture, pipeline=pipeline))
            result["range"] = asdict(runner.range("sinks"))
        result["pipeline"] = pipeline
        print(f"[speedsink] pipeline {pipeline}", file=sys.stderr)
        for target in args.targets.split(","):
            entry: dict[str, Any] = {}
            kafka = runner._place(target, f"{target[:2]}_kafka", tmp)
            entry["kafka"] = runner.child(
                "sink_kafka",
                {"pipeline": pipeline, "place": kafka},
                profile=f"apply_{target}_kafka" if args.profile else None,
            )
            if args.embedded or args.reference:
                r = runner.range("sinks")
                if args.embedded:
                    emb = runner._place(target, f"{target[:2]}_emb", tmp)
                    entry["embedded"] = runner.child(
                        "sink_embedded",
                        {"range": asdict(r), "pipeline": f"emb{runner.run_id}", "place": emb,
                         "server_id": runner._next_server_id()},
                    )  # fmt: skip
                if args.reference and args.embedded:  # it loads the rows the embedded sink wrote
                    ref = runner._place(target, f"{target[:2]}_ref", tmp)
                    sink_name = emb["directory"] if target in ("sqlite", "iceberg") else emb["name"]
                    if target == "iceberg":
                        ref = {**ref, "name": emb["name"]}
                    entry["reference"] = runner.child(
                        "reference", {"range": asdict(r), "place": ref, "sink_name": sink_name,
                                      "server_id": runner._next_server_id()},
                    )  # fmt: skip
            result[target] = entry
            shown = {k: f"{v.get('rows_per_s', 0):,.0f} rows/s, {v.get('rows_per_cpu_s', 0):,.0f} rows/cpu-s,"
                        f" {v.get('peak_rss_mb', 0):,.0f} MiB"
                     for k, v in entry.items()}  # fmt: skip
            print(f"[speedsink] {target}: {shown}", file=sys.stderr)
    finally:
        runner.drop_places()
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
