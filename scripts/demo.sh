#!/usr/bin/env bash
# The main job, on the embedded default: installs what is missing, brings the local stack up
# (MariaDB with binlog, Kafka, PostgreSQL) and shows changes flowing from MariaDB's binlog.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
cdc dev up
cdc --log-level WARNING dev demo "$@"   # the daemon logs at INFO with `cdc run`
