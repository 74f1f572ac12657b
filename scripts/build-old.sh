#!/usr/bin/env bash
# Builds a released version of jwt_rls from its commit, for the upgrade
# test: prints the directory of its package (cargo pgrx package layout:
# usr/lib/postgresql/15/lib/jwt_rls.so, usr/share/postgresql/15/extension/).
# Cached: a second call with the same commit prints the same directory.
# Usage: scripts/build-old.sh VERSION COMMIT
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="$1" COMMIT="$2"
PG_MAJOR="${PG_MAJOR:-15}"
root="$(pwd)"
src="$root/target/old-src/$VERSION"
out="$root/target/old-build/release/jwt_rls-pg${PG_MAJOR}"
stamp="$root/target/old-build/$VERSION.commit"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$COMMIT" ] && [ -f "$out/usr/lib/postgresql/${PG_MAJOR}/lib/jwt_rls.so" ]; then
  echo "$out"; exit 0
fi
rm -rf "$src"; mkdir -p "$(dirname "$src")"
git archive --format=tar --prefix="$VERSION/" "$COMMIT" | tar -x -C "$(dirname "$src")"
grep -q "^version = \"$VERSION\"" "$src/Cargo.toml" || { echo "build-old: $COMMIT is not version $VERSION" >&2; exit 1; }
# Its own target directory: the current tree's target/release stays as built.
(cd "$src" && CARGO_TARGET_DIR="$root/target/old-build" cargo pgrx package \
   --pg-config "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config" >&2)
echo "$COMMIT" > "$stamp"
echo "$out"
