#!/usr/bin/env bash
# The bind path in instructions (scripts/bench_instructions.py) on each
# major of BENCH_MAJORS (default "15 18"): installs the release build for
# that major, counts under callgrind, then writes README's table.
# `--smoke` checks the harness on the first major and leaves README alone.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_MAJORS="${BENCH_MAJORS:-15 18}"
bash scripts/setup.sh
. scripts/pg-majors.sh
command -v valgrind >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q valgrind; }
mkdir -p target
files=()
for major in $BENCH_MAJORS; do
  echo "== PostgreSQL $major: release build"
  # shellcheck disable=SC2046
  cargo pgrx install --release $(pgrx_build_args_of "$major")
  if [ "${1:-}" = "--smoke" ]; then
    PG_MAJOR="$major" .venv/bin/python scripts/bench_instructions.py --smoke
    exit 0
  fi
  PG_MAJOR="$major" .venv/bin/python scripts/bench_instructions.py --out "target/bench-instructions-pg$major.md"
  files+=("target/bench-instructions-pg$major.md")
done
.venv/bin/python scripts/bench_instructions.py --publish "${files[@]}"
