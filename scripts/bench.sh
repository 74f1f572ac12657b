#!/usr/bin/env bash
# Benchmarks: builds and installs jwt_rls in release mode, then runs
# scripts/bench.py (core beside openssl speed, pgbench pairs, scans, EXPLAIN,
# memory, the pooled workload through PgBouncer) and rewrites the table in
# README.md. `--smoke` runs in seconds
# and leaves the README alone (the test command uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
PG_MAJOR="${PG_MAJOR:-15}"
bash scripts/setup.sh
. scripts/pg-majors.sh
# shellcheck disable=SC2046
cargo pgrx install --release $(pgrx_build_args_of "$PG_MAJOR")
.venv/bin/python scripts/bench.py "$@"
