#!/usr/bin/env bash
# Builds a released version of jwt_rls from its commit, for the upgrade
# test: prints the directory of its package (cargo pgrx package layout:
# the major's pkglibdir/jwt_rls.so and sharedir/extension/ under it; for
# PG_MAJOR, default 15).
# Cached: a second call with the same commit prints the same directory.
# Usage: scripts/build-old.sh VERSION COMMIT
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="$1" COMMIT="$2"
PG_MAJOR="${PG_MAJOR:-15}"
. scripts/pg-majors.sh
PG_CONFIG="$(pg_config_of "$PG_MAJOR")"
root="$(pwd)"
src="$root/target/old-src/$VERSION"
out="$root/target/old-build/release/jwt_rls-pg${PG_MAJOR}"
stamp="$root/target/old-build/$VERSION-pg${PG_MAJOR}.commit"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$COMMIT" ] && [ -f "$out$("$PG_CONFIG" --pkglibdir)/jwt_rls.so" ]; then
  echo "$out"; exit 0
fi
rm -rf "$src"; mkdir -p "$(dirname "$src")"
git archive --format=tar --prefix="$VERSION/" "$COMMIT" | tar -x -C "$(dirname "$src")"
grep -q "^version = \"$VERSION\"" "$src/Cargo.toml" || { echo "build-old: $COMMIT is not version $VERSION" >&2; exit 1; }
# Its own target directory: the current tree's target/release stays as built.
# shellcheck disable=SC2046  # the arguments are words
(cd "$src" && CARGO_TARGET_DIR="$root/target/old-build" cargo pgrx package \
   $(pgrx_build_args_of "$PG_MAJOR") >&2)
echo "$COMMIT" > "$stamp"
echo "$out"
