#!/usr/bin/env bash
# Starts the reference app on http://127.0.0.1:8080/ (or --port N) with
# PostgreSQL 15 and PgBouncer, all throwaway: Ctrl-C stops and removes
# them. Needs what `bash scripts/setup.sh` installs; installs the release
# build of jwt_rls when PostgreSQL 15 has none (after a change of the
# extension: cargo pgrx install --release).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv/bin/python ] || ! command -v node >/dev/null || ! command -v pgbouncer >/dev/null; then
  echo "start.sh: run bash scripts/setup.sh first" >&2
  exit 1
fi
. scripts/pg-majors.sh
if [ ! -e "$("$(pg_config_of 15)" --pkglibdir)/jwt_rls.so" ]; then
  echo "start.sh: installing the release build of jwt_rls for PostgreSQL 15 (a few minutes the first time)"
  # shellcheck disable=SC2046  # a list of words
  cargo pgrx install --release $(pgrx_build_args_of 15)
fi
if [ ! -d examples/webapp/node_modules/pg ]; then
  npm ci --prefix examples/webapp --no-audit --no-fund --loglevel=error >/dev/null
fi
exec .venv/bin/python examples/webapp/stack.py "$@"
