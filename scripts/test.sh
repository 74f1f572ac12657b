#!/usr/bin/env bash
# Every test, on every supported PostgreSQL major: lint, core unit and
# vector tests and a short fuzzing run of the core (once), then for each
# major the SQL contract inside Postgres (cargo pgrx test), the schema
# check, scenario and security tests through a real client against a
# throwaway cluster with the release build installed, and the package.
#
# Majors: JWT_RLS_MAJORS (default "15 14 18 16 17"). The whole scenario
# suite runs on JWT_RLS_FULL_MAJORS (default "15 14 18": the system one, the
# oldest and the newest); the other majors run the SQL contract, the
# golden error texts and the security, isolation, lifecycle and JWE
# scenarios ($SUBSET below). TESTING.md says how long each takes.
#
# Leaves the release build of jwt_rls installed in each major it tested
# (the one `bash scripts/demo.sh` installs): `cargo pgrx test` installs a
# debug test build, so the release build is installed right after it, and
# again on the way out if the run stops in between.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg-majors.sh
MAJORS="${JWT_RLS_MAJORS:-15 14 18 16 17}"
FULL_MAJORS="${JWT_RLS_FULL_MAJORS-15 14 18}"
SUBSET=(tests/test_regress.py tests/test_hostile.py tests/test_isolation.py tests/test_revocation.py
        tests/test_sessions.py tests/test_jwe.py tests/test_signing.py tests/test_roles.py
        tests/test_audit.py tests/test_isolate.py tests/test_dpop.py)

# shellcheck disable=SC2086  # lists of words
JWT_RLS_MAJORS="$MAJORS" JWT_RLS_TEST_DEPS=1 bash scripts/setup.sh

echo "== lint: no import circle among modules or folders (scripts/check-imports.py)"
python3 scripts/check-imports.py src core/src fetch/src

echo "== lint: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all -- --check
cargo clippy -p jwt_rls_core --all-targets -- -D warnings
cargo clippy -p jwt_rls_fetch --all-targets -- -D warnings
cargo clippy -p jwt_rls --all-targets --features pg_test -- -D warnings
# The branches for other majors (src/settings.rs, src/shmem.rs): 14 has the
# pre-15 ones, 18 the 16-and-later ones.
for major in 14 18; do
  case " $MAJORS " in *" $major "*)
    cargo clippy -p jwt_rls --all-targets --no-default-features --features "pg$major,pg_test" -- -D warnings ;;
  esac
done

echo "== core: cargo test -p jwt_rls_core"
cargo test -p jwt_rls_core

echo "== fetch: cargo test -p jwt_rls_fetch (real HTTPS servers on 127.0.0.1)"
cargo test -p jwt_rls_fetch

echo "== core: fuzz smoke, scripts/fuzz.sh ${FUZZ_SECONDS:-30} (a crash fails the run)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}" > target/fuzz-smoke.log 2>&1 || { tail -50 target/fuzz-smoke.log; exit 1; }
grep -E "^Done" target/fuzz-smoke.log

install_release() {
  echo "== PostgreSQL $1: install the release build"
  # shellcheck disable=SC2046
  cargo pgrx install --release $(pgrx_build_args_of "$1")
}
debug_installed=""  # the major whose release build is not installed now
restore_release() {
  if [ -n "$debug_installed" ]; then
    echo "test.sh: the run stopped with the debug test build (or no build) installed in PostgreSQL $debug_installed; installing the release build" >&2
    install_release "$debug_installed" >&2 \
      || echo "test.sh: could not reinstall; run: cargo pgrx install --release $(pgrx_build_args_of "$debug_installed")" >&2
  fi
}
trap restore_release EXIT

timings=()
for major in $MAJORS; do
  started=$SECONDS
  export PG_MAJOR="$major"
  full=0
  case " $FULL_MAJORS " in *" $major "*) full=1 ;; esac

  echo "== PostgreSQL $major: cargo pgrx test (SQL contract; installs a debug test build)"
  debug_installed="$major"
  bash scripts/pgrx-test.sh
  install_release "$major"
  debug_installed=""
  bash scripts/check-schema.sh

  if [ "$major" = 15 ]; then
    echo "== benchmarks, smoke run (checks the scripts run; the numbers mean nothing here)"
    .venv/bin/python scripts/bench.py --smoke > target/bench-smoke.log 2>&1 || { tail -40 target/bench-smoke.log; exit 1; }
    tail -3 target/bench-smoke.log
    echo "== benchmarks in instructions, smoke run (callgrind; scripts/bench_instructions.py --smoke)"
    .venv/bin/python scripts/bench_instructions.py --smoke > target/bench-instructions-smoke.log 2>&1 \
      || { tail -40 target/bench-instructions-smoke.log; exit 1; }
    grep -E "^\| (never-seen|same token|DPoP)" target/bench-instructions-smoke.log
  fi

  if [ "$full" = 1 ]; then
    echo "== PostgreSQL $major: scenarios, pytest tests/ (the whole suite)"
    .venv/bin/python -m pytest tests -q -s -p no:cacheprovider
  else
    echo "== PostgreSQL $major: scenarios, pytest ${SUBSET[*]}"
    .venv/bin/python -m pytest "${SUBSET[@]}" -q -s -p no:cacheprovider
  fi

  echo "== PostgreSQL $major: the Debian package (postgresql-$major-jwt-rls): build, install, smoke test, remove"
  debug_installed="$major"  # removing the package removes the installed library
  bash scripts/test-deb.sh
  install_release "$major"
  debug_installed=""
  timings+=("PostgreSQL $major: $((SECONDS - started)) s")
done
unset PG_MAJOR

echo "== PGXN: META.json against the meta spec, source distribution"
bash scripts/pgxn-dist.sh

echo "== time per major (after the shared steps)"
printf '  %s\n' "${timings[@]}"
