#!/usr/bin/env bash
# Every test: lint, core unit and vector tests, the SQL contract inside
# Postgres (cargo pgrx test), scenario and security tests through a real
# client against a throwaway cluster with the release build installed, and
# a short fuzzing run of the core.
#
# Leaves the release build of jwt_rls installed in the system PostgreSQL
# (the one `bash scripts/demo.sh` installs): `cargo pgrx test` installs a
# debug test build there, so the release build is installed right after
# it, and again on the way out if the run stops in between.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_MAJOR="${PG_MAJOR:-15}"
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"

bash scripts/setup.sh

echo "== lint: no import circle among modules or folders (scripts/check-imports.py)"
python3 scripts/check-imports.py src core/src fetch/src

echo "== lint: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all -- --check
cargo clippy -p jwt_rls_core --all-targets -- -D warnings
cargo clippy -p jwt_rls_fetch --all-targets -- -D warnings
cargo clippy -p jwt_rls --all-targets --features pg_test -- -D warnings

echo "== core: cargo test -p jwt_rls_core"
cargo test -p jwt_rls_core

echo "== fetch: cargo test -p jwt_rls_fetch (real HTTPS servers on 127.0.0.1)"
cargo test -p jwt_rls_fetch

echo "== core: fuzz smoke, scripts/fuzz.sh ${FUZZ_SECONDS:-30} (a crash fails the run)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}" > target/fuzz-smoke.log 2>&1 || { tail -50 target/fuzz-smoke.log; exit 1; }
grep -E "^Done" target/fuzz-smoke.log

install_release() {
  echo "== extension: install the release build into PostgreSQL ${PG_MAJOR}"
  cargo pgrx install --release --pg-config "$PG_CONFIG"
}
test_build_installed=0
restore_release() {
  if [ "$test_build_installed" = 1 ]; then
    echo "test.sh: the run stopped with the debug test build (or no build) installed; installing the release build" >&2
    install_release >&2 || echo "test.sh: could not reinstall; run: cargo pgrx install --release --pg-config $PG_CONFIG" >&2
  fi
}
trap restore_release EXIT

echo "== extension: cargo pgrx test (SQL contract; installs a debug test build)"
test_build_installed=1
bash scripts/pgrx-test.sh
install_release
test_build_installed=0
bash scripts/check-schema.sh

echo "== benchmarks, smoke run (checks the scripts run; the numbers mean nothing here)"
.venv/bin/python scripts/bench.py --smoke > target/bench-smoke.log 2>&1 || { tail -40 target/bench-smoke.log; exit 1; }
tail -3 target/bench-smoke.log

echo "== scenarios: pytest tests/"
.venv/bin/python -m pytest tests -q -s -p no:cacheprovider

echo "== package: build the Debian package, install it with apt-get, smoke test, remove it"
test_build_installed=1  # removing the package removes the installed library
bash scripts/test-deb.sh
install_release
test_build_installed=0

echo "== PGXN: META.json against the meta spec, source distribution"
bash scripts/pgxn-dist.sh
