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

# Two passes: most tests in parallel workers (HEADWATER_TEST_WORKERS, default 2; each test file stays
# on one worker, and tests use their own databases and topics), then the `serial` ones alone: they
# restart a shared server or purge its binlogs, which would pull the ground from under the others.
echo "== tests"
workers="${HEADWATER_TEST_WORKERS:-2}"
set +e
pytest -n "$workers" --dist loadfile -m "not serial" "$@"
rc_parallel=$?
echo "== serial tests"
pytest -m serial "$@"
rc_serial=$?
set -e
if [ "$rc_parallel" -eq 5 ] && [ "$rc_serial" -eq 5 ]; then
  echo "error: pytest collected no tests; that is a failure here" >&2
  rc=1
elif [ "$rc_parallel" -ne 0 ] && [ "$rc_parallel" -ne 5 ]; then
  rc=$rc_parallel
elif [ "$rc_serial" -ne 0 ] && [ "$rc_serial" -ne 5 ]; then
  rc=$rc_serial
else
  rc=0
fi
echo "== done in $(( $(date +%s) - start ))s (pytest exit $rc)"
exit "$rc"
