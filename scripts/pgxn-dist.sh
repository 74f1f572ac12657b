#!/usr/bin/env bash
# The PGXN source distribution: checks META.json against the PGXN meta spec
# (pgxn_meta, the PGXN project's validator) and against Cargo.toml, then
# writes target/pgxn/jwt_rls-VERSION.zip from the committed tree (git
# archive), with META.json at the top of its one directory, as PGXN wants.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
pgxn_meta META.json
python3 - "$VERSION" <<'PY'
import json, sys
meta = json.load(open("META.json"))
version = sys.argv[1]
problems = [f"{where} is {got}, Cargo.toml says {version}"
            for where, got in [("version", meta["version"]), ("provides.jwt_rls.version", meta["provides"]["jwt_rls"]["version"])]
            if got != version]
if meta["provides"]["jwt_rls"]["file"] != f"sql/generated/jwt_rls--{version}.sql":
    problems.append("provides.jwt_rls.file is not the reviewed schema of this version")
if problems:
    sys.exit("pgxn-dist: " + "; ".join(problems))
PY
if [ -n "$(git status --porcelain)" ]; then
  echo "pgxn-dist: warning: uncommitted changes are not in the distribution (it is built from HEAD)" >&2
fi
mkdir -p target/pgxn
zip="target/pgxn/jwt_rls-${VERSION}.zip"
git archive --format=zip --prefix="jwt_rls-${VERSION}/" -o "$zip" HEAD
python3 -c 'import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist(); sys.exit(0 if sys.argv[2] in names else "pgxn-dist: no META.json at the top")' "$zip" "jwt_rls-${VERSION}/META.json"
echo "$zip"
