#!/usr/bin/env bash
# The golden error-text layer alone: pg_regress over tests/regress against a
# throwaway cluster with the installed jwt_rls (tests/test_regress.py).
# --update: accept the current output as expected (review the diff!).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 tests/regress/generate.py
if [ "${1:-}" = "--update" ]; then
  .venv/bin/python -m pytest tests/test_regress.py -q -p no:cacheprovider || true
  for result in target/regress/results/*.out; do
    # A major with its own pinned file (tests/regress/expected/pgNN/) updates that one.
    target="tests/regress/expected/$(basename "$result")"
    pinned="tests/regress/expected/pg${PG_MAJOR:-15}/$(basename "$result")"
    [ -f "$pinned" ] && target="$pinned"
    cp "$result" "$target"
    echo "regress: wrote $target"
  done
  exit 0
fi
exec .venv/bin/python -m pytest tests/test_regress.py -q -p no:cacheprovider
