#!/usr/bin/env bash
# The demo: installs what is missing, builds and installs jwt_rls (release),
# then shows tenant isolation with real tokens in a throwaway cluster.
# PG_MAJOR=18 (or 14, 16, 17) runs it on another PostgreSQL major.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_MAJOR="${PG_MAJOR:-15}"
JWT_RLS_MAJORS="$PG_MAJOR" bash scripts/setup.sh
. scripts/pg-majors.sh
# shellcheck disable=SC2046
cargo pgrx install --release $(pgrx_build_args_of "$PG_MAJOR")
.venv/bin/python scripts/demo.py
