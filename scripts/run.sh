#!/usr/bin/env bash
# Install, migrate, seed the demo account on the embedded default, and serve the portal with its scheduler.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_venv "$ROOT/requirements.txt"
export FLASK_APP=wsgi
"$VENV/bin/flask" db upgrade
if [ -z "${DATABASE_URL:-}" ]; then
  # Demo data only on the embedded SQLite default, and only into an empty database.
  "$VENV/bin/flask" seed-demo --if-empty
fi
exec "$VENV/bin/python" wsgi.py
