#!/usr/bin/env bash
# Every test: core unit and vector tests, the SQL contract inside Postgres
# (cargo pgrx test), scenario and security tests through a real client
# against a throwaway cluster with the freshly built extension installed,
# and a short fuzzing run of the core.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_MAJOR="${PG_MAJOR:-15}"

bash scripts/setup.sh

echo "== core: cargo test -p jwt_rls_core"
cargo test -p jwt_rls_core

echo "== core: fuzz smoke, scripts/fuzz.sh ${FUZZ_SECONDS:-30} (a crash fails the run)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}" > target/fuzz-smoke.log 2>&1 || { tail -50 target/fuzz-smoke.log; exit 1; }
grep -E "^Done" target/fuzz-smoke.log

echo "== extension: cargo pgrx test (SQL contract)"
bash scripts/pgrx-test.sh

echo "== extension: install into PostgreSQL ${PG_MAJOR}"
cargo pgrx install --pg-config "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
bash scripts/check-schema.sh

echo "== benchmarks, smoke run (checks the scripts run; the numbers mean nothing here)"
python3 scripts/bench.py --smoke > target/bench-smoke.log 2>&1 || { tail -40 target/bench-smoke.log; exit 1; }
tail -3 target/bench-smoke.log

echo "== scenarios: pytest tests/"
python3 -m pytest tests -q -s -p no:cacheprovider
