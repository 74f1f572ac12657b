#!/usr/bin/env bash
# Fuzzes the core's parse/verify path with libFuzzer (cargo-fuzz).
#   bash scripts/fuzz.sh              # 60 seconds
#   bash scripts/fuzz.sh 600          # ten minutes
#   bash scripts/fuzz.sh runs 10000000
# Seeds come from the test vectors; crashes land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
corpus="$(mktemp -d /tmp/jwt_rls_fuzz_corpus.XXXXXX)"
trap 'rm -rf "$corpus"' EXIT
python3 - "$corpus" <<'PY'
import json, sys, hashlib
for case in json.load(open("core/tests/vectors/tokens.json")):
    token = case["token"].encode()
    if len(token) < 65536:
        open(f"{sys.argv[1]}/{hashlib.sha1(token).hexdigest()}", "wb").write(token)
PY
if [ "${1:-}" = "runs" ]; then limit="-runs=${2:?number of runs}"; else limit="-max_total_time=${1:-60}"; fi
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
# accept them (no other toolchain can be installed on these machines).
export RUSTC_BOOTSTRAP=1
cd fuzz
exec cargo fuzz run verify "$corpus" -- "$limit" -max_len=4096 -print_final_stats=1
