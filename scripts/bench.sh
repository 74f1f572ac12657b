#!/usr/bin/env bash
# Benchmarks on each PostgreSQL major of BENCH_MAJORS (default "15 18": the
# Debian one and the newest): for each, builds and installs jwt_rls in
# release mode for that major, then runs scripts/bench.py (core beside
# openssl speed, pgbench pairs, scans, EXPLAIN, memory, the pooled workload
# through PgBouncer, a never-seen token and a DPoP proof per transaction)
# with PG_MAJOR set, into target/bench-pgNN.json. Then
# `bench.py --combine` rewrites the table in README.md from those files, a
# column per major. The core figures do not involve PostgreSQL: they are
# measured with the first major only. `--smoke` runs in seconds and
# leaves the README alone, as does `--only WORKLOAD...` (both print the table).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_MAJORS="${BENCH_MAJORS:-15 18}"
bash scripts/setup.sh
. scripts/pg-majors.sh
mkdir -p target
files=()
skip=()
for major in $BENCH_MAJORS; do
  echo "== PostgreSQL $major: release build"
  # shellcheck disable=SC2046
  cargo pgrx install --release $(pgrx_build_args_of "$major")
  PG_MAJOR="$major" .venv/bin/python scripts/bench.py "$@" "${skip[@]}" --json "target/bench-pg$major.json"
  files+=("target/bench-pg$major.json")
  skip=(--skip core)
done
.venv/bin/python scripts/bench.py --combine "${files[@]}" "$@"
