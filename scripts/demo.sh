#!/usr/bin/env bash
# The demo: installs what is missing, builds and installs jwt_rls (release),
# then shows tenant isolation with real tokens in a throwaway cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_MAJOR="${PG_MAJOR:-15}"
bash scripts/setup.sh
cargo pgrx install --release --pg-config "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
.venv/bin/python scripts/demo.py
