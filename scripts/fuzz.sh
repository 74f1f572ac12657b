#!/usr/bin/env bash
# Fuzzes the core with libFuzzer (cargo-fuzz), three targets of fuzz/ one
# after the other:
#   verify  tokens (JWS, and JWE with a dir key) and JWKS: verify, verify_any, parse_jwks
#   dpop    DPoP proofs (RFC 9449): verify_proof, for the vector proofs' requests
#   jwe     nested JWTs (JWE) with every kind of decryption key: verify_any
#
#   bash scripts/fuzz.sh              # 60 seconds in all, a third each
#   bash scripts/fuzz.sh 600          # ten minutes in all
#   bash scripts/fuzz.sh runs 10000000   # that many runs of each target
# Seeds come from the test vectors (core/tests/vectors/tokens.json,
# core/tests/vectors/dpop/, core/tests/jwe/), written to a temporary
# directory; each target prints libFuzzer's "Done N runs in S second(s)"
# line (one per target, in the order above); a crash fails the script and
# lands in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
targets=(verify dpop jwe)
corpus="$(mktemp -d /tmp/jwt_rls_fuzz_corpus.XXXXXX)"
trap 'rm -rf "$corpus"' EXIT
python3 - "$corpus" <<'PY'
import base64, hashlib, json, os, re, struct, sys

root = sys.argv[1]

def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) < 4096:  # -max_len below
        os.makedirs(f"{root}/{target}", exist_ok=True)
        open(f"{root}/{target}/{hashlib.sha1(data).hexdigest()}", "wb").write(data)

def unb64(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

def framed(sel, cut, rest):
    # The targets' structured form: a selector byte, a cut (u16, big
    # endian), the rest.
    return bytes([sel]) + struct.pack(">H", min(cut, 65535)) + rest

compact = dict(separators=(",", ":"))
tokens = json.load(open("core/tests/vectors/tokens.json"))
by_name = {t["name"]: t for t in tokens}

# verify: the signed vector tokens, valid and invalid.
for case in tokens:
    write("verify", case["token"])

# dpop: each vector proof as it is, and in each of the target's four modes
# (fuzz/fuzz_targets/dpop.rs), for its request (numbered as the target
# numbers them: distinct method, url, access token, in file order).
key_x = re.search(r'const KEY_X: &str = "([^"]+)"', open("fuzz/fuzz_targets/dpop.rs").read()).group(1)
own_header = json.dumps({"typ": "dpop+jwt", "alg": "EdDSA",
                         "jwk": {"kty": "OKP", "crv": "Ed25519", "x": key_x}}, **compact).encode()
requests = []
for name in ["proofs", "refused"]:
    for p in json.load(open(f"core/tests/vectors/dpop/{name}.json")):
        r = (p["method"], p["url"], p["access_token"])
        if r not in requests:
            requests.append(r)
        i = requests.index(r)
        write("dpop", p["proof"])
        h, pl = (unb64(s) for s in p["proof"].split(".")[:2])
        write("dpop", framed(i << 2 | 0, len(h), h + pl))
        write("dpop", framed(i << 2 | 0, len(own_header), own_header + pl))
        write("dpop", framed(i << 2 | 1, 0, pl))
        write("dpop", framed(i << 2 | 2, 0, h))
        htu = json.loads(pl).get("htu", "").encode()
        write("dpop", framed(i << 2 | 3, len(htu), htu + p["url"].encode()))

# jwe: the jwcrypto and joserfc tokens, valid and hostile, as they are, and
# each valid one's header and inner token (or its claims) in the target's
# four modes, for its key (numbered as the target numbers them: keys.json's
# order, without the "other" keys).
kids = [k["kid"] for k in json.load(open("core/tests/jwe/keys.json"))["keys"] if "other" not in k["kid"]]
for case in json.load(open("core/tests/jwe/hostile.json")):
    write("jwe", case["token"])
for v in json.load(open("core/tests/jwe/vectors.json")):
    write("jwe", v["token"])
    if v["kid"] not in kids:
        continue
    j = kids.index(v["kid"])
    enc = 0 if v["enc"] == "A256GCM" else 4
    header = unb64(v["token"].split(".")[0])
    inner = by_name[v["inner"]]
    write("jwe", framed(j << 3 | enc | (0 if enc == 0 else 1), len(header), header + inner["token"].encode()))
    write("jwe", framed(j << 3 | enc | 2, 0, inner["token"].encode()))
    write("jwe", framed(j << 3 | enc | 3, 0, json.dumps(inner["claims"], **compact).encode()))

for target in ["verify", "dpop", "jwe"]:
    print(f"seeds for {target}: {len(os.listdir(f'{root}/{target}'))}")
PY
if [ "${1:-}" = "runs" ]; then
  limits=("-runs=${2:?number of runs}" "-runs=$2" "-runs=$2")
else
  # The seconds split between the targets (verify takes what is left over).
  total="${1:-60}"
  third=$(( total / 3 > 0 ? total / 3 : 1 ))
  first=$(( total - 2 * third > 0 ? total - 2 * third : 1 ))
  limits=("-max_total_time=$first" "-max_total_time=$third" "-max_total_time=$third")
fi
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
# accept them (no other toolchain can be installed on these machines).
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build
log="$corpus/log"
for i in "${!targets[@]}"; do
  t="${targets[$i]}"
  echo "== fuzz target $t (${limits[$i]})"
  cargo fuzz run "$t" "$corpus/$t" -- "${limits[$i]}" -max_len=4096 -print_final_stats=1 2>&1 | tee "$log"
  grep -q '^Done' "$log" || { echo "fuzz target $t printed no Done line" >&2; exit 1; }
done
