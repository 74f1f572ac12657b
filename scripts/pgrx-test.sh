#!/usr/bin/env bash
# Runs the #[pg_test] SQL-contract tests in a pgrx-managed cluster. Postgres
# will not run as root, so when we are root it runs as `postgres`.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_MAJOR="${PG_MAJOR:-15}"
# Only this major's feature (the default feature is pg15).
FEATURES=(--no-default-features --features "pg${PG_MAJOR}")
if [ "$(id -u)" = 0 ]; then
  PGDATA_DIR="${PGRX_TEST_PGDATA:-/tmp/jwt_rls_pgrx_test}"
  rm -rf "$PGDATA_DIR"
  install -d -o postgres -g postgres "$PGDATA_DIR"
  # The test cluster writes into target/; let postgres reach it.
  mkdir -p target && chmod o+rx . target
  exec cargo pgrx test "pg${PG_MAJOR}" "${FEATURES[@]}" --runas postgres --pgdata "$PGDATA_DIR" "$@"
fi
exec cargo pgrx test "pg${PG_MAJOR}" "${FEATURES[@]}" "$@"
