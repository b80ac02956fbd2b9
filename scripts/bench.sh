#!/usr/bin/env bash
# The benchmark command: installs what scripts/setup.sh installs (nothing more), starts the local
# stack (MariaDB, Kafka, PostgreSQL) and runs every benchmark, each figure beside its reference.
#   scripts/bench.sh                      # --size medium (1M row changes), ~10-15 min on 2 cores
#   scripts/bench.sh --size smoke         # < 60 s, what CI runs
#   scripts/bench.sh --size large --out /tmp/bench
# Results: <out>/latest.json, <out>/latest.md, <out>/profiles/*.txt (default out: benchmarks/results).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
cdc dev up
exec python -m benchmarks.run "$@"
