#!/usr/bin/env bash
# Shared steps for scripts/run.sh and scripts/test.sh: a virtualenv with pinned packages.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"

# Create the virtualenv once and install the given requirements file with the exact pins.
ensure_venv() {
  local requirements="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(basename "$requirements")"
  if [ ! -f "$stamp" ] || [ "$requirements" -nt "$stamp" ] || [ "$ROOT/constraints.txt" -nt "$stamp" ]; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" -c "$ROOT/constraints.txt"
    touch "$stamp"
  fi
}
