"""jwt_rls benchmarks: every figure is a ratio measured side by side in one
run on this machine, since absolute times on a shared 2-core machine drift.

  python3 scripts/bench.py            # full run, rewrites the README table
  python3 scripts/bench.py --smoke    # seconds; checks the benchmarks run
  python3 scripts/bench.py --only pooled sql   # some workloads; prints, README untouched

Expects the extension installed (scripts/bench.sh builds it in release mode).
"""

import argparse
import datetime
import glob
import json
import math
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from support import b64url_decode  # noqa: E402
from support.dpop import ProofKey, wait_until_proofs_accepted  # noqa: E402
from support.pgbouncer import PgBouncer  # noqa: E402
from support.pg import MAJOR as PG_MAJOR  # noqa: E402
from support.pgcluster import PG_BIN, Cluster  # noqa: E402
from support.tokens import AUDIENCE, ISSUER, Signer  # noqa: E402

ALGS = ["HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "ES384", "EdDSA"]
OPENSSL = {"RS256": ("rsa2048", "F2"), "PS256": ("rsa2048", "F2"), "ES256": ("ecdsap256", "F4"),
           "ES384": ("ecdsap384", "F4"), "EdDSA": ("ed25519", "F6")}
# Every scratch cluster's settings; PRELOAD adds jwt_rls to shared_preload_libraries.
CONF = ["shared_buffers = 256MB", "synchronous_commit = off", "max_connections = 50"]
PRELOAD = "shared_preload_libraries = 'jwt_rls'"
results = {}


def log(text):
    print(text, flush=True)


# --- core: criterion beside openssl speed ------------------------------------

def openssl_public_key_us(seconds, primitives=("rsa2048", "ecdsap256", "ecdsap384", "ed25519")):
    """Microseconds per sign and per verify of each primitive, from one
    `openssl speed -mr` run: ({name: sign µs}, {name: verify µs})."""
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "-mr", *primitives],
                         capture_output=True, text=True).stdout
    sign, verify = {}, {}
    for line in out.splitlines():
        f = line.split(":")
        # +F2/+F4: index, bits, signs/s, verifies/s; +F6: index, bits, name, signs/s, verifies/s
        if f[0] == "+F2" and f[2] == "2048":
            name, rates = "rsa2048", f[3:5]
        elif f[0] == "+F4":
            name, rates = ("ecdsap256" if f[2] == "256" else "ecdsap384"), f[3:5]
        elif f[0] == "+F6" and f[3] == "Ed25519":
            name, rates = "ed25519", f[4:6]
        else:
            continue
        sign[name], verify[name] = 1e6 / float(rates[0]), 1e6 / float(rates[1])
    return sign, verify


def openssl_verify_us(seconds):
    """Microseconds per verify of each primitive, HMAC on 256 bytes included."""
    per_s = {name: 1e6 / us for name, us in openssl_public_key_us(seconds)[1].items()}
    for bits in ["256", "384", "512"]:
        hmac = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "-mr", "-hmac", "sha" + bits],
                              capture_output=True, text=True).stdout
        for line in hmac.splitlines():
            if line.startswith("+F:") and "hmac" in line:
                # bytes per second on 256-byte inputs, about a token's size
                per_s["hmac" + bits] = float(line.split(":")[5]) / 256
    return {k: 1e6 / v for k, v in per_s.items()}


def openssl_sha256_us(seconds, size):
    """Microseconds per SHA-256 of `size` bytes, from openssl speed."""
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "-mr", "-bytes", str(size), "sha256"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("+F:") and ":sha256:" in line:  # +F:index:sha256:bytes per second
            return size / float(line.split(":")[3]) * 1e6
    raise RuntimeError(f"openssl speed sha256 gave no figure: {out[-400:]}")


def criterion_us(smoke, only=None):
    """Median µs of each criterion bench run (`only`: a regex of the benches
    to run, default all), by its name ("verify/HS256" as "verify_HS256")."""
    args = ["cargo", "bench", "-p", "jwt_rls_core", "--bench", "verify", "--"]
    args += ["--warm-up-time", "0.1", "--measurement-time", "0.2"] if smoke else \
            ["--warm-up-time", "1", "--measurement-time", "3"]
    subprocess.run(args + ([only] if only else []), cwd=ROOT, check=True, capture_output=True)
    found = {}
    for path in glob.glob(os.path.join(ROOT, "target", "criterion", "*", "new", "estimates.json")):
        name = path.split(os.sep)[-3]  # criterion writes "verify/HS256" as "verify_HS256"
        with open(path) as f:
            found[name] = json.load(f)["median"]["point_estimate"] / 1000
    return found


def cold_signature_us(smoke, algs):
    """The signature check alone with the CPU caches cold (criterion's
    `signature_cold/ALG`: a buffer larger than the caches written before
    each check, outside the timing), for each of `algs`. A server meets a
    never-seen token's signature this way: between two transactions the
    client, the network stack and other processes ran and evicted what the
    last check left in the caches, while openssl speed checks in a hot loop."""
    found = criterion_us(smoke, "signature_cold/(" + "|".join(algs) + ")$")
    return {alg: found[f"signature_cold_{alg}"] for alg in algs}


def bench_core(smoke):
    log("== core: criterion, beside openssl speed in the same run")
    ours = criterion_us(smoke)
    ssl = openssl_verify_us(1 if smoke else 3)
    rows = []
    for alg in ALGS:
        v, sig = ours[f"verify_{alg}"], ours[f"signature_{alg}"]
        if alg in OPENSSL:
            ref = ssl[OPENSSL[alg][0]]
            rows.append((alg, v, sig, f"openssl {OPENSSL[alg][0]} verify {ref:.1f} µs", v / ref, v / ref <= 1.25))
        else:
            ref = ssl["hmac" + alg[2:]]
            rows.append((alg, v, sig, f"openssl hmac(sha{alg[2:]}) 256 B {ref:.2f} µs", v / ref,
                         v <= 2.0 if alg == "HS256" else None))
    hit = ours["cache_hit_RS256"]
    for r in rows:
        cold = ours.get(f"signature_cold_{r[0]}")
        cold = f"  cold caches {cold:8.2f} µs" if cold else ""
        log(f"  {r[0]:6} verify {r[1]:8.2f} µs  signature alone {r[2]:8.2f} µs{cold}  {r[3]:40} ratio {r[4]:5.2f}")
    log(f"  cache hit (look-up, time claims, key state): {hit:.3f} µs")
    results["core"] = rows
    results["cache_hit_us"] = hit
    signs = openssl_public_key_us(1 if smoke else 3)[0]
    results["sign"] = []
    for alg in ["HS256", "RS256", "PS256", "ES256", "ES384", "EdDSA"]:
        v = ours[f"sign_{alg}"]
        ref = signs.get(OPENSSL[alg][0]) if alg in OPENSSL else None
        label = f"openssl {OPENSSL[alg][0]} sign {ref:.1f} µs" if ref else "(HMAC: no sign reference)"
        log(f"  {alg:6} sign   {v:8.2f} µs  {label:40} ratio {v / ref if ref else float('nan'):5.2f}")
        results["sign"].append((alg, v, label, v / ref if ref else None))
    bench_jwe(ours, smoke)


def openssl_ecdh_us(seconds):
    """Microseconds per ECDH key agreement on P-256 and P-384."""
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "-mr", "ecdhp256", "ecdhp384"],
                         capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        f = line.split(":")
        if f[0] == "+F5":  # index, bits, ops/s, s/op
            found[f"ecdhp{f[2]}"] = 1e6 / float(f[3])
    return found


# Each JWE case of the core bench: (kid, alg, enc, the primitive it rests on).
JWE = [("rsa-oaep-1", "RSA-OAEP-256", "A256GCM", "rsa2048"),
       ("ecdh-p256", "ECDH-ES", "A256GCM", "ecdhp256"),
       ("ecdh-p384", "ECDH-ES", "A256GCM", "ecdhp384"),
       ("ecdhkw-p256", "ECDH-ES+A256KW", "A256GCM", "ecdhp256"),
       ("a256kw-1", "A256KW", "A256GCM", None),
       ("dir-gcm", "dir", "A256GCM", None),
       ("dir-cbc", "dir", "A128CBC-HS256", None)]


def bench_jwe(ours, smoke):
    """Decrypt + verify of a nested token (inner HS256) per key management
    algorithm, beside the primitive's own time from openssl speed in the
    same run (RSA: the private-key operation, which OAEP decryption is) plus
    the inner token's own verification."""
    log("== JWE: decrypt + verify (inner HS256), criterion beside openssl speed")
    seconds = 1 if smoke else 3
    prim = {**openssl_ecdh_us(seconds), "rsa2048": openssl_public_key_us(seconds)[0]["rsa2048"]}
    inner = ours["verify_HS256"]
    rows = []
    for kid, alg, enc, primitive in JWE:
        name = next((k for k in ours if k.startswith("jwe_") and k.endswith(f"{kid}_{alg}_{enc}")), None)
        if name is None:
            continue
        us = ours[name]
        ref = prim[primitive] + inner if primitive else None
        label = f"openssl {primitive} {prim[primitive]:.1f} µs + inner verify {inner:.2f} µs" if primitive \
            else f"symmetric only (inner verify {inner:.2f} µs)"
        log(f"  {alg:15} {enc:14} {us:8.2f} µs  {label:50} ratio {us / ref if ref else float('nan'):5.2f}")
        shown = f"{alg} ({primitive[4:].upper()})" if primitive and primitive.startswith("ecdh") else alg
        rows.append((shown, enc, us, label, us / ref if ref else None))
    results["jwe"] = rows


# --- SQL: pgbench pairs on a scratch cluster ----------------------------------

TENANTS = 1000
PER_TENANT = 10

SCHEMA = f"""
CREATE EXTENSION IF NOT EXISTS jwt_rls;
ALTER DATABASE postgres SET jwt_rls.issuer = '{ISSUER}';
ALTER DATABASE postgres SET jwt_rls.audience = '{AUDIENCE}';
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA jwt_rls TO app;
CREATE TABLE accounts_jwt (id int PRIMARY KEY, tenant_id text NOT NULL, amount int NOT NULL);
CREATE TABLE accounts_pgrst (LIKE accounts_jwt INCLUDING ALL);
INSERT INTO accounts_jwt SELECT g, 't' || (g % {TENANTS}), g FROM generate_series(1, {TENANTS * PER_TENANT}) g;
INSERT INTO accounts_pgrst SELECT * FROM accounts_jwt;
CREATE INDEX ON accounts_jwt (tenant_id);
CREATE INDEX ON accounts_pgrst (tenant_id);
ALTER TABLE accounts_jwt ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts_pgrst ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON accounts_jwt USING (tenant_id = (SELECT jwt_rls.jwt_claim('tenant_id')));
CREATE POLICY p ON accounts_pgrst USING (tenant_id = current_setting('request.jwt.claims', true)::jsonb ->> 'tenant_id');
GRANT SELECT ON accounts_jwt, accounts_pgrst TO app;
CREATE TABLE bench_tokens (id int PRIMARY KEY, token text NOT NULL, claims text NOT NULL);
GRANT SELECT ON bench_tokens TO app;
ANALYZE;
"""

def claims_of(token):
    """What PostgREST puts in request.jwt.claims for `token`: all of its
    claims (the payload), so that the PostgREST-style side binds as much
    as ours."""
    return b64url_decode(token.split(".")[1]).decode()


SCRIPTS = {
    "jwt": "BEGIN;\nSELECT jwt_rls.authenticate(:token);\nSELECT id, amount FROM accounts_jwt;\nCOMMIT;\n",
    "pgrst": "BEGIN;\nSELECT set_config('request.jwt.claims', :claims, true);\n"
             "SELECT id, amount FROM accounts_pgrst;\nCOMMIT;\n",
    "jwt_set": "BEGIN;\nSET LOCAL jwt_rls.token = ':token';\nSELECT id, amount FROM accounts_jwt;\nCOMMIT;\n",
    "pgrst_set": "BEGIN;\nSET LOCAL request.jwt.claims = ':claims';\nSELECT id, amount FROM accounts_pgrst;\nCOMMIT;\n",
}
# Each client walks its own half of the tokens in order, wrapping around:
# a token comes back to a backend only after n/2 others, long after the
# per-backend cache (1000 entries by default) has evicted it, so every
# transaction binds a token its backend has not seen, with default settings.
FRESH = ("\\set id 1 + (:client_id * {half} + :n) % {n}\n\\set n :n + 1\n"
         "SELECT token, claims FROM bench_tokens WHERE id = :id \\gset\n")


def pgbench(cluster, script, seconds, mode, defines, clients=2, port=None, transactions=None):
    """TPS of `script` over `seconds` (or, given `transactions` per client,
    the number processed). `port`: a pooler's in front of the cluster."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    length = ["-t", str(transactions)] if transactions else ["-T", str(seconds)]
    args = [f"{PG_BIN}/pgbench", "-n", "-h", "127.0.0.1", "-p", str(port or cluster.port), "-U", "app",
            "-c", str(clients), "-j", str(min(clients, 2)), *length, "-M", mode, "-f", f.name, "postgres"]
    for k, v in defines.items():
        args += ["-D", f"{k}={v}"]
    out = subprocess.run(args, capture_output=True, text=True)
    os.unlink(f.name)
    m = re.search(r"number of transactions actually processed: (\d+)", out.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    if not m or (failed and int(failed.group(1))) or out.returncode:
        raise RuntimeError(f"pgbench failed: {out.stdout[-800:]} {out.stderr[-800:]}")
    return int(m.group(1)) if transactions else int(m.group(1)) / seconds


def process_cpu_s(pid, children_too=False, split=False):
    """CPU seconds a process has used (user + system, or with split the
    pair (user, system)), from /proc; with children_too, also what its
    exited children used (once reaped)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # fields[0] is field 3 of proc(5), the state
    ticks = [int(x) for x in fields[11:15]]  # utime, stime, cutime, cstime
    user, system = ticks[0] + (ticks[2] if children_too else 0), ticks[1] + (ticks[3] if children_too else 0)
    hz = os.sysconf("SC_CLK_TCK")
    return (user / hz, system / hz) if split else (user + system) / hz


def postmaster_pid(cluster):
    with open(os.path.join(cluster.data, "postmaster.pid")) as f:
        return int(f.readline())


def children_of(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return f.read().split()


def settle(cluster, children, timeout=10):
    """Waits until the postmaster has no more children than `children`:
    the backends of a pgbench run that just returned have exited and been
    reaped, so that their CPU time is in the postmaster's children's times.
    Read while a backend is being reaped, it would be in neither the
    postmaster's figures nor the list of its children, and the whole CPU
    time of that backend's run would be lost (it happened to one run in
    six: a never-seen ES256 token then seemed to add less than its
    signature check costs)."""
    deadline = time.time() + timeout
    while len(children_of(postmaster_pid(cluster))) > children and time.time() < deadline:
        time.sleep(0.01)


def cluster_cpu_s(cluster, split=False):
    """CPU seconds used by every process of the cluster so far (or with
    split, the pair (user, system)): the postmaster, its live children
    (backends, PgBouncer's server connections) and, through the
    postmaster's reaped-children times, those that exited (pgbench's
    backends; call `settle` first). A zombie still shows its own times
    until reaped."""
    pid = postmaster_pid(cluster)
    user, system = process_cpu_s(pid, children_too=True, split=True)
    for child in children_of(pid):
        try:
            u, s_ = process_cpu_s(int(child), split=True)
            user, system = user + u, system + s_
        except (FileNotFoundError, ProcessLookupError):
            pass  # exited since the list; settle() makes this rare
    return (user, system) if split else user + system


def pgbench_cpu(cluster, script, seconds, mode, defines, pooler_pid=None, others=(), **kw):
    """pgbench() and the CPU time it cost per transaction, in µs: the
    server's, pgbench's own and the pooler's, if any. CPU time, unlike
    2 / TPS, does not count time the developer's compiler took from us.
    `others`: more clusters the server's work runs on (a Citus cluster's
    workers, whose connections end with the coordinator's backends)."""
    servers = [cluster, *others]
    children = [len(children_of(postmaster_pid(c))) for c in servers]

    def cpu():
        own = resource.getrusage(resource.RUSAGE_CHILDREN)  # pgbench, once waited for
        server = sum(cluster_cpu_s(c) for c in servers) + (process_cpu_s(pooler_pid) if pooler_pid else 0)
        return server, own.ru_utime + own.ru_stime
    server0, client0 = cpu()
    tps = pgbench(cluster, script, seconds, mode, defines, **kw)
    if pooler_pid is None:
        # pgbench's own connections end with it; a pooler's stay open.
        for c, k in zip(servers, children):
            settle(c, k)
    server1, client1 = cpu()
    n = tps * seconds
    return tps, {"server": (server1 - server0) / n * 1e6, "client": (client1 - client0) / n * 1e6}


def turns(rounds):
    """The order of the two sides in each round: ours first, then theirs
    first, and so on (ABBA), so that whatever the first run after a switch
    pays (a cold pooler, the warm-up's tail) falls on both sides alike."""
    return [(True, False) if r % 2 == 0 else (False, True) for r in range(rounds)]


class Paired:
    """Rounds of ours beside theirs, each round one run of each (see
    `turns`). The ratio and the CPU time added are medians of the rounds'
    own figures: the two runs of a round are seconds apart, so the drift of
    a shared machine over minutes cancels within each round, and one
    disturbed run moves a median little where it would move a mean."""

    def __init__(self):
        self.ours, self.theirs = [], []  # (tps, CPU µs per transaction) per round

    def add(self, is_ours, tps, cpu):
        (self.ours if is_ours else self.theirs).append((tps, cpu["server"] + cpu["client"]))

    @property
    def tps(self):
        return statistics.mean(t for t, _ in self.ours), statistics.mean(t for t, _ in self.theirs)

    @property
    def cpu(self):
        return statistics.median(c for _, c in self.ours), statistics.median(c for _, c in self.theirs)

    def ratios(self):
        """Each round's TPS ratio, ours over theirs."""
        return [a / b for (a, _), (b, _) in zip(self.ours, self.theirs)]

    @property
    def ratio(self):
        return statistics.median(self.ratios())

    @property
    def ratio_range(self):
        """The lowest and highest of the rounds' ratios: how far one round
        can be from the median on this machine."""
        return min(self.ratios()), max(self.ratios())

    @property
    def cpu_added(self):
        return statistics.median(a - b for (_, a), (_, b) in zip(self.ours, self.theirs))

    def line(self, ours="jwt_rls", theirs="PostgREST-style"):
        (a, b), (cpu_a, cpu_b) = self.tps, self.cpu
        lo, hi = self.ratio_range
        return (f"{ours} {a:8.0f} tps   {theirs} {b:8.0f} tps   ratio {self.ratio:5.2f} (rounds {lo:.2f}-{hi:.2f})   "
                f"CPU/transaction {cpu_a:6.1f} vs {cpu_b:6.1f} µs (added {self.cpu_added:+6.1f})")


COLD_TEXT = ("Cold caches: criterion's `signature_cold/ALG`, the signature check alone with a buffer larger "
             "than the CPU caches written before each check (outside the timing), as a server meets a new "
             "token's signature between two transactions (the client, the network stack and other processes ran "
             "meanwhile); `openssl speed` checks in a hot loop. The last column is the target's bound against it.")
FRESH_TEXT = ("Never-seen token: one pgbench client binds a token the server has never seen in every "
              "transaction (`BEGIN; SELECT jwt_rls.authenticate(token); 10-row RLS select; COMMIT`) beside the "
              "PostgREST-style `set_config` of the same token's claims; server CPU is that of every process of the "
              "cluster, user and system, per transaction, the median of 4 rounds' differences. "
              "One bind in one statement: the same never-seen tokens bound by one SELECT (no pgbench, no "
              "network), minus set_config of their claims. " + COLD_TEXT)
PAIRED_TEXT = ("Ours and the PostgREST-style side run in turns, ours first in one round and second in the "
               "next; ratios and CPU figures are medians over the rounds, TPS columns means.")


def in_turns(cluster, ours, theirs, seconds, rounds, mode, defines, others=()):
    """Runs the two scripts in turns (see `turns`), `rounds` times each."""
    paired = Paired()
    for order in turns(rounds):
        for is_ours in order:
            tps, cpu = pgbench_cpu(cluster, ours if is_ours else theirs, seconds, mode, defines, others=others)
            paired.add(is_ours, tps, cpu)
    return paired


def pair(cluster, name, ours, theirs, seconds, rounds, mode, defines):
    """`in_turns`, logged and kept for the README's TPS table."""
    paired = in_turns(cluster, ours, theirs, seconds, rounds, mode, defines)
    log(f"  {name:34} {paired.line()}")
    a, b = paired.tps
    results.setdefault("tps", []).append((name, a, b, paired.ratio))
    return paired


def bench_sql(cluster, smoke):
    log("== SQL: pgbench pairs (2 clients; BEGIN; bind; 10-row RLS select; COMMIT)")
    seconds, rounds = (1, 1) if smoke else (4, 4)
    signers = {alg: Signer(f"bench-{alg.lower()}", alg) for alg in ["HS256", "RS256", "ES256"]}
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        with admin.cursor() as cur:
            for s in signers.values():
                s.install(cur)
        n_fresh = 200 if smoke else 20000
        for alg, s in signers.items():
            tenant = "t7"
            token = s.token(tenant, ttl=7200)
            hit = {"token": token, "claims": claims_of(token)}
            pair(cluster, f"{alg} authenticate, same token", SCRIPTS["jwt"], SCRIPTS["pgrst"], seconds, rounds,
                 "prepared", hit)
            pair(cluster, f"{alg} SET LOCAL, same token", SCRIPTS["jwt_set"], SCRIPTS["pgrst_set"], seconds,
                 rounds, "simple", hit)
            fill_bench_tokens(admin, s, n_fresh, seed=7)
            # A never-seen token in every transaction, default settings, as
            # TPS beside the PostgREST-style side. What it costs in CPU is
            # measured by the `fresh` workload, one client at a time.
            fresh = FRESH.format(n=n_fresh, half=n_fresh // 2)
            pair(cluster, f"{alg} authenticate, fresh token", fresh + SCRIPTS["jwt"], fresh + SCRIPTS["pgrst"],
                 seconds, rounds, "prepared", {"n": 0})
            pair(cluster, f"{alg} SET LOCAL, fresh token", fresh + SCRIPTS["jwt_set"], fresh + SCRIPTS["pgrst_set"],
                 seconds, rounds, "simple", {"n": 0})


def fill_bench_tokens(admin, signer, n, seed, tenants=TENANTS):
    """bench_tokens holds rows 1..n: a token of `signer` each, for user-i of
    a tenant drawn at random (seeded), with its claims as PostgREST would
    set them."""
    admin.execute("TRUNCATE bench_tokens")
    rng = random.Random(seed)
    rows = []
    for i in range(1, n + 1):
        token = signer.token(f"t{rng.randrange(tenants)}", sub=f"user-{i}", ttl=7200)
        rows.append((i, token, claims_of(token)))
    with admin.cursor() as cur:
        cur.executemany("INSERT INTO bench_tokens VALUES (%s, %s, %s)", rows)


def bind_cost(cluster, first_id):
    """Server-side µs per bind, without pgbench or the network: one
    statement, as app with default settings, binds every token of
    bench_tokens from first_id on in turn (each never seen by this
    backend, nor by the server), against the PostgREST-style set_config
    of the same rows' claims."""
    def per_row(sql):
        with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as conn:
            n = conn.execute("SELECT count(*) FROM bench_tokens WHERE id >= %s", (first_id,)).fetchone()[0]
            conn.execute("SELECT jwt_rls.jwt_claims()")  # load the library outside the measurement
            with conn.transaction():
                t0 = time.perf_counter()
                conn.execute(sql, (first_id,))
                return (time.perf_counter() - t0) / n * 1e6
    ours = per_row("SELECT count(*) FROM (SELECT jwt_rls.authenticate(token) FROM bench_tokens WHERE id >= %s) x")
    theirs = per_row("SELECT count(*) FROM (SELECT set_config('request.jwt.claims', claims, true) "
                     "FROM bench_tokens WHERE id >= %s) x")
    return ours, theirs


# --- a never-seen token per transaction: server CPU ---------------------------

FRESH_ALGS = {"HS256": "hmac256", "RS256": "rsa2048", "ES256": "ecdsap256", "EdDSA": "ed25519"}
# In transaction n, row first + n of the table a script walks (server_cpu_run).
ROW_EACH = "\\set id :first + :n\n\\set n :n + 1\n"
# One client, so that the server's CPU time per transaction is that of one
# backend's work and nothing else's; the token in transaction n is row
# first + n of bench_tokens, never seen by this server before.
FRESH_ONE = ROW_EACH + "SELECT token, claims FROM bench_tokens WHERE id = :id \\gset\n"


def bench_fresh(smoke):
    """What a never-seen token adds to a transaction, as server CPU time
    (every process of the cluster, user and system, see `ServerCpu`), beside the
    same token bound in one statement (no pgbench, no network) and the
    signature primitive from openssl speed, all in this run. jwt_rls
    preloaded, the shared cache on (default) and off
    (shared_cache_entries = 0). Rounds in turns (ABBA); the added CPU is
    the median of the rounds' differences."""
    transactions, rounds = (200, 1) if smoke else (3000, 4)
    log(f"== never-seen token per transaction: server CPU, 1 client, {transactions} transactions per run, "
        f"{rounds} rounds; target ≤ 1.25 × primitive + 10 µs")
    prim = openssl_verify_us(1 if smoke else 2)
    cold = cold_signature_us(smoke, list(FRESH_ALGS))
    rows = []
    for cache, extra in [("on", []), ("off", ["jwt_rls.shared_cache_entries = 0"])]:
        with Cluster(conf=CONF + [PRELOAD] + extra) as c:
            meter = ServerCpu(c)
            if cache == "on":
                log(f"  server CPU from {meter.kind}")
            results["fresh_meter"] = meter.kind
            with psycopg.connect(c.dsn(), autocommit=True) as admin:
                admin.execute(SCHEMA)
                for alg, primitive in FRESH_ALGS.items():
                    signer = Signer(f"fresh-{alg.lower()}", alg)
                    with admin.cursor() as cur:
                        signer.install(cur)
                    # rounds × transactions for pgbench (only ours caches), and
                    # as many again, at most 2,000, for the one-statement bind.
                    fill_bench_tokens(admin, signer, rounds * transactions + min(transactions, 2000), seed=11)
                    admin.execute("ANALYZE bench_tokens")
                    cpu = server_cpu_rounds(c, meter, (FRESH_ONE + SCRIPTS["jwt"], {}),
                                            (FRESH_ONE + SCRIPTS["pgrst"], {}), transactions, rounds)
                    bind_us, set_us = bind_cost(c, rounds * transactions + 1)
                    p = prim[primitive]
                    row = {"alg": alg, "cache": cache, **cpu,
                           "in_statement": bind_us - set_us, "primitive": p, "bound": 1.25 * p + 10,
                           "cold": cold[alg], "bound_cold": 1.25 * cold[alg] + 10}
                    rows.append(row)
                    log(f"  {alg:5} shared cache {cache:3}: server CPU/transaction {row['ours']:6.1f} vs "
                        f"{row['theirs']:6.1f} µs, added {row['added']:6.1f} (user {row['added_user']:6.1f}); "
                        f"in one statement {row['in_statement']:6.1f}; primitive {p:6.1f}; "
                        f"bound {row['bound']:6.1f}: {'met' if row['added'] <= row['bound'] else 'NOT MET'}; "
                        f"cold signature {row['cold']:6.1f}, 1.25 × cold + 10 = {row['bound_cold']:6.1f}: "
                        f"{'met' if row['added'] <= row['bound_cold'] else 'NOT MET'}")
        meter.remove()  # the cluster has stopped: the cgroup is empty
    results["fresh"] = rows


class ServerCpu:
    """CPU time of every process of a cluster, to the nanosecond where a
    cgroup can hold them (the scheduler's own runtime of each task, exited
    ones included), else from /proc in clock ticks. /proc's user and
    system times are charged a whole tick at a time to whatever runs when
    the tick comes: over a run of a few seconds that is several µs per
    transaction either way, as much as the bound the never-seen rows are
    checked against, so the cgroup is used where it can be (as root, with
    cgroup v1's cpuacct or cgroup v2 mounted)."""

    def __init__(self, cluster):
        self.cluster, self.path, self.kind = cluster, None, "/proc (clock ticks)"
        name = f"jwt_rls_bench_{cluster.port}"
        for root, kind in [("/sys/fs/cgroup/cpuacct", "v1"), ("/sys/fs/cgroup/unified", "v2"),
                           ("/sys/fs/cgroup", "v2")]:
            try:
                if kind == "v2" and not os.path.exists(os.path.join(root, "cgroup.procs")):
                    continue
                path = os.path.join(root, name)
                os.makedirs(path, exist_ok=True)
                pm = postmaster_pid(cluster)
                for pid in [pm] + children_of(pm):
                    with open(os.path.join(path, "cgroup.procs"), "w") as f:
                        f.write(str(pid))
                self.path, self.kind = path, f"cgroup {kind}"
                self.v2 = kind == "v2"
                self.read()
                return
            except OSError:
                continue

    def read(self):
        """(user, system) seconds so far. With cgroup v1 the sum is the
        scheduler's to the nanosecond but the split between the two is
        charged by ticks, like /proc's: user alone is approximate."""
        if self.path is None:
            return cluster_cpu_s(self.cluster, split=True)
        if self.v2:
            with open(os.path.join(self.path, "cpu.stat")) as f:
                stat = dict(line.split() for line in f)
            return int(stat["user_usec"]) / 1e6, int(stat["system_usec"]) / 1e6
        with open(os.path.join(self.path, "cpuacct.usage")) as f:
            total = int(f.read()) / 1e9
        with open(os.path.join(self.path, "cpuacct.usage_user")) as f:
            user = int(f.read()) / 1e9
        return user, total - user

    def remove(self):
        """Removes the cgroup once the cluster has stopped."""
        if self.path:
            try:
                os.rmdir(self.path)
            except OSError:
                pass


def server_cpu_run(cluster, meter, script, transactions, first, defines):
    """Server CPU µs per transaction (user, system) of one pgbench client
    running `script` `transactions` times from row `first` (`:first`) of
    the table it walks, `defines` its other variables."""
    children = len(children_of(postmaster_pid(cluster)))
    u0, s0 = meter.read()
    done = pgbench(cluster, script, None, "prepared", {**defines, "first": first, "n": 0}, clients=1,
                   transactions=transactions)
    settle(cluster, children)
    u1, s1 = meter.read()
    return (u1 - u0) / done * 1e6, (s1 - s0) / done * 1e6


def server_cpu_rounds(cluster, meter, ours, theirs, transactions, rounds):
    """`server_cpu_run` of ours and theirs, each a (script, defines) pair,
    in turns (see `turns`): round r walks rows r × transactions + 1 on,
    the same rows on both sides. Server CPU µs per transaction: ours and
    theirs (medians over the rounds), and what ours adds, in all and in
    user time (medians of the rounds' differences)."""
    diffs, diffs_user, cpus = [], [], {True: [], False: []}
    for r, order in enumerate(turns(rounds)):
        per = {}
        for is_ours in order:
            script, defines = ours if is_ours else theirs
            per[is_ours] = server_cpu_run(cluster, meter, script, transactions, r * transactions + 1, defines)
            cpus[is_ours].append(per[is_ours])
        diffs.append(sum(per[True]) - sum(per[False]))
        diffs_user.append(per[True][0] - per[False][0])
    return {"added": statistics.median(diffs), "added_user": statistics.median(diffs_user),
            "ours": statistics.median(sum(x) for x in cpus[True]),
            "theirs": statistics.median(sum(x) for x in cpus[False])}


# --- DPoP: what a proof adds to a request with a cached access token ---------

DPOP_URL = "https://api.example.com/invoices"
# Each proof key's algorithm and the openssl speed primitive that checks its signature.
DPOP_ALGS = {"ES256": "ecdsap256", "EdDSA": "ed25519"}
# Scopes that make the access token about 1 KB, as identity providers'
# tokens often are: a proof's ath is the SHA-256 of the whole token.
DPOP_SCOPE = " ".join(f"invoices.{i}:read" for i in range(26))
# Both sides read proof row first + n, one per transaction (as FRESH_ONE
# reads tokens); only the DPoP side presents it, with the bound token.
DPOP_ONE = ROW_EACH + "SELECT proof FROM bench_proofs WHERE id = :id \\gset\n"
DPOP_PROVEN = ("BEGIN;\nSELECT jwt_rls.authenticate(:token, :proof, 'GET', :url);\n"
               "SELECT id, amount FROM accounts_jwt;\nCOMMIT;\n")
# Seconds a proof's iat may lie ahead (src/dpop/mod.rs MAX_AHEAD).
REPLAY_AHEAD = 10
REPLAY_SLOT_BYTES = 96  # docs/reference.md: jwt_rls.dpop_replay_entries (40 in the table, 56 for the shares)
REPLAY_USE = 0.6        # the share of the slots docs/reference.md sizes the table for
DPOP_TEXT = ("DPoP: one pgbench client binds the same cached access token (ES256, "
             "{size} bytes, `cnf.jkt` of the client's key) with a new proof in every transaction "
             "(`BEGIN; SELECT jwt_rls.authenticate(token, proof, 'GET', url); 10-row RLS select; COMMIT`; proofs "
             "made beforehand, each with its own `jti` and the token's `ath`), beside `authenticate(token)` of "
             "the same token without `cnf`; both sides read the proof's row. Added per request: server CPU per "
             "transaction, the median of 4 rounds' differences. Primitive: `openssl speed`'s ECDSA P-256 or "
             "Ed25519 verify plus SHA-256 of the token's bytes, in the same run. " + COLD_TEXT)


def bench_dpop(smoke):
    """What a DPoP proof adds to a request whose access token is cached:
    one pgbench client binds the same token in every transaction, with a
    new proof each time, beside the same token without cnf bound with no
    proof, as server CPU time (see `ServerCpu`), in turns (ABBA). Beside
    it, in the same run, what a proof check is at least: openssl speed's
    verify of the proof key's algorithm plus SHA-256 of the token (ath).
    Then the replay table's memory and capacity. The proofs are made
    before the run, so the bench database allows them an hour
    (jwt_rls.dpop_max_age = 3600)."""
    transactions, rounds = (200, 1) if smoke else (3000, 4)
    seconds = 1 if smoke else 2
    log(f"== DPoP proof per request, cached access token: server CPU, 1 client, {transactions} transactions "
        f"per run, {rounds} rounds; target ≤ 1.25 × (verify + SHA-256 of the token) + 10 µs")
    verify = openssl_public_key_us(seconds, DPOP_ALGS.values())[1]
    cold = cold_signature_us(smoke, list(DPOP_ALGS))
    signer = Signer("dpop-access-es256", "ES256")
    # The last proof is the warm-up's. All of them stay in the replay table
    # for the hour: 24,002 for the two keys in a full run, 37% of the
    # default table, short of where it starts refusing proofs as full.
    proofs = rounds * transactions + 1
    rows = []
    with Cluster(conf=CONF + [PRELOAD]) as c:
        meter = ServerCpu(c)
        log(f"  server CPU from {meter.kind}")
        results["dpop_meter"] = meter.kind
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute(SCHEMA)
            # Server-wide: ALTER SYSTEM and a reload (new connections see it).
            admin.execute("ALTER SYSTEM SET jwt_rls.dpop_max_age = 3600")
            # One key's proofs of the whole run stay for the hour: more than
            # one key's default share of the table (dpop_proofs_per_key).
            admin.execute(f"ALTER SYSTEM SET jwt_rls.dpop_proofs_per_key = {2 * proofs}")
            admin.execute("SELECT pg_reload_conf()")
            time.sleep(0.5)
            # Proofs made in the first seconds after a start are refused.
            wait_until_proofs_accepted(c.dsn())
            admin.execute("CREATE TABLE bench_proofs (id int PRIMARY KEY, proof text NOT NULL)")
            admin.execute("GRANT SELECT ON bench_proofs TO app")
            with admin.cursor() as cur:
                signer.install(cur)
            for alg, primitive in DPOP_ALGS.items():
                key = ProofKey(alg)
                plain = signer.token("t7", sub="client-1", ttl=7200, scope=DPOP_SCOPE)
                bound = signer.token("t7", sub="client-1", ttl=7200, scope=DPOP_SCOPE, cnf={"jkt": key.jkt})
                fill_bench_proofs(admin, key, bound, proofs)
                # Both tokens verified once and cached before the measurement,
                # which also shows that a proof of the table is accepted.
                with psycopg.connect(c.dsn(user="app"), autocommit=True) as app:
                    app.execute("SELECT jwt_rls.authenticate(%s)", (plain,))
                    app.execute("SELECT jwt_rls.authenticate(%s, proof, 'GET', %s) FROM bench_proofs WHERE id = %s",
                                (bound, DPOP_URL, proofs))
                cpu = server_cpu_rounds(c, meter, (DPOP_ONE + DPOP_PROVEN, {"token": bound, "url": DPOP_URL}),
                                        (DPOP_ONE + SCRIPTS["jwt"], {"token": plain}), transactions, rounds)
                sha = openssl_sha256_us(seconds, len(bound))
                p = verify[primitive] + sha
                row = {"alg": alg, **cpu, "verify": verify[primitive], "sha256": sha, "token_bytes": len(bound),
                       "primitive": p, "bound": 1.25 * p + 10,
                       "cold": cold[alg] + sha, "bound_cold": 1.25 * (cold[alg] + sha) + 10}
                rows.append(row)
                log(f"  {alg:5} proof: server CPU/transaction {row['ours']:6.1f} vs {row['theirs']:6.1f} µs, "
                    f"added {row['added']:6.1f} (user {row['added_user']:6.1f}); primitive {p:6.1f} "
                    f"(openssl {primitive} verify {verify[primitive]:.1f} + SHA-256 of {len(bound)} bytes {sha:.2f}); "
                    f"bound {row['bound']:6.1f}: {'met' if row['added'] <= row['bound'] else 'NOT MET'}; "
                    f"cold signature + SHA-256 {row['cold']:6.1f}, 1.25 × that + 10 = {row['bound_cold']:6.1f}: "
                    f"{'met' if row['added'] <= row['bound_cold'] else 'NOT MET'}")
            results["dpop_replay"] = replay_table(admin)
        meter.remove()  # the cluster has stopped: the cgroup is empty
    results["dpop"] = rows
    replay = results["dpop_replay"]
    log(f"  {replay_text(replay)}\n  After the run: {replay['used']:,} proofs in the table, of "
        f"{len(DPOP_ALGS) * proofs:,} accepted (none expired: the bench database allows an hour).")


def fill_bench_proofs(admin, key, token, n):
    """bench_proofs holds rows 1..n: a new proof each by `key` for GET
    DPOP_URL with `token`, iat now."""
    admin.execute("TRUNCATE bench_proofs")
    with admin.cursor() as cur:
        cur.executemany("INSERT INTO bench_proofs VALUES (%s, %s)",
                        [(i, key.proof("GET", DPOP_URL, token)) for i in range(1, n + 1)])
    admin.execute("ANALYZE bench_proofs")


def replay_table(admin):
    """The DPoP replay table: its slots and those in use, from
    jwt_rls.stats(); its shared memory; and the capacity docs/reference.md
    gives it with the default dpop_max_age: REPLAY_USE of the slots over an
    entry's longest life (dpop_max_age + 2 × REPLAY_AHEAD: an iat up to
    that far ahead, and the entry kept that much longer), in proofs per
    second."""
    stats = dict(admin.execute("SELECT name, value FROM jwt_rls.stats()").fetchall())
    max_age = admin.execute("SELECT boot_val::int FROM pg_settings WHERE name = 'jwt_rls.dpop_max_age'").fetchone()[0]
    slots = stats["dpop_replay_slots"]
    life = max_age + 2 * REPLAY_AHEAD
    return {"slots": slots, "used": stats["dpop_replay_used"], "bytes": slots * REPLAY_SLOT_BYTES,
            "max_age": max_age, "life": life, "per_second": slots * REPLAY_USE / life}


def replay_text(r):
    return (f"DPoP replay table: {r['slots']:,} slots (`jwt_rls.dpop_replay_entries`) × {REPLAY_SLOT_BYTES} bytes "
            "(40 in the table, 56 for each key's share) = "
            f"{r['bytes'] / 2**20:.1f} MiB of shared memory. With the default `dpop_max_age` ({r['max_age']} s) "
            f"a proof holds its slot at most {r['life']} s, so at "
            f"{REPLAY_USE:.0%} use the table serves about {r['per_second']:.0f} proofs per second; beyond that, "
            "proofs begin to be refused with 53400 (full: an entry is never dropped before its proof expires).")


# --- sequential scan: policy cost per row ------------------------------------

def bench_scan(cluster, smoke, suffix=""):
    rows = 100_000 if smoke else 1_000_000
    runs = 3 if smoke else 21
    log(f"== sequential scan of {rows:,} rows / 100 tenants: count(*) under each policy form{suffix}")
    signer = Signer(f"scan-hs-{uuid.uuid4().hex[:8]}", "HS256")
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS scan_rows (id int, tenant_id text NOT NULL, v int)")
        admin.execute("TRUNCATE scan_rows")
        admin.execute(f"INSERT INTO scan_rows SELECT g, 't' || (g % 100), g FROM generate_series(1, {rows}) g")
        admin.execute("ALTER TABLE scan_rows ENABLE ROW LEVEL SECURITY")
        admin.execute("VACUUM ANALYZE scan_rows")
        forms = {
            "bare jwt_claim()": "tenant_id = jwt_rls.jwt_claim('tenant_id')",
            "recommended (SELECT jwt_claim())": "tenant_id = (SELECT jwt_rls.jwt_claim('tenant_id'))",
            "PostgREST-style current_setting": "tenant_id = current_setting('request.jwt.claims', true)::jsonb ->> 'tenant_id'",
        }
        for i, (label, expr) in enumerate(forms.items()):
            admin.execute(f"DROP POLICY IF EXISTS p{i} ON scan_rows")
            if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (f"scan{i}",)).fetchone():
                admin.execute(f"CREATE ROLE scan{i} LOGIN")
            admin.execute(f"GRANT USAGE ON SCHEMA jwt_rls TO scan{i}")
            admin.execute(f"GRANT SELECT ON scan_rows TO scan{i}")
            admin.execute(f"CREATE POLICY p{i} ON scan_rows TO scan{i} USING ({expr})")
        with admin.cursor() as cur:
            signer.install(cur)
    token = signer.token("t42", ttl=7200, jti=str(uuid.uuid4()))
    conns = {}
    settings = "SET max_parallel_workers_per_gather = 0"
    literal = psycopg.connect(cluster.dsn(), autocommit=True)  # superuser: no RLS
    literal.execute(settings)
    conns["literal predicate"] = (literal, "SELECT count(*) FROM scan_rows WHERE tenant_id = 't42'")
    for i, label in enumerate(forms):
        c = psycopg.connect(cluster.dsn(user=f"scan{i}"), autocommit=True)
        c.execute(settings)
        c.execute(f"SET jwt_rls.token = '{token}'")
        c.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"tenant_id": "t42"}),))
        conns[label] = (c, "SELECT count(*) FROM scan_rows")
    times = {label: [] for label in conns}
    counts = set()
    for _ in range(runs):
        for label, (c, q) in conns.items():
            started = time.perf_counter()
            counts.add(c.execute(q).fetchone()[0])
            times[label].append((time.perf_counter() - started) * 1000)
    assert counts == {rows // 100}, counts
    # The fastest of the interleaved runs: on a shared machine interference
    # only ever adds time, so the minimum is the steadiest estimate.
    base = min(times["literal predicate"])
    targets = {"bare jwt_claim()": 1.5, "recommended (SELECT jwt_claim())": 1.1}
    for label, ts in times.items():
        ms = min(ts)
        log(f"  {label + suffix:36} {ms:8.1f} ms   ratio to literal {ms / base:5.2f}")
        results.setdefault("scan", []).append((label + suffix, ms, ms / base, targets.get(label)))
    for c, _ in conns.values():
        c.close()


def bench_sessions(cluster, smoke):
    """Login and refresh as a login service would call them, through
    pgbench: each transaction pair starts a session and refreshes it."""
    log("== sessions: start_session + CALL refresh per pgbench iteration (2 clients)")
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute("SELECT jwt_rls.generate_signing_key('bench-issuer', 'ES256')")
        admin.execute("GRANT EXECUTE ON FUNCTION jwt_rls.start_session(text, jsonb), "
                      "jwt_rls.rotate_refresh_token(text) TO app")
        admin.execute("GRANT EXECUTE ON PROCEDURE jwt_rls.refresh(text, text, text, uuid) TO app")
    script = ("SELECT refresh_token AS rt FROM jwt_rls.start_session('bench-user', '{\"tenant_id\": \"t7\"}') \\gset\n"
              "CALL jwt_rls.refresh(':rt');\n")
    seconds = 1 if smoke else 8
    iterations = pgbench(cluster, script, seconds, "simple", {})
    log(f"  {iterations:8.0f} logins/s and as many refreshes/s (ES256 access tokens; "
        f"{2 * iterations:.0f} transactions/s)")
    results["sessions"] = iterations
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute("SELECT jwt_rls.remove_key('bench-issuer')")
        admin.execute("TRUNCATE jwt_rls.sessions CASCADE")


def bench_revocation(cluster, smoke):
    """The same-token transaction and the scans again, with 100,000 revoked
    jtis and 1,000 revoked subjects: a cached token is checked once per
    change of the lists, so nothing here should move."""
    n_tokens, n_subjects = (10_000, 100) if smoke else (100_000, 1_000)
    log(f"== with revocation on: {n_tokens:,} revoked jtis, {n_subjects:,} revoked subjects")
    signer = Signer("bench-revoke-rs256", "RS256")
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        with admin.cursor() as cur:
            signer.install(cur)
        admin.execute("INSERT INTO jwt_rls.revoked_tokens (jti, expires_at) "
                      f"SELECT 'revoked-' || g, now() + interval '2 hours' FROM generate_series(1, {n_tokens}) g")
        admin.execute("INSERT INTO jwt_rls.revoked_subjects (sub, issued_before) "
                      f"SELECT 'gone-' || g, now() FROM generate_series(1, {n_subjects}) g")
        admin.execute("ANALYZE jwt_rls.revoked_tokens, jwt_rls.revoked_subjects")
    seconds, rounds = (1, 1) if smoke else (4, 3)
    token = signer.token("t7", ttl=7200, jti=str(uuid.uuid4()))
    pair(cluster, f"RS256 authenticate, same token, {n_tokens // 1000}k revoked", SCRIPTS["jwt"], SCRIPTS["pgrst"],
         seconds, rounds, "prepared", {"token": token, "claims": claims_of(token)})
    bench_scan(cluster, smoke, suffix=f", {n_tokens // 1000}k revoked")
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute("TRUNCATE jwt_rls.revoked_tokens, jwt_rls.revoked_subjects")


def bench_explain(cluster):
    log("== EXPLAIN: the jwt_claim() policies use the tenant_id index")
    signer = Signer("explain-hs", "HS256")
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        with admin.cursor() as cur:
            signer.install(cur)
        admin.execute("CREATE TABLE IF NOT EXISTS accounts_bare (LIKE accounts_jwt INCLUDING ALL)")
        admin.execute("INSERT INTO accounts_bare SELECT * FROM accounts_jwt ON CONFLICT DO NOTHING")
        admin.execute("ALTER TABLE accounts_bare ENABLE ROW LEVEL SECURITY")
        admin.execute("DROP POLICY IF EXISTS p ON accounts_bare")
        admin.execute("CREATE POLICY p ON accounts_bare USING (tenant_id = jwt_rls.jwt_claim('tenant_id'))")
        admin.execute("GRANT SELECT ON accounts_bare TO app")
        admin.execute("ANALYZE accounts_bare")
    plans = {}
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
        app.execute(f"SET jwt_rls.token = '{signer.token('t7', ttl=7200)}'")
        for table in ["accounts_jwt", "accounts_bare"]:
            plan = "\n".join(r[0] for r in app.execute(f"EXPLAIN (COSTS OFF) SELECT id, amount FROM {table}"))
            cond = re.search(r"Index Cond: (.*)", plan)
            plans[table] = cond.group(1) if cond else None
            log(f"  {table}: {'Index Cond: ' + cond.group(1) if cond else 'NO INDEX CONDITION'}")
    results["explain"] = plans


def bench_memory(cluster, smoke):
    n = 500 if smoke else 10_000
    log(f"== memory: one backend after {n:,} distinct tokens")
    signer = Signer("mem-hs", "HS256")
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        with admin.cursor() as cur:
            signer.install(cur)
    tokens = [signer.token(f"t{i % TENANTS}", sub=f"user-{i}", ttl=7200, roles=["reader", "writer"])
              for i in range(n)]
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
        pid = app.info.backend_pid

        def rss_kib():
            with open(f"/proc/{pid}/status") as f:
                return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

        app.execute("SELECT jwt_rls.authenticate(%s)", (tokens[0],))
        before = rss_kib()
        for t in tokens:
            app.execute("SELECT jwt_rls.authenticate(%s)", (t,))
        entries, est = app.execute("SELECT * FROM jwt_rls.cache_stats()").fetchone()
        after = rss_kib()
        limit = app.execute("SHOW jwt_rls.cache_entries").fetchone()[0]
    log(f"  cache: {entries} entries (limit {limit}), {est / 1024:.0f} KiB estimated (bound 512 KiB); "
        f"backend RSS grew {after - before} KiB over the {n:,} tokens ({len(tokens[0])} bytes each)")
    results["memory"] = (n, entries, int(limit), est, after - before, len(tokens[0]))


# --- pooled: pgbench through PgBouncer, many users, the shared cache ---------

POOL_SIZE = 4  # PgBouncer's server connections (transaction pooling)
POOL_CLIENTS = [2, 8]
COUNTERS_SWITCH = "jwt_rls.counters"  # the boolean setting that turns the counters off, to measure their cost
# Each transaction binds one user's token, looked up by the user's id in the
# statement that binds it; the PostgREST-style transaction looks up that
# user's claims the same way. pgbench can only get a per-transaction string
# from a query (no variable files, no arrays; -D is one fixed value), and
# doing the look-up inside the bind statement costs no extra round trip
# through the pooler. Both sides pay the same primary-key look-up, which
# pulls the ratio slightly towards 1; the alternative, a look-up on our side
# only, would charge it to jwt_rls.
POOLED = {
    "jwt": "BEGIN;\nSELECT jwt_rls.authenticate(token) FROM pooled_users WHERE id = :u;\n"
           "SELECT id, amount FROM accounts_jwt;\nCOMMIT;\n",
    "pgrst": "BEGIN;\nSELECT set_config('request.jwt.claims', claims, true) FROM pooled_users WHERE id = :u;\n"
             "SELECT id, amount FROM accounts_pgrst;\nCOMMIT;\n",
}
RANDOM_USER = "\\set u random(1, {users})\n"
# Warm-up: the two clients walk their halves of the users, so that with
# `-t users/2` every user's token is bound exactly once.
EACH_USER = "\\set u 1 + (:client_id * {half} + :n) % {users}\n\\set n :n + 1\n"


def counters_available(cluster):
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        return conn.execute("SELECT to_regprocedure('jwt_rls.stats()') IS NOT NULL").fetchone()[0]


def read_counters(cluster, bouncer, preloaded):
    """jwt_rls.stats() as {name: value}. Preloaded, the counters are
    cluster-wide and one connection reads them all; otherwise each backend
    counts its own, so sum over the pool's server connections, each pinned
    by an open transaction of its own."""
    if preloaded:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            return dict(conn.execute("SELECT name, value FROM jwt_rls.stats()").fetchall())
    conns = [psycopg.connect(bouncer.dsn(), prepare_threshold=None) for _ in range(POOL_SIZE)]
    try:
        pids, total = set(), {}
        for conn in conns:  # each BEGINs implicitly and holds its server connection
            pids.add(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
            for name, value in conn.execute("SELECT name, value FROM jwt_rls.stats()"):
                total[name] = total.get(name, 0) + value
        assert len(pids) == POOL_SIZE, pids
        return total
    finally:
        for conn in conns:
            conn.close()


def delta(after, before):
    return {k: v - before.get(k, 0) for k, v in after.items()}


def fill_pooled_users(cluster, alg, users):
    """A new key of `alg`, and a token of it for each user in pooled_users."""
    signer = Signer(f"pooled-{alg.lower()}", alg)
    rows = []
    for i in range(1, users + 1):
        t = f"t{i % TENANTS}"
        token = signer.token(t, sub=f"user-{i}", ttl=7200)
        rows.append((i, token, claims_of(token)))
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        with admin.cursor() as cur:
            signer.install(cur)
            cur.execute("TRUNCATE pooled_users")
            cur.executemany("INSERT INTO pooled_users VALUES (%s, %s, %s)", rows)
        admin.execute("ANALYZE pooled_users")


def pooled_pair(cluster, bouncer, pooler, counters, ours, theirs, clients, seconds, rounds):
    """Ours and the PostgREST-style transaction in turns (see `turns`)
    through the pooler: the rounds (`Paired`), and the counters' deltas
    summed over our runs (None without counters)."""
    paired = Paired()
    measured = None
    for order in turns(rounds):
        for is_ours in order:
            before = counters() if is_ours else None
            tps, cpu = pgbench_cpu(cluster, ours if is_ours else theirs, seconds, "simple", {},
                                   pooler_pid=pooler, clients=clients, port=bouncer.port)
            paired.add(is_ours, tps, cpu)
            if before is not None:
                measured = {k: (measured or {}).get(k, 0) + v for k, v in delta(counters(), before).items()}
    return paired, measured


def bench_pooled(smoke, preloaded):
    """pgbench through PgBouncer (transaction pooling, 4 server connections):
    each transaction binds the token of a random one of 2,000 users, each
    user with a token of their own used over and over. With jwt_rls in
    shared_preload_libraries the backends share one cache; without it each
    backend has its own, for comparison. Per algorithm: a warm-up that binds
    every token once, then ours and the PostgREST-style transaction in
    turns at 2 and 8 clients; hit rate and verifications from the
    jwt_rls.stats() deltas."""
    users = 200 if smoke else 2000
    # The shared cache's rows carry the targets: more rounds for their
    # medians; the per-backend rows are a comparison.
    seconds, rounds = (1, 1) if smoke else (4, 10 if preloaded else 4)
    cache = "shared cache" if preloaded else "per-backend caches only"
    log(f"== pooled: pgbench via PgBouncer (transaction pooling, {POOL_SIZE} server connections), "
        f"{users:,} users with a token each, random order; jwt_rls {'' if preloaded else 'not '}preloaded")
    conf = CONF + [PRELOAD] if preloaded else CONF
    with Cluster(conf=conf) as cluster, PgBouncer(cluster, "transaction", pool_size=POOL_SIZE) as bouncer:
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute(SCHEMA)
            admin.execute("CREATE TABLE pooled_users (id int PRIMARY KEY, token text NOT NULL, claims text NOT NULL)")
            admin.execute("GRANT SELECT ON pooled_users TO app")
            if admin.execute("SELECT to_regprocedure('jwt_rls.stats()') IS NOT NULL").fetchone()[0]:
                # Per-backend counters are read through the pool, as app.
                admin.execute("GRANT EXECUTE ON FUNCTION jwt_rls.stats() TO app")
            entries = admin.execute("SELECT setting FROM pg_settings WHERE name = 'jwt_rls.shared_cache_entries'"
                                    ).fetchone()
            switch = admin.execute("SELECT context FROM pg_settings WHERE name = %s", (COUNTERS_SWITCH,)).fetchone()
        with open(os.path.join(bouncer.dir, "pgbouncer.pid")) as f:
            pooler = int(f.read())
        if preloaded:
            log(f"  shared cache: {'jwt_rls.shared_cache_entries = ' + entries[0] if entries else 'not in this build'}")
        counted = counters_available(cluster)
        if not counted:
            log("  counters unavailable (no jwt_rls.stats() in this build): no hit rate or verifications")
        else:
            try:
                read_counters(cluster, bouncer, preloaded)
            except psycopg.Error as e:  # say, a build that counts only when preloaded
                counted = False
                log(f"  counters unavailable (jwt_rls.stats() failed: {str(e).strip()}): no hit rate or verifications")
        if not switch:
            log(f"  counters' cost: not measured (no {COUNTERS_SWITCH} setting to turn them off)")
        elif switch[0] == "postmaster":
            log(f"  counters' cost: not measured ({COUNTERS_SWITCH} needs a restart, which empties the shared cache)")
        counters = (lambda: read_counters(cluster, bouncer, preloaded)) if counted else (lambda: None)
        results.setdefault("pooled_setup", {})[preloaded] = {
            "users": users, "counters": counted, "shared_cache_entries": entries[0] if entries else None,
            "counters_switch": bool(switch)}
        ours, theirs = (RANDOM_USER.format(users=users) + POOLED[k] for k in ("jwt", "pgrst"))
        for alg in ["RS256", "ES256"]:
            fill_pooled_users(cluster, alg, users)
            start = counters()
            pgbench(cluster, EACH_USER.format(users=users, half=users // 2) + POOLED["jwt"], None, "simple",
                    {"n": 0}, port=bouncer.port, transactions=users // 2)
            if not smoke:  # and into the steady state of random order, at the most clients
                pgbench(cluster, ours, seconds, "simple", {}, clients=max(POOL_CLIENTS), port=bouncer.port)
            rows = []
            for clients in POOL_CLIENTS:
                paired, measured = pooled_pair(cluster, bouncer, pooler, counters, ours, theirs,
                                               clients, seconds, rounds)
                (a, b), (cpu_a, cpu_b) = paired.tps, paired.cpu
                line = f"  {alg} {cache}, {clients} clients: {paired.line()}"
                hit = None
                if measured and measured.get("binds"):
                    local, shared = measured.get("cache_hits_local", 0), measured.get("cache_hits_shared", 0)
                    hit = (local + shared) / measured["binds"]
                    line += (f"   hit rate {hit:7.2%} (local {local}, shared {shared} of {measured['binds']} binds), "
                             f"{measured.get('verifications', 0)} verifications")
                log(line)
                rows.append({"alg": alg, "preloaded": preloaded, "clients": clients, "ours": a, "theirs": b,
                             "ratio": paired.ratio, "ratio_range": paired.ratio_range,
                             "cpu_ours": cpu_a, "cpu_theirs": cpu_b, "hit": hit})
            if counted and preloaded:
                # Over the whole run from each token's first bind: with a
                # shared cache that holds them all, one each. (Per-backend
                # counters cannot say it: the pool's server connections come
                # and go.)
                per_token = delta(counters(), start).get("verifications", 0) / users
                log(f"  {alg} {cache}: {per_token:.2f} signature checks per token over warm-up and measurement")
                for row in rows:
                    row["verifications_per_token"] = per_token
            results.setdefault("pooled", []).extend(rows)
            if preloaded and alg == "RS256" and switch and switch[0] != "postmaster":
                counters_cost(cluster, bouncer, pooler, ours, seconds, rounds)
        if preloaded:
            # The harness's resolution: the PostgREST-style transaction
            # against itself, measured exactly as the pairs above. Any
            # distance from 1.00 here is the machine's, not jwt_rls's.
            same, _ = pooled_pair(cluster, bouncer, pooler, lambda: None, theirs, theirs, min(POOL_CLIENTS),
                                  seconds, rounds)
            log(f"  resolution, PostgREST-style against itself, {min(POOL_CLIENTS)} clients: "
                f"{same.line('PostgREST-style (A)', 'PostgREST-style (B)')}")
            results["pooled_resolution"] = (same.ratio, same.cpu_added, same.ratio_range)


def counters_cost(cluster, bouncer, pooler, script, seconds, rounds):
    """The pooled transaction (2 clients) with the counters off and on, in
    turns: what counting costs. Through ALTER SYSTEM and a reload, which the
    pooler's server connections see at their next statement."""
    def counting(on):
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute(f"ALTER SYSTEM SET {COUNTERS_SWITCH} = {'on' if on else 'off'}")
            admin.execute("SELECT pg_reload_conf()")
        time.sleep(0.2)

    tps = {False: 0.0, True: 0.0}
    cpu = {False: 0.0, True: 0.0}
    for order in turns(rounds):
        for on in order:
            counting(on)
            t, c = pgbench_cpu(cluster, script, seconds, "simple", {}, pooler_pid=pooler, port=bouncer.port)
            tps[on] += t / rounds
            cpu[on] += (c["server"] + c["client"]) / rounds
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(f"ALTER SYSTEM RESET {COUNTERS_SWITCH}")
        admin.execute("SELECT pg_reload_conf()")
    log(f"  counters' cost (RS256 pooled, 2 clients): on {tps[True]:7.0f} tps, off {tps[False]:7.0f} tps, "
        f"ratio {tps[True] / tps[False]:5.2f}; CPU/transaction {cpu[True]:6.1f} vs {cpu[False]:6.1f} µs")
    results["counters_cost"] = (tps[True], tps[False], cpu[True], cpu[False])


# --- the README table ---------------------------------------------------------
#
# A run is what one bench.py run measured on one PostgreSQL major:
# {"major", "version", "date", "machine", "workloads", "smoke", "results"}.
# --json writes it and --combine reads several back. The table shows one run,
# or several side by side: a figure that involves PostgreSQL gets a column per
# major; the core figures (no PostgreSQL) come from the first run that has them.

# --- Citus: a coordinator and two workers on this machine ------------------

CITUS_TENANTS = 100
CITUS_SCHEMA = f"""
CREATE EXTENSION jwt_rls;
SELECT count(*) FROM jwt_rls.share_with_citus();
ALTER DATABASE postgres SET jwt_rls.issuer = '{ISSUER}';
ALTER DATABASE postgres SET jwt_rls.audience = '{AUDIENCE}';
ALTER DATABASE postgres SET citus.propagate_set_commands = 'local';
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA jwt_rls TO app;
CREATE TABLE acc_jwt (tenant_id text NOT NULL, id int NOT NULL, amount int NOT NULL);
SELECT create_distributed_table('acc_jwt', 'tenant_id');
CREATE TABLE acc_pgrst (tenant_id text NOT NULL, id int NOT NULL, amount int NOT NULL);
SELECT create_distributed_table('acc_pgrst', 'tenant_id', colocate_with => 'acc_jwt');
INSERT INTO acc_jwt SELECT 't' || (g % {CITUS_TENANTS}), g, g FROM generate_series(1, {CITUS_TENANTS * PER_TENANT}) g;
INSERT INTO acc_pgrst SELECT * FROM acc_jwt;
CREATE INDEX ON acc_jwt (tenant_id);
CREATE INDEX ON acc_pgrst (tenant_id);
ALTER TABLE acc_jwt ENABLE ROW LEVEL SECURITY;
ALTER TABLE acc_pgrst ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON acc_jwt USING (tenant_id = jwt_rls.jwt_claim('tenant_id'));
CREATE POLICY p ON acc_pgrst USING (tenant_id = current_setting('request.jwt.claims', true)::json ->> 'tenant_id');
GRANT SELECT ON acc_jwt, acc_pgrst TO app;
CREATE TABLE bench_tokens (id int PRIMARY KEY, token text NOT NULL, claims text NOT NULL);
GRANT SELECT ON bench_tokens TO app
"""
# The PostgREST-style side on Citus: `set_config()` from a function does
# not reach the workers (Citus forwards only SET LOCAL statements), so the
# claims go in a SET LOCAL statement, which Citus forwards.
CITUS_SCRIPTS = {
    "router": ("SELECT id, amount FROM acc_jwt WHERE tenant_id = ':tenant';",
               "SELECT id, amount FROM acc_pgrst WHERE tenant_id = ':tenant';"),
    "multi-shard": ("SELECT count(*), sum(amount) FROM acc_jwt;", "SELECT count(*), sum(amount) FROM acc_pgrst;"),
}
CITUS_TEXT = ("Citus: a coordinator and two workers on this machine (jwt_rls and Citus preloaded on each, "
              "`share_with_citus()` done), {rows:,} rows over {tenants} tenants in a table distributed by tenant "
              "with the bare `jwt_claim()` policy, 4 shards; pgbench, 2 clients, through the coordinator: "
              "`BEGIN; SELECT jwt_rls.authenticate(token); query; COMMIT` (or `SET LOCAL jwt_rls.token`) beside "
              "the PostgREST-style `SET LOCAL request.jwt.claims` (the form Citus forwards; `set_config()` does not "
              "reach the workers) with the policy PostgREST documents, "
              "`tenant_id = current_setting('request.jwt.claims', true)::json ->> 'tenant_id'`, bare as Citus "
              "requires, so it parses the claims for every row it filters, where `jwt_claim()` reads claims parsed "
              "once per token. Router: "
              "`WHERE tenant_id = ...`, one worker; multi-shard: every shard, both workers. CPU is that of every "
              "process of the three nodes and pgbench per transaction; the never-seen rows bind a token no node "
              "has seen, so every node the query touches verifies it.")


def citus_pair(c, name, ours, theirs, seconds, rounds, defines):
    """`pair` on a Citus cluster: pgbench through the coordinator, CPU summed
    over every node."""
    paired = in_turns(c.coordinator, ours, theirs, seconds, rounds, "simple", defines, others=c.workers)
    log(f"  {name:34} {paired.line()}")
    (a, b), (cpu_a, cpu_b) = paired.tps, paired.cpu
    results.setdefault("citus", []).append({"name": name, "ours": a, "theirs": b, "ratio": paired.ratio,
                                            "ratio_range": paired.ratio_range, "cpu_ours": cpu_a,
                                            "cpu_theirs": cpu_b, "added": paired.cpu_added})


def bench_citus(smoke):
    from support.citus import CitusCluster, skip_reason
    reason = skip_reason()
    if reason:
        log(f"== Citus: skipped: {reason}")
        results["citus_skipped"] = reason
        return
    log("== Citus: coordinator + 2 workers; pgbench pairs through the coordinator (2 clients)")
    seconds, rounds = (1, 1) if smoke else (4, 4)
    c = CitusCluster(conf=CONF).start()
    try:
        with psycopg.connect(c.coordinator.dsn(), autocommit=True) as admin:
            # One statement at a time: Citus does not propagate a multi-statement string.
            for statement in CITUS_SCHEMA.split(";\n"):
                admin.execute(statement)
            for alg in ["HS256", "ES256"]:
                signer = Signer(f"bench-citus-{alg.lower()}", alg)
                with admin.cursor() as cur:
                    signer.install(cur)
                token = signer.token("t7", ttl=7200)
                same = {"token": token, "claims": claims_of(token), "tenant": "t7"}
                for shape, (q_ours, q_theirs) in CITUS_SCRIPTS.items():
                    citus_pair(c, f"{alg} {shape}, same token",
                               f"BEGIN;\nSELECT jwt_rls.authenticate(':token');\n{q_ours}\nCOMMIT;\n",
                               f"BEGIN;\nSET LOCAL request.jwt.claims = ':claims';\n{q_theirs}\nCOMMIT;\n",
                               seconds, rounds, same)
                if alg != "ES256":
                    continue
                # The same, bound with a SET LOCAL statement (the form
                # Citus forwards as it is, with no function in between).
                for shape, (q_ours, q_theirs) in CITUS_SCRIPTS.items():
                    citus_pair(c, f"{alg} {shape}, same token, SET LOCAL",
                               f"BEGIN;\nSET LOCAL jwt_rls.token = ':token';\n{q_ours}\nCOMMIT;\n",
                               f"BEGIN;\nSET LOCAL request.jwt.claims = ':claims';\n{q_theirs}\nCOMMIT;\n",
                               seconds, rounds, same)
                n = 200 if smoke else 20000
                # bench_tokens is a plain table on the coordinator.
                fill_bench_tokens(admin, signer, n, seed=11, tenants=CITUS_TENANTS)
                fresh = FRESH.format(n=n, half=n // 2)
                # The router query names the token's tenant as a constant
                # (folded from its claims), as an application would.
                tenant = "(':claims')::json ->> 'tenant_id'"
                for shape, (q_ours, q_theirs) in CITUS_SCRIPTS.items():
                    q_ours, q_theirs = q_ours.replace("':tenant'", tenant), q_theirs.replace("':tenant'", tenant)
                    citus_pair(c, f"{alg} {shape}, never-seen token",
                               fresh + f"BEGIN;\nSELECT jwt_rls.authenticate(':token');\n{q_ours}\nCOMMIT;\n",
                               fresh + f"BEGIN;\nSET LOCAL request.jwt.claims = ':claims';\n{q_theirs}\nCOMMIT;\n",
                               seconds, rounds, {"n": 0})
    finally:
        c.remove()


def verdict(ok):
    return "met" if ok else ("—" if ok is None else "**not met**")


def pg_version():
    out = subprocess.run([f"{PG_BIN}/postgres", "--version"], capture_output=True, text=True).stdout
    return re.search(r"\(PostgreSQL\) (\S+)", out).group(1)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} cores ({cpu})"


OAUTH_SCOPES = "openid invoices"


def bench_oauth(smoke):
    """A login with an OAuth bearer token (jwt_rls as the validator) beside
    a password login (SCRAM-SHA-256, PostgreSQL's default), each a new
    connection closed at once, by one libpq client in turns. An OAuth
    login is what libpq 18 does: a first connection asks the server which
    issuer to use, a second one presents the token."""
    from support.oauth_client import connect_loop

    if PG_MAJOR < 18:
        results["oauth_skipped"] = f"PostgreSQL {PG_MAJOR} has no OAuth logins (18 and later)"
        log("\n== OAuth login: skipped, " + results["oauth_skipped"])
        return
    n, rounds = (20, 1) if smoke else (400, 4)
    conf = CONF + [PRELOAD, "oauth_validator_libraries = 'jwt_rls'", "jwt_rls.oauth_database = 'postgres'"]
    c = Cluster(conf=conf)
    with open(os.path.join(c.data, "pg_hba.conf"), "w") as f:
        f.write("local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
                "host all app_pw 127.0.0.1/32 scram-sha-256\n"
                f'host all app 127.0.0.1/32 oauth issuer="{ISSUER}" scope="{OAUTH_SCOPES}" map=tokens\n')
    with open(os.path.join(c.data, "pg_ident.conf"), "w") as f:
        f.write("tokens /^.+$ app\n")
    with c:  # starts it; removes it on the way out
        signer = Signer("oauth-bench", "ES256")
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute(SCHEMA)
            admin.execute("CREATE ROLE app_pw LOGIN PASSWORD 'bench-password'")
            with admin.cursor() as cur:
                signer.install(cur)
        token = signer.token("t1", scope=OAUTH_SCOPES, ttl=3600)
        oauth = f"{c.dsn(user='app')} oauth_issuer={ISSUER} oauth_client_id=bench"
        password = c.dsn(user="app_pw", password="bench-password")
        deadline = time.time() + 30
        while True:  # the key snapshot worker's first copy
            try:
                connect_loop(oauth, token, 1)
                break
            except subprocess.CalledProcessError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        ms = {"oauth": [], "password": []}
        for _ in range(rounds):
            ms["oauth"].append(connect_loop(oauth, token, n) / n * 1000)
            ms["password"].append(connect_loop(password, None, n) / n * 1000)
    o, p = statistics.median(ms["oauth"]), statistics.median(ms["password"])
    results["oauth"] = {"oauth_ms": o, "password_ms": p, "ratio": o / p, "logins": n * rounds}
    log(f"\n== OAuth login: {o:.2f} ms per connection vs {p:.2f} ms with a password (SCRAM): "
        f"ratio {o / p:.2f} ({n * rounds} logins of each, in turns)")


def this_run(workloads, smoke):
    """`results`, with the major and machine they were measured on."""
    return {"major": PG_MAJOR, "version": pg_version(), "date": datetime.date.today().isoformat(),
            "machine": machine(), "workloads": sorted(workloads), "smoke": smoke, "results": results}


def read_run(path):
    with open(path) as f:
        run = json.load(f)
    # JSON keys are strings; pooled_setup's are whether jwt_rls was preloaded.
    setup = run["results"].get("pooled_setup")
    if setup:
        run["results"]["pooled_setup"] = {key == "true": value for key, value in setup.items()}
    return run


def table(runs, rows_of, columns, key=lambda row: row[0]):
    """A Markdown table of the rows rows_of(results) of each run. columns:
    (header, cell, per_major), cell(row, results) giving one cell's text.
    With several runs, a per-major column appears once per major, side by
    side ("PG 18: ratio"), so that a regression on one major shows beside
    the others; the other columns (labels, figures that do not involve
    PostgreSQL) appear once. Rows are matched across runs by key(row)."""
    several = len(runs) > 1
    rows = {}  # key -> {index of the run: (row, that run's results)}
    for i, run in enumerate(runs):
        for row in rows_of(run["results"]):
            rows.setdefault(key(row), {})[i] = (row, run["results"])
    heads = []
    for header, _, per_major in columns:
        heads += [f"PG {run['major']}: {header}" for run in runs] if per_major and several else [header]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for found in rows.values():
        cells = []
        for _, cell, per_major in columns:
            if per_major and several:
                cells += [cell(*found[i]) if i in found else "" for i in range(len(runs))]
            else:
                cells.append(cell(*next(iter(found.values()))))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def and_list(items):
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def readme_table(runs):
    """The README's table from one run or several (bench.py --combine); a
    section no run measured (bench.py --only) is left out."""
    several = len(runs) > 1
    core_run = next((run for run in runs if "core" in run["results"]), None)
    core = core_run["results"] if core_run else {}

    def measured(name):
        return [run for run in runs if name in run["results"]]

    def on(run):  # after a figure of one run, when there are several
        return f" (PostgreSQL {run['major']})" if several else ""

    def meters(name):  # what the server CPU of a workload's runs was read from
        return and_list(sorted({run["results"].get(f"{name}_meter", "/proc") for run in measured(name)}))

    def cpu_added(row, r):  # server CPU a row adds per transaction, and whether within its bound
        return f"{row['added']:.1f} ({row['added_user']:.1f}): {verdict(row['added'] <= row['bound'])}"

    def cold_bound(row, r):  # the same bound against the cold-cache signature check, where measured
        if "cold" not in row:
            return "-"
        return f"{row['cold']:.1f}; {row['bound_cold']:.1f}: {verdict(row['added'] <= row['bound_cold'])}"

    date = and_list(sorted({run["date"] for run in runs}))
    versions = and_list(run["version"] for run in runs)
    how = ""
    if several:
        majors = ", ".join(f"PG {run['major']}" for run in runs)
        how = f": a figure that involves PostgreSQL has a column per major ({majors})"
        if core_run:
            how += f"; the core figures, measured without PostgreSQL, come from the PostgreSQL {core_run['major']} run"
    lines = [f"Measured {date} on {runs[0]['machine']}, PostgreSQL {versions}, by `make bench`{how}. "
             "Ratios compare two things measured side by side in the same run."]
    if core:
        lines += ["", "| core verification | jwt_rls µs | signature alone µs | reference (same run) | ratio | target |",
                  "|---|---|---|---|---|---|"]
        for alg, v, sig, ref, ratio, ok in core["core"]:
            target = "≤ 2 µs" if alg == "HS256" else ("≤ 1.25x" if alg in OPENSSL else "")
            lines.append(f"| {alg} | {v:.2f} | {sig:.2f} | {ref} | {ratio:.2f} | "
                         f"{target} {verdict(ok) if target else ''} |")
        lines += ["", "| signing (jwt_rls.sign's core) | jwt_rls µs | reference (same run) | ratio |", "|---|---|---|---|"]
        for alg, v, label, ratio in core["sign"]:
            lines.append(f"| {alg} | {v:.2f} | {label} | {'%.2f' % ratio if ratio else ''} |")
    if core.get("jwe"):
        lines += ["", "| encrypted token (JWE), decrypt + verify | µs | beside, in the same run | ratio |",
                  "|---|---|---|---|"]
        for alg, enc, us, label, ratio in core["jwe"]:
            lines.append(f"| {alg} + {enc} | {us:.2f} | {label} | {'%.2f' % ratio if ratio else ''} |")
    if measured("sessions"):
        logins = ", ".join(f"{run['results']['sessions']:.0f}{on(run)}" for run in measured("sessions"))
        lines += ["", f"Sessions: {logins} logins and as many refreshes per second "
                  "(`start_session` + `CALL refresh`, ES256 access tokens, 2 pgbench clients)."]
    if measured("oauth"):
        for run in measured("oauth"):
            o = run["results"]["oauth"]
            lines += ["", f"OAuth login{on(run)}: {o['oauth_ms']:.2f} ms per connection with a bearer token "
                      f"(jwt_rls as the validator, libpq 18's two connections per login) vs "
                      f"{o['password_ms']:.2f} ms with a password (SCRAM-SHA-256): ratio {o['ratio']:.2f}, "
                      f"{o['logins']} logins of each in turns."]
    if "cache_hit_us" in core:
        hit = core["cache_hit_us"]
        lines += ["", f"Cache hit (same token again): {hit:.3f} µs in the core, target < 2 µs: {verdict(hit < 2)}."]
    if measured("tps"):
        lines += [""] + table(runs, lambda r: r.get("tps", []), [
            ("pgbench, 2 clients, TPS", lambda row, r: row[0], False),
            ("jwt_rls", lambda row, r: f"{row[1]:.0f}", True),
            ("PostgREST-style", lambda row, r: f"{row[2]:.0f}", True),
            ("ratio", lambda row, r: f"{row[3]:.2f}", True),
            ("target ≥ 0.9x", lambda row, r: verdict(row[3] >= 0.9), True)])
    if measured("tps"):
        lines += ["", PAIRED_TEXT]
    if measured("fresh"):
        lines += [""] + table(runs, lambda r: r.get("fresh", []), [
            ("never-seen token in every transaction (1 client, jwt_rls preloaded)",
             lambda row, r: f"{row['alg']}, shared cache {row['cache']}", False),
            ("server CPU added per transaction µs (of which user, approximate)", cpu_added, True),
            ("one bind in one statement µs", lambda row, r: f"{row['in_statement']:.1f}", True),
            ("primitive µs (openssl, same run)", lambda row, r: f"{row['primitive']:.1f}", True),
            ("target ≤ 1.25 × primitive + 10 µs", lambda row, r: f"{row['bound']:.1f}", True),
            ("signature with cold caches µs (criterion, same run); 1.25 × that + 10 µs", cold_bound, True)],
            key=lambda row: (row["alg"], row["cache"]))
        lines += ["", FRESH_TEXT + f" Server CPU read from {meters('fresh')}."]
    if measured("dpop"):
        lines += [""] + table(runs, lambda r: r.get("dpop", []), [
            ("DPoP proof per request, cached access token (1 client, jwt_rls preloaded)",
             lambda row, r: f"{row['alg']} proof key", False),
            ("server CPU added per request µs (of which user, approximate)", cpu_added, True),
            ("primitive µs: openssl verify + SHA-256 of the token (same run)",
             lambda row, r: f"{row['verify']:.1f} + {row['sha256']:.2f}", True),
            ("target ≤ 1.25 × primitive + 10 µs", lambda row, r: f"{row['bound']:.1f}", True),
            ("cold-cache signature + SHA-256 µs (criterion, same run); 1.25 × that + 10 µs", cold_bound, True)],
            key=lambda row: row["alg"])
        first = measured("dpop")[0]["results"]
        lines += ["", DPOP_TEXT.format(size=first["dpop"][0]["token_bytes"])
                  + f" Server CPU read from {meters('dpop')}.", "", replay_text(first["dpop_replay"])]
    if measured("pooled"):
        lines += [""] + pooled_table(measured("pooled"))
    if measured("citus"):
        lines += [""] + table(measured("citus"), lambda r: r.get("citus", []), [
            ("Citus, 3 nodes (pgbench through the coordinator, 2 clients)", lambda row, r: row["name"], False),
            ("jwt_rls TPS", lambda row, r: f"{row['ours']:.0f}", True),
            ("PostgREST-style TPS", lambda row, r: f"{row['theirs']:.0f}", True),
            ("ratio (lowest-highest round)",
             lambda row, r: f"{row['ratio']:.2f} ({row['ratio_range'][0]:.2f}-{row['ratio_range'][1]:.2f})", True),
            ("CPU µs per transaction, all nodes: jwt_rls / PostgREST-style (added)",
             lambda row, r: f"{row['cpu_ours']:.0f} / {row['cpu_theirs']:.0f} ({row['added']:+.0f})", True)],
            key=lambda row: row["name"])
        lines += ["", CITUS_TEXT.format(rows=CITUS_TENANTS * PER_TENANT, tenants=CITUS_TENANTS) + " " + PAIRED_TEXT]
    skipped = [run for run in runs if "citus_skipped" in run["results"]]
    if skipped:
        lines += ["", "Citus: not measured (" + "; ".join(
            f"PostgreSQL {run['major']}: {run['results']['citus_skipped']}" for run in skipped) + ")."]
    if measured("scan"):
        lines += [""] + table(runs, lambda r: r.get("scan", []), [
            ("sequential scan, 1M rows / 100 tenants (fastest of 21; revocation rows: with 100k revoked jtis "
             "and 1k revoked subjects)", lambda row, r: row[0], False),
            ("ms", lambda row, r: f"{row[1]:.1f}", True),
            ("ratio to literal", lambda row, r: f"{row[2]:.2f}", True),
            ("target", lambda row, r: f"≤ {row[3]:.1f}x {verdict(row[2] <= row[3])}" if row[3] else "", True)])
    for run in measured("explain"):
        lines += ["", f"Index use{on(run)}: "
                  + "; ".join(f"`{t}`: Index Cond `{c}`" for t, c in run["results"]["explain"].items()) + "."]
    for run in measured("memory"):
        n, entries, limit, est, rss, size = run["results"]["memory"]
        lines += ["", f"Memory{on(run)}: after {n:,} distinct {size}-byte tokens one backend's cache holds {entries} "
                  f"entries (limit {limit}), {est / 1024:.0f} KiB estimated (bound 512 KiB); the backend's RSS grew "
                  f"{rss} KiB over the run (target < 1 MiB: {verdict(rss < 1024)})."]
    return "\n".join(lines)


def counters_cost_text(r, switch):
    if "counters_cost" in r:
        on, off, cpu_on, cpu_off = r["counters_cost"]
        return (f"Counters' cost (RS256 pooled, 2 clients, `{COUNTERS_SWITCH}` on vs off): {on / off:.2f}x TPS, "
                f"{cpu_on - cpu_off:+.1f} µs CPU per transaction.")
    if switch:
        return f"Counters' cost: not measured (`{COUNTERS_SWITCH}` takes effect only at a restart)."
    return "Counters' cost: not measured; the build has no setting that turns them off."


def floor2(x):
    """Two decimals rounded down, so that a ratio shown beside its target
    never reads as meeting it when it does not (0.949 is 0.94, not 0.95)."""
    return f"{math.floor(x * 100) / 100:.2f}"


def pooled_table(runs):
    """The pooled rows of runs that measured them, then what they rest on:
    the harness's resolution, the shared cache's size and the counters'
    cost of each run."""
    users = next(iter(runs[0]["results"]["pooled_setup"].values()))["users"]

    def label(row, r):
        if not row["preloaded"]:
            return f"{row['alg']}, per-backend caches only (comparison)"
        if r["pooled_setup"][True]["shared_cache_entries"] is not None:
            return f"{row['alg']}, shared cache"
        return f"{row['alg']}, preloaded (no shared cache in this build)"

    def mark(row, ok):  # targets are for the shared cache; the comparison rows have none
        return " " + verdict(ok) if row["preloaded"] else ""

    def hit(row, r):
        return "counters unavailable" if row["hit"] is None else f"{row['hit']:.2%}{mark(row, row['hit'] >= 0.99)}"

    def per_token(row, r):
        n = row.get("verifications_per_token")
        if n is None:
            return "counters unavailable" if row["preloaded"] else "—"
        return f"{n:.2f}{mark(row, n <= 1.0)}"

    lines = table(runs, lambda r: r["pooled"], [
        (f"pooled: pgbench via PgBouncer (transaction pooling, {POOL_SIZE} server connections), {users:,} users "
         "each with their own token, random order", label, False),
        ("clients", lambda row, r: str(row["clients"]), False),
        ("jwt_rls TPS", lambda row, r: f"{row['ours']:.0f}", True),
        ("PostgREST-style TPS", lambda row, r: f"{row['theirs']:.0f}", True),
        ("ratio, target ≥ 0.95x (median; lowest-highest round)",
         lambda row, r: f"{floor2(row['ratio'])} (rounds {row['ratio_range'][0]:.2f}-{row['ratio_range'][1]:.2f})"
                        f"{mark(row, row['ratio'] >= 0.95)}", True),
        ("CPU µs per transaction, jwt_rls / PostgREST-style",
         lambda row, r: f"{row['cpu_ours']:.0f} / {row['cpu_theirs']:.0f}", True),
        ("hit rate, target ≥ 99%", hit, True),
        ("signature checks per token, target ≤ 1", per_token, True)],
        key=lambda row: (row["alg"], row["preloaded"], row["clients"]))
    counters = any(s["counters"] for run in runs for s in run["results"]["pooled_setup"].values())
    common = (("Hit rate: cache hits (local and shared) over binds, from `jwt_rls.stats()` over the measured "
               "phase; signature checks per token: over warm-up and measurement. " if counters else
               "Counters unavailable: `jwt_rls.stats()` is missing from this build (or failed). ")
              + "CPU per transaction: the cluster's, PgBouncer's and pgbench's, over transactions. " + PAIRED_TEXT)
    if len(runs) == 1:
        return lines + ["", common + " " + pooled_notes(runs[0]["results"])]
    lines += ["", common]
    for run in runs:
        lines += ["", f"PostgreSQL {run['major']}: " + pooled_notes(run["results"])]
    return lines


def pooled_notes(r):
    setup = r["pooled_setup"]
    switch = any(s["counters_switch"] for s in setup.values())
    entries = setup.get(True, {}).get("shared_cache_entries")
    resolution = r.get("pooled_resolution")
    return (("Resolution of this harness on this machine: the PostgREST-style transaction against itself "
             f"gave ratio {resolution[0]:.2f} (rounds {resolution[2][0]:.2f}-{resolution[2][1]:.2f}), "
             f"{resolution[1]:+.1f} µs CPU per transaction. " if resolution else "")
            + (f"Shared cache: `jwt_rls.shared_cache_entries = {entries}`. " if entries else "")
            + counters_cost_text(r, switch))


def update_readme(table):
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start not in text:
        raise SystemExit("README.md has no bench markers")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(before + start + "\n" + table + "\n" + end + after)


def publish(table, partial):
    """Prints the table of a partial run (--smoke, --only); writes any other
    into README.md."""
    if partial:
        log("\n" + table)
    else:
        update_readme(table)
        log("\nREADME.md benchmark table updated:\n\n" + table)


WORKLOADS = ["core", "sql", "scan", "revocation", "sessions", "explain", "memory", "pooled", "fresh", "dpop",
             "citus", "oauth"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a few seconds; do not touch the README")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=WORKLOADS, metavar="WORKLOAD",
                        help=f"run only these ({', '.join(WORKLOADS)}); prints the table, leaves the README alone")
    parser.add_argument("--skip", nargs="+", action="extend", choices=WORKLOADS, default=[], metavar="WORKLOAD",
                        help="leave these out (bench.sh measures core with its first major only)")
    parser.add_argument("--json", metavar="PATH",
                        help="write the results, with the PostgreSQL major and version, to PATH; README untouched")
    parser.add_argument("--combine", nargs="+", metavar="PATH",
                        help="measure nothing: one table from these --json files, a column per major; rewrites "
                             "the README unless a file's run was partial (--smoke, --only) or --smoke is given")
    args = parser.parse_args()
    if args.combine:
        runs = [read_run(path) for path in args.combine]
        partial = (args.smoke or any(run["smoke"] for run in runs)
                   or set().union(*(run["workloads"] for run in runs)) != set(WORKLOADS))
        publish(readme_table(runs), partial)
        return
    run = set(args.only) - set(args.skip)
    log(f"== PostgreSQL {PG_MAJOR} ({pg_version()})")
    if "core" in run:
        bench_core(args.smoke)
    with Cluster(conf=CONF) as c:
        with psycopg.connect(c.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS jwt_rls")
            version, commit, debug, _ = conn.execute("SELECT * FROM jwt_rls.build_info()").fetchone()
            conn.execute(SCHEMA)
        log(f"== jwt_rls {version} ({commit}), {'DEBUG' if debug else 'release'} build")
        if debug and not args.smoke:
            sys.exit("bench: the installed jwt_rls is a debug build; run cargo pgrx install --release first")
        if "sql" in run:
            bench_sql(c, args.smoke)
        if "scan" in run:
            bench_scan(c, args.smoke)
        if "revocation" in run:
            bench_revocation(c, args.smoke)
        if "sessions" in run:
            bench_sessions(c, args.smoke)
        if "explain" in run:
            bench_explain(c)
        if "memory" in run:
            bench_memory(c, args.smoke)
    if "pooled" in run:
        # Clusters of their own: one with jwt_rls preloaded (the shared
        # cache), one without (each backend's own cache), for comparison.
        bench_pooled(args.smoke, preloaded=True)
        bench_pooled(args.smoke, preloaded=False)
    if "fresh" in run:
        bench_fresh(args.smoke)
    if "dpop" in run:
        bench_dpop(args.smoke)
    if "citus" in run:
        bench_citus(args.smoke)
    if "oauth" in run:
        bench_oauth(args.smoke)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(this_run(run, args.smoke), f, indent=1)
        log(f"\nresults on PostgreSQL {PG_MAJOR} written to {args.json}")
    else:
        publish(readme_table([this_run(run, args.smoke)]), args.smoke or run != set(WORKLOADS))


if __name__ == "__main__":
    main()
