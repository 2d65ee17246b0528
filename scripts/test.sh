#!/usr/bin/env bash
# Install what the tests need, lint with ruff, and run the whole suite twice: on SQLite, then on PostgreSQL.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

bash "$ROOT/scripts/system-deps.sh"
ensure_venv "$ROOT/requirements-dev.txt"

PG_URL="${TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"

# Run pytest; "no tests collected" (exit 5) is a failure, not a pass.
run_suite() {
  local label="$1"; shift
  echo "=== Test suite on $label ==="
  set +e
  "$@" "$VENV/bin/python" -m pytest "${PYTEST_ARGS[@]}"
  local status=$?
  set -e
  if [ "$status" = 5 ]; then echo "No tests were collected on $label." >&2; return 1; fi
  return "$status"
}

echo "=== ruff check ==="
# Lint first; a finding fails the run, after the suites so one run still reports every test.
lint_status=0
"$VENV/bin/ruff" check "$ROOT" || lint_status=$?

PYTEST_ARGS=("$@")
# The SQLite pass still runs the few PostgreSQL-only tests (row locks) on a database of their own there.
run_suite "SQLite" env -u TEST_DATABASE_URL TEST_POSTGRES_URL="$PG_URL"
run_suite "PostgreSQL" env TEST_DATABASE_URL="$PG_URL"
if [ "$lint_status" != 0 ]; then echo "ruff check found problems (listed at the start)." >&2; exit 1; fi
