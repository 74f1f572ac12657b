#!/usr/bin/env bash
# Fails when the SQL that pgrx generates for this version differs from the
# reviewed copy in sql/generated/. A released version's schema never changes: a new
# surface needs a new version, its schema in sql/generated/ and an upgrade script
# sql/jwt_rls--OLD--NEW.sql. Comments (source locations) are ignored, and
# so is the order of statements, which pgrx does not keep stable.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_MAJOR="${PG_MAJOR:-15}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
. scripts/pg-majors.sh
SHAREDIR="$("$(pg_config_of "$PG_MAJOR")" --sharedir)"
generated="${SHAREDIR}/extension/jwt_rls--${VERSION}.sql"
reviewed="sql/generated/jwt_rls--${VERSION}.sql"
normalize() {
  python3 - "$1" <<'PY'
import re, sys
text = re.sub(r"/\*.*?\*/", "", open(sys.argv[1]).read(), flags=re.S)
lines = [l for l in text.splitlines() if l.strip() and not l.strip().startswith("--")]
statements = re.split(r";\s*$", "\n".join(lines), flags=re.M)
print("\n\n".join(sorted(s.strip() for s in statements if s.strip())))
PY
}
if [ "${1:-}" = "--update" ]; then
  # Without pgrx's source-location comments, which go stale with any edit.
  grep -v -E '^-- (src/|jwt_rls::)' "$generated" > "$reviewed"
  echo "check-schema: wrote $reviewed"
  exit 0
fi
if ! diff -u <(normalize "$reviewed") <(normalize "$generated"); then
  echo "check-schema: the generated schema differs from $reviewed." >&2
  echo "  Unreleased version: run scripts/check-schema.sh --update and commit it." >&2
  echo "  Released version: bump the version and add sql/jwt_rls--${VERSION}--NEW.sql." >&2
  exit 1
fi
echo "check-schema: $reviewed matches the generated schema"
# Released SQL files never change: users' databases were built from them.
if ! sha256sum --quiet --strict -c sql/RELEASED; then
  echo "check-schema: a released SQL file (sql/RELEASED) changed; restore it and put the change" >&2
  echo "  into a new version with its own upgrade script." >&2
  exit 1
fi
echo "check-schema: released SQL files unchanged ($(grep -c . sql/RELEASED) files)"
