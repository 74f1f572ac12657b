"""The bind path in instructions (issue #35): PostgreSQL under callgrind,
one pgbench client running N and then 4N transactions, each on a backend of
its own, so that whatever a backend costs to start and stop cancels in the
difference: instructions per transaction = (I(4N) - I(N)) / 3N. Counted
instructions do not depend on what else the machine does, unlike the
wall-clock and CPU-time benchmarks of scripts/bench.py, which answer other
questions (throughput, pooled load) and stay as they are.

  python3 scripts/bench_instructions.py --out F    # full run for PG_MAJOR, its table into F
  python3 scripts/bench_instructions.py --smoke    # a few minutes; checks the harness runs
  python3 scripts/bench_instructions.py --publish F...   # README's table from those files

`make bench-instructions` (scripts/bench-instructions.sh) runs it on 15 and 18.

Rows (each `BEGIN; <bind>; SELECT ... 10 rows under the policy; COMMIT`):
theirs (PostgREST-style set_config of the claims), ours with the same token
every time (a cache hit), ours with a never-seen token every time (HS256,
RS256, ES256, EdDSA; the shared cache on and off), ours with a DPoP proof
(ES256 and EdDSA proof keys) for a cached access token; beside them the
primitive alone under the same callgrind (core/examples/signature.rs: the
signature check as the core calls it, on the same token bytes; for DPoP the
proof's check plus the SHA-256 of the access token), and the inclusive split
by function of the never-seen and DPoP rows.

Expects the release build of jwt_rls installed for PG_MAJOR.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import bench  # noqa: E402  (its schema, token tables, scripts and pgbench runner)
from support.dpop import ProofKey, wait_until_proofs_accepted  # noqa: E402
from support.pg import MAJOR  # noqa: E402
from support.pgcluster import PG_BIN, Cluster, as_postgres  # noqa: E402
from support.tokens import Signer  # noqa: E402

ALGS = ["HS256", "RS256", "ES256", "EdDSA"]
DPOP_ALGS = ["ES256", "EdDSA"]
# The target's constant (#35): instructions per transaction beyond 1.25 x
# the primitive that binding may add, and what a cache hit may add.
SLACK = 10_000
HIT_SLACK = 5_000
README_START, README_END = "<!-- bench-instructions:start -->", "<!-- bench-instructions:end -->"


def log(text):
    print(text, flush=True)


class CallgrindCluster(Cluster):
    """A cluster whose postmaster, and so every backend it forks, runs
    under callgrind; each process writes cg.<pid> when it exits. No
    autovacuum, so that the only backends are the benchmark's."""

    def __init__(self, conf):
        super().__init__(conf=conf + ["autovacuum = off", "huge_pages = off", "max_worker_processes = 8"])
        self.out = os.path.join(self.base, "callgrind")
        os.makedirs(self.out)
        wrapper = os.path.join(self.base, "postgres-under-callgrind")
        with open(wrapper, "w") as f:
            # LD_BIND_NOW: symbols are bound when a library loads, not at
            # their first call in each backend.
            f.write("#!/bin/sh\nLD_BIND_NOW=1 exec valgrind --tool=callgrind --quiet "
                    f"--callgrind-out-file={self.out}/cg.%p {PG_BIN}/postgres \"$@\"\n")
        os.chmod(wrapper, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.out, "postgres", "postgres")
        self.wrapper = wrapper

    def start(self):
        as_postgres([f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-p", self.wrapper,
                     "-w", "-t", "600", "start"])
        return self

    def files(self):
        return set(glob.glob(os.path.join(self.out, "cg.*")))


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"{path}: no totals")


def one_backend(cluster, script, defines, transactions, first):
    """The callgrind file of the backend of one pgbench client that ran
    `script` `transactions` times from row `first`. pgbench also opens a
    short connection of its own first: of the backends the run started,
    the one that counted most is the client's."""
    before = cluster.files()
    bench.pgbench(cluster, script, None, "prepared", {**defines, "first": first, "n": 0}, clients=1,
                  transactions=transactions)
    deadline = time.time() + 120
    seen, sizes = set(), {}
    while time.time() < deadline:
        time.sleep(0.5)
        new = cluster.files() - before
        now = {path: os.path.getsize(path) for path in new}
        if new and new == seen and now == sizes:  # callgrind writes at exit: settled
            return max(new, key=total_ir)
        seen, sizes = new, now
    raise RuntimeError("the backends' callgrind files did not appear")


def per_transaction(cluster, script, defines, n):
    """Instructions per transaction, N and 4N transactions on rows 1.. and
    N+1..; and the two files, for the split by function. A connection
    first, so that one-time work (the relcache init file rewritten after
    DDL) falls on none of the two."""
    with psycopg.connect(cluster.dsn(user="app")) as warm:
        warm.execute("SELECT count(*) FROM accounts_jwt")
    small = one_backend(cluster, script, defines, n, 1)
    large = one_backend(cluster, script, defines, 4 * n, n + 1)
    return (total_ir(large) - total_ir(small)) / (3 * n), (small, large)


LINE = re.compile(r"\s*([\d,]+)\s+\([^)]*\)\s+(?:[^\s:]*:)?(.+?)(?: \[([^\]]*)\])?$")


def self_costs(path):
    """Instructions by function, each its own (exclusive): callgrind's
    inclusive costs count a function again for every pgrx guard it
    re-enters through, so they overstate; a function's own instructions
    add up to the total. Keyed by (function, object file)."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    costs = {}
    listing = out.split("file:function", 1)[-1]
    obj = "?"
    for line in listing.splitlines():
        m = LINE.match(line)
        if m:
            # callgrind_annotate names the object only when it changes.
            obj = os.path.basename(m.group(3)) if m.group(3) else obj
            key = (m.group(2), obj)
            costs[key] = costs.get(key, 0) + int(m.group(1).replace(",", ""))
    return costs


def area(function, obj):
    """Where a function's instructions belong, for the split: in jwt_rls.so,
    C symbols (no Rust path) are aws-lc's, statically linked."""
    if obj.startswith("jwt_rls"):
        if "::" not in function and not function.startswith(("cee_scape", "pgrx", "jwt_rls_", "_PG")):
            return "aws-lc in jwt_rls.so (signature checks, SHA-256)"
        return "jwt_rls and its Rust crates (parsing, checks, caches, pgrx glue)"
    if obj.startswith("postgres"):
        return "PostgreSQL (executor, SPI, jsonb, GUC, memory)"
    return "libc and other libraries"


def split(files, n, top=12):
    """Per transaction: instructions by area, then the functions that
    cost the most themselves."""
    small, large = (self_costs(f) for f in files)
    per = {key: (large.get(key, 0) - small.get(key, 0)) / (3 * n) for key in set(large) | set(small)}
    areas = {}
    for (function, obj), cost in per.items():
        areas[area(function, obj)] = areas.get(area(function, obj), 0) + cost
    functions = sorted(((f"{fn} ({obj})", cost) for (fn, obj), cost in per.items()), key=lambda kv: -kv[1])
    return sorted(areas.items(), key=lambda kv: -kv[1]), functions[:top]


def primitive(alg, material_format, material, token, n, access=None):
    """Instructions of one signature check (and the access token's SHA-256
    with `access`) by the core's own call, under callgrind."""
    exe = os.path.join(ROOT, "target", "release", "examples", "signature")
    with tempfile.TemporaryDirectory() as d:
        paths = {}
        for name, text in [("material", material), ("token", token), ("access", access or "")]:
            paths[name] = os.path.join(d, name)
            with open(paths[name], "w") as f:
                f.write(text)
        counts = []
        for reps in (n, 4 * n):
            out = os.path.join(d, f"cg.{reps}")
            args = [exe, alg, material_format, paths["material"], paths["token"], str(reps)]
            if access:
                args += ["--ath", paths["access"]]
            subprocess.run(["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={out}", *args],
                           check=True, capture_output=True)
            counts.append(total_ir(out))
        return (counts[1] - counts[0]) / (3 * n)


def material_of(signer):
    if signer.public is None:
        import base64
        return "secret", base64.urlsafe_b64encode(signer.key).rstrip(b"=").decode()
    return "pem", signer.public


def measure(smoke):
    n = 10 if smoke else 40
    prim_n = 50 if smoke else 400
    rows, splits, prims = [], {}, {}
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "jwt_rls_core", "--example", "signature"],
                   cwd=ROOT, check=True)
    algs = ALGS[2:3] if smoke else ALGS
    caches = [("on", []), ("off", ["jwt_rls.shared_cache_entries = 0"])]
    for cache, extra in caches[:1] if smoke else caches:
        c = CallgrindCluster(bench.CONF + [bench.PRELOAD] + extra)
        with c:
            with psycopg.connect(c.dsn(), autocommit=True) as admin:
                admin.execute(bench.SCHEMA)
                for alg in algs:
                    signer = Signer(f"ir-{alg.lower()}", alg)
                    with admin.cursor() as cur:
                        signer.install(cur)
                    bench.fill_bench_tokens(admin, signer, 5 * n, seed=35)
                    admin.execute("ANALYZE bench_tokens")
                    fresh = bench.FRESH_ONE + bench.SCRIPTS["jwt"]
                    ours, files = per_transaction(c, fresh, {}, n)
                    theirs, _ = per_transaction(c, bench.FRESH_ONE + bench.SCRIPTS["pgrst"], {}, n)
                    token = admin.execute("SELECT token FROM bench_tokens WHERE id = 1").fetchone()[0]
                    same = "\\set id 1\nSELECT token, claims FROM bench_tokens WHERE id = :id \\gset\n" + \
                        bench.SCRIPTS["jwt"]
                    hit, _ = per_transaction(c, same, {}, n)
                    if alg not in prims:
                        fmt, material = material_of(signer)
                        prims[alg] = primitive(alg, fmt, material, token, prim_n)
                    rows.append({"row": f"never-seen {alg}, shared cache {cache}", "kind": "fresh", "alg": alg,
                                 "cache": cache, "ours": ours, "theirs": theirs, "hit": hit,
                                 "primitive": prims[alg]})
                    if alg in ("HS256", "ES256") and (cache == "off" or smoke):
                        splits[f"never-seen {alg}, shared cache {cache}"] = split(files, n)
                    log(f"  {rows[-1]['row']}: ours {ours:,.0f}, theirs {theirs:,.0f}, same token {hit:,.0f}, "
                        f"primitive {prims[alg]:,.0f} instructions per transaction")
                if cache == "on":
                    rows += dpop_rows(c, admin, n, prim_n, prims, splits, smoke)
    return rows, splits


def dpop_rows(c, admin, n, prim_n, prims, splits, smoke):
    """A cached access token bound with a new proof per transaction, beside
    the same token without cnf bound with no proof."""
    admin.execute("ALTER SYSTEM SET jwt_rls.dpop_max_age = 3600")
    admin.execute("ALTER SYSTEM SET jwt_rls.dpop_proofs_per_key = 100000")
    admin.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)
    wait_until_proofs_accepted(c.dsn())
    admin.execute("CREATE TABLE IF NOT EXISTS bench_proofs (id int PRIMARY KEY, proof text NOT NULL)")
    admin.execute("GRANT SELECT ON bench_proofs TO app")
    signer = Signer("ir-dpop-access", "ES256")
    with admin.cursor() as cur:
        signer.install(cur)
    rows = []
    for alg in DPOP_ALGS[:1] if smoke else DPOP_ALGS:
        key = ProofKey(alg)
        plain = signer.token("t7", sub="client-1", ttl=7200, scope=bench.DPOP_SCOPE)
        bound = signer.token("t7", sub="client-1", ttl=7200, scope=bench.DPOP_SCOPE, cnf={"jkt": key.jkt})
        bench.fill_bench_proofs(admin, key, bound, 5 * n)
        with psycopg.connect(c.dsn(user="app"), autocommit=True) as app:  # both tokens cached server-wide
            app.execute("SELECT jwt_rls.authenticate(%s)", (plain,))
        proven, files = per_transaction(c, bench.DPOP_ONE + bench.DPOP_PROVEN, {"token": bound, "url": bench.DPOP_URL}, n)
        # The proofs were used up: new ones for the baseline's rows are not
        # needed (it reads them and binds no proof).
        base, _ = per_transaction(c, bench.DPOP_ONE + bench.SCRIPTS["jwt"], {"token": plain}, n)
        proof = admin.execute("SELECT proof FROM bench_proofs WHERE id = 1").fetchone()[0]
        jwk = key.public_jwk
        import json
        p = primitive(alg, "jwk", json.dumps(jwk), proof, prim_n, access=bound)
        rows.append({"row": f"DPoP proof {alg}, cached access token", "kind": "dpop", "alg": alg,
                     "ours": proven, "theirs": base, "primitive": p})
        if alg == "ES256":
            splits["DPoP proof ES256"] = split(files, n)
        log(f"  {rows[-1]['row']}: ours {proven:,.0f}, same token without proof {base:,.0f}, "
            f"primitive {p:,.0f} instructions per transaction")
    return rows


def verdict(ok):
    return "met" if ok else "**not met**"


def table(rows, splits):
    lines = [f"Instructions per transaction, counted by callgrind (`make bench-instructions`, PostgreSQL "
             f"{MAJOR}, one backend, N and 4N transactions by difference); primitive: the same check by "
             "the core's own call under the same callgrind.", "",
             "| row | ours | beside (same run) | ours − beside | primitive | target | |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        added = r["ours"] - r["theirs"]
        if r["kind"] == "fresh":
            bound = 1.25 * r["primitive"] + SLACK
            lines.append(f"| {r['row']} | {r['ours']:,.0f} | {r['theirs']:,.0f} (PostgREST-style) | {added:,.0f} | "
                         f"{r['primitive']:,.0f} | ≤ {bound:,.0f} | {verdict(added <= bound)} |")
    for r in rows:
        if r["kind"] == "fresh" and r["cache"] == "on":
            added = r["hit"] - r["theirs"]
            lines.append(f"| same token ({r['alg']} cached) | {r['hit']:,.0f} | {r['theirs']:,.0f} (PostgREST-style) "
                         f"| {added:,.0f} | | ≤ {HIT_SLACK:,} | {verdict(added <= HIT_SLACK)} |")
    for r in rows:
        if r["kind"] == "dpop":
            added = r["ours"] - r["theirs"]
            bound = 1.25 * r["primitive"] + SLACK
            lines.append(f"| {r['row']} | {r['ours']:,.0f} | {r['theirs']:,.0f} (same token, no proof) | "
                         f"{added:,.0f} | {r['primitive']:,.0f} | ≤ {bound:,.0f} | {verdict(added <= bound)} |")
    for name, (areas, top) in splits.items():
        lines += ["", f"Where the instructions of \"{name}\" go, per transaction (each function's own):", "",
                  "| where | instructions |", "|---|---|"]
        lines += [f"| {where} | {cost:,.0f} |" for where, cost in areas if cost >= 500]
        lines += ["", "| function (object) | instructions |", "|---|---|"]
        lines += [f"| `{fn[:100]}` | {cost:,.0f} |" for fn, cost in top]
    return "\n".join(lines)


def publish(text):
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        readme = f.read()
    if README_START not in readme:
        raise SystemExit(f"README.md has no {README_START} marker")
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    with open(path, "w") as f:
        f.write(head + README_START + "\n" + text + "\n" + README_END + tail)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="small counts, one algorithm")
    parser.add_argument("--out", metavar="FILE", help="write this major's table to FILE")
    parser.add_argument("--publish", nargs="+", metavar="FILE", help="measure nothing: README's table from FILEs")
    args = parser.parse_args()
    if args.publish:
        texts = []
        for path in args.publish:
            with open(path) as f:
                texts.append(f.read().strip())
        publish("\n\n".join(texts))
        log("README.md updated")
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("bench_instructions: valgrind is missing (apt-get install valgrind)")
    log(f"== the bind path in instructions: PostgreSQL {MAJOR} under callgrind")
    rows, splits = measure(args.smoke)
    text = table(rows, splits)
    log("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
