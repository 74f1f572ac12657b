#!/usr/bin/env bash
# Installs the built Debian package with apt-get (as a user would), creates
# the extension in a fresh cluster, runs a smoke scenario with SQL alone
# (a key generated in the database signs a token that authenticate()
# verifies and RLS applies), removes the package and checks its files are
# gone. Root (or sudo) required. Leaves the package removed: scripts/test.sh
# reinstalls the release build after it.
#
# PG_MAJOR other than 15: this machine has no Debian postgresql-NN package
# for those majors (they come from PyPI, scripts/pg-majors.sh), so apt-get
# cannot satisfy the package's Depends. Its files are unpacked (dpkg-deb -x)
# from their Debian paths into that major's install instead, and the same
# smoke scenario runs on that major's server; then they are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_MAJOR="${PG_MAJOR:-15}"
. scripts/pg-majors.sh
BIN="$(dirname "$(pg_config_of "$PG_MAJOR")")"
SUDO=""; if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
deb="$(bash scripts/package-deb.sh)"
name="postgresql-${PG_MAJOR}-jwt-rls"

dpkg-deb --info "$deb" | sed -n '/Package:/,/Description:/p'
libdir="$("$BIN/pg_config" --pkglibdir)"; sharedir="$("$BIN/pg_config" --sharedir)"
debian_lib="/usr/lib/postgresql/${PG_MAJOR}/lib"; debian_ext="/usr/share/postgresql/${PG_MAJOR}/extension"
if [ "$PG_MAJOR" = 15 ]; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "./$deb" >/dev/null
  dpkg -s "$name" | grep "Status: install ok installed" >/dev/null
  dpkg -L "$name" | grep -x "$libdir/jwt_rls.so" >/dev/null
  # The installed files match the package's checksums (DEBIAN/md5sums).
  dpkg --verify "$name"
  [ -s "/var/lib/dpkg/info/${name}.md5sums" ] || { echo "test-deb: no md5sums"; exit 1; }
else
  unpacked="$(mktemp -d /tmp/jwt_rls_deb_root.XXXXXX)"
  dpkg-deb -x "$deb" "$unpacked"
  # Debian's layout, and the files match the package's checksums.
  [ -f "$unpacked$debian_lib/jwt_rls.so" ] && [ -f "$unpacked$debian_ext/jwt_rls.control" ] \
    || { echo "test-deb: $deb lacks $debian_lib/jwt_rls.so or $debian_ext/jwt_rls.control"; exit 1; }
  dpkg-deb -e "$deb" "$unpacked/DEBIAN"
  (cd "$unpacked" && md5sum --quiet -c DEBIAN/md5sums)
  grep -q "^Depends: postgresql-${PG_MAJOR}\b" "$unpacked/DEBIAN/control"
  cp "$unpacked$debian_lib/jwt_rls.so" "$libdir/jwt_rls.so"
  cp "$unpacked$debian_ext"/jwt_rls* "$sharedir/extension/"
  rm -rf "$unpacked"
fi

data="$(mktemp -d /tmp/jwt_rls_deb.XXXXXX)"; $SUDO chown postgres "$data"
port=$((20000 + RANDOM % 20000))
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else sudo -u postgres bash -c "$*"; fi; }
cleanup() { as_pg "$BIN/pg_ctl -D $data/db -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$data"; }
trap cleanup EXIT
as_pg "$BIN/initdb -D $data/db -A trust >/dev/null"
as_pg "$BIN/pg_ctl -D $data/db -o '-p $port -k $data -c listen_addresses=' -l $data/log start >/dev/null"
psql() { command "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$data" -p "$port" -U postgres -d postgres "$@"; }
result="$(psql -At <<'SQL'
CREATE EXTENSION jwt_rls;
SELECT version FROM jwt_rls.build_info() WHERE NOT debug_build;
SELECT jwt_rls.generate_signing_key('deb-smoke', 'ES256') ->> 'kid';
CREATE TABLE notes (tenant text, body text);
INSERT INTO notes VALUES ('a', 'for a'), ('b', 'for b');
CREATE ROLE app;
GRANT USAGE ON SCHEMA jwt_rls TO app;
GRANT SELECT ON notes TO app;
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON notes USING (tenant = (SELECT jwt_rls.jwt_claim('tenant')));
SELECT jwt_rls.sign('{"tenant": "a"}') AS token \gset
BEGIN;
SET LOCAL ROLE app;
SELECT jwt_rls.authenticate(:'token') ->> 'tenant';
SELECT string_agg(body, ',') FROM notes;
COMMIT;
SQL
)"
expected="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
deb-smoke
a
for a"
if [ "$result" != "$expected" ]; then
  echo "test-deb: smoke scenario printed:"; echo "$result"; echo "expected:"; echo "$expected"; exit 1
fi
cleanup; trap - EXIT

if [ "$PG_MAJOR" = 15 ]; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q "$name" >/dev/null
  if dpkg -s "$name" 2>/dev/null | grep "Status: install ok installed" >/dev/null; then echo "test-deb: still installed"; exit 1; fi
else
  rm -f "$libdir/jwt_rls.so" "$sharedir/extension"/jwt_rls.control "$sharedir/extension"/jwt_rls--*.sql
fi
for f in "$libdir/jwt_rls.so" "$sharedir/extension/jwt_rls.control"; do
  if [ -e "$f" ]; then echo "test-deb: $f left behind"; exit 1; fi
done
if [ "$PG_MAJOR" = 15 ]; then how="installed with apt-get"; else how="unpacked into PostgreSQL $PG_MAJOR"; fi
echo "test-deb: $deb $how, created, verified a token, removed cleanly"
