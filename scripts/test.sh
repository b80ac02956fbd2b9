#!/usr/bin/env bash
# The test command: installs what is missing, starts the local stack (MariaDB, Kafka, PostgreSQL),
# runs lint, types and every test (unit and integration). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/setup.sh
echo "== setup done in $(( $(date +%s) - start ))s"
export PATH="$PWD/.venv/bin:$PATH"

echo "== lint and types"
ruff check cdc snapshotter reconciler sinks tests benchmarks
ruff format --check cdc snapshotter reconciler sinks tests benchmarks
mypy

echo "== local stack"
stack_start=$(date +%s)
cdc dev up
echo "== stack up in $(( $(date +%s) - stack_start ))s"
if [ "${CI:-}" = "true" ]; then trap 'cdc dev down || true' EXIT; fi

echo "== tests"
set +e
pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests; that is a failure here" >&2
  rc=1
fi
echo "== done in $(( $(date +%s) - start ))s (pytest exit $rc)"
exit "$rc"
