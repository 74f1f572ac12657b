"""DPoP (RFC 9449) from SQL: `jwt_rls.authenticate(token, dpop_proof,
http_method, http_url)` with proofs made by jwcrypto (tests/support/dpop.py)
for access tokens bound to the proof's key (`cnf.jkt`), on a cluster with
jwt_rls preloaded (the replay table is in shared memory).

What is checked: each proof algorithm binds its token for the transaction
(RLS, jwt_claim(), jwt_claims(), parallel workers) and nothing after
COMMIT; the hostile proofs of RFC 9449 section 4.3 refused with 28000, the
malformed ones and bad URLs with 22023, NULL arguments raising, and no
error carrying the token's or the proof's text; a proof accepted once, in
one backend, in another, and among 8 racing ones; a full replay table
refusing with 53400 and never forgetting early; a flood of one key's
proofs refused past its share (53400) while other keys' are all accepted;
proofs made before a restart, a crash restart or a standby's promotion
refused after it (28000); a cnf-bound token refused
without a proof unless a superuser switches `jwt_rls.dpop_require_proof`
off; 55000 without shared_preload_libraries."""

import json
import os
import re
import signal
import threading
import time

import psycopg
import pytest

from support import b64url_decode, claim, error, make_db, pg
from support.dpop import DROP, ProofKey, ath, recording_since, wait_until_proofs_accepted
from support.pgcluster import PG_BIN, Cluster, as_postgres, wait_for
from support.schema import ROWS, SCHEMA, TENANT_A, TENANT_B, count, insert_invoices
from support.tokens import AUDIENCE, ISSUER, Signer

METHOD = "GET"
URL = "https://api.example.com/invoices"
PROOF_ALGS = ["ES256", "RS256", "PS256", "EdDSA"]
EVENTS = 3000  # rows of `events` in this module's cluster: every third is tenant A's
PRESENT = "SELECT jwt_rls.authenticate(%s, %s, %s, %s)"
FORCE_PARALLEL = ("SET LOCAL debug_parallel_query = on" if pg.MAJOR >= 16
                  else "SET LOCAL force_parallel_mode = on")
PARALLEL = ["SET LOCAL parallel_setup_cost = 0", "SET LOCAL parallel_tuple_cost = 0",
            "SET LOCAL min_parallel_table_scan_size = 0", "SET LOCAL max_parallel_workers_per_gather = 2"]


class Env:
    """This module's cluster, its access-token keys and the clients' proof keys."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.rs = Signer("dpop-rs256", "RS256")   # signs access tokens
        self.hs = Signer("dpop-hs256", "HS256")   # signs access tokens
        self.keys = {alg: ProofKey(alg) for alg in PROOF_ALGS}
        self.key = self.keys["ES256"]              # the client's key of most tests
        self.other = ProofKey("ES256")             # another client's key

    def token(self, key=None, signer=None, tenant=TENANT_A, **claims):
        """An access token bound to `key` (cnf.jkt its thumbprint, by jwcrypto)."""
        claims.setdefault("cnf", {"jkt": (key or self.key).jkt})
        return (signer or self.rs).token(tenant, **claims)

    def app(self, **kw):
        return psycopg.connect(self.cluster.dsn(user="app", **kw), autocommit=True)

    def admin(self, **kw):
        return psycopg.connect(self.cluster.dsn(**kw), autocommit=True)


def install_schema(c, signers, events=0):
    """SCHEMA, the access-token keys, the invoices, `events` rows; leeway
    back to its default (SCHEMA sets it to 0) so that the proof's
    allowance for a clock ahead is the documented one."""
    with psycopg.connect(c.dsn(), autocommit=True) as admin:
        admin.execute(SCHEMA)
        admin.execute("ALTER DATABASE postgres RESET jwt_rls.leeway")
        with admin.cursor() as cur:
            for s in signers:
                s.install(cur)
            admin.execute("SET jwt_rls.token = ''")
            insert_invoices(cur)
            cur.execute("""INSERT INTO events SELECT CASE WHEN g %% 3 = 0 THEN %s ELSE %s END::uuid, g
                           FROM generate_series(1, %s) g""", (str(TENANT_A), str(TENANT_B), events))
            cur.execute("ANALYZE")


@pytest.fixture(scope="module")
def dpop():
    c = Cluster(conf=["shared_preload_libraries = 'jwt_rls'", "max_worker_processes = 8",
                      "max_parallel_workers = 4"]).start()
    try:
        env = Env(c)
        install_schema(c, [env.rs, env.hs], events=EVENTS)
        wait_until_proofs_accepted(c.dsn())
        yield env
    finally:
        c.remove()


@pytest.fixture
def conn(dpop):
    with dpop.app() as conn:
        yield conn


def present(conn, token, proof, method=METHOD, url=URL):
    """The psycopg.Error of authenticate(token, proof, method, url) in a
    transaction of its own, or None when it is accepted."""
    return error(conn, PRESENT, (token, proof, method, url))


def state(e):
    return None if e is None else e.sqlstate


def describe(e):
    return "accepted" if e is None else f"{e.sqlstate} {e.diag.message_primary!r}"


def leaks(e, *secrets):
    """Pieces of `secrets` (the token, the proof: whole, and each segment of
    8 characters or more, signatures included) found anywhere in the error:
    its text, message, detail, hint or context."""
    if e is None:
        return []
    d = e.diag
    text = " ".join(filter(None, [str(e), d.message_primary, d.message_detail, d.message_hint, d.context]))
    found = []
    for secret in secrets:
        pieces = [secret] + [seg for seg in secret.split(".") if len(seg) >= 8]
        found += [piece[:16] for piece in pieces if len(piece) >= 8 and piece in text]
    return found


def said(e):
    """An error's message, detail and hint, for the words it must mention."""
    d = e.diag
    return " ".join(filter(None, [d.message_primary, d.message_detail, d.message_hint])).lower()


def payload(token):
    return json.loads(b64url_decode(token.split(".")[1]))


# --- accepted proofs -----------------------------------------------------------------


@pytest.mark.parametrize("alg", PROOF_ALGS)
def test_a_proof_of_each_algorithm_binds_its_token_for_the_transaction_only(dpop, conn, alg):
    key = dpop.keys[alg]
    token = dpop.token(key)
    proof = key.proof(METHOD, URL, token)
    with conn.transaction():
        claims = conn.execute(PRESENT, (token, proof, METHOD, URL)).fetchone()[0]
        assert claims == payload(token)
        assert claims["cnf"] == {"jkt": key.jkt}
        assert claim(conn) == str(TENANT_A)
        assert conn.execute("SELECT jwt_rls.jwt_claims()").fetchone()[0] == payload(token)
        assert count(conn) == ROWS[TENANT_A]
    assert claim(conn) is None
    assert conn.execute("SELECT jwt_rls.jwt_claims()").fetchone()[0] is None
    assert count(conn) == 0


@pytest.mark.parametrize("htu, url", [
    (URL + "?page=2", URL),
    (URL, URL + "?page=2"),
    (URL + "?a=1#top", URL + "?b=2#bottom"),
    (URL + "#top", URL),
    ("HTTPS://API.Example.COM:443/invoices", URL),
    ("https://api.example.com/v1/../invoices", URL),
], ids=["query in htu", "query in the request", "both differ", "fragment", "case and default port",
        "dot segment"])
def test_an_htu_differing_only_in_query_fragment_or_spelling_is_accepted(dpop, conn, htu, url):
    token = dpop.token(signer=dpop.hs)
    proof = dpop.key.proof(METHOD, htu, token)
    e = present(conn, token, proof, METHOD, url)
    assert e is None, describe(e)


def test_the_proof_form_is_not_strict_and_a_null_argument_raises(dpop, conn):
    strict, rettype = conn.execute(
        "SELECT proisstrict, prorettype::regtype::text FROM pg_proc "
        "WHERE oid = 'jwt_rls.authenticate(text, text, text, text)'::regprocedure").fetchone()
    assert (strict, rettype) == (False, "jsonb")
    token = dpop.token()
    proof = dpop.key.proof(METHOD, URL, token)
    wrong = []
    for i, name in enumerate(["token", "dpop_proof", "http_method", "http_url"]):
        args = [token, proof, METHOD, URL]
        args[i] = None
        e = error(conn, "SELECT jwt_rls.authenticate(%s::text, %s::text, %s::text, %s::text)", args)
        if state(e) not in ("22023", "22004"):
            wrong.append(f"NULL {name}: {describe(e)}")
        elif leaks(e, token, proof):
            wrong.append(f"NULL {name}: the error carries {leaks(e, token, proof)}")
    assert not wrong, "\n".join(wrong)
    # Nothing was bound, and the proof was not spent by those calls.
    assert claim(conn) is None
    e = present(conn, token, proof)
    assert e is None, describe(e)


# --- refused proofs ------------------------------------------------------------------


def _ath_of_another_token(e):
    other = e.token()  # bound to the same key
    return e.token(), e.key.proof(METHOD, URL, other)


def _cnf_of_another_key(e):
    token = e.token(key=ProofKey("ES256"))
    return token, e.key.proof(METHOD, URL, token)


def _without_cnf(e):
    token = e.token(cnf=None)
    return token, e.key.proof(METHOD, URL, token)


def _proof(**changes):
    """A case: the client's proof for the request, with `changes` (claims,
    or header=...)."""
    def make(e):
        token = e.token()
        return token, e.key.proof(METHOD, URL, token, **changes)
    return make


def _token(**claims):
    """A case: a valid proof with an access token that is itself refused."""
    def make(e):
        token = e.token(**claims)
        return token, e.key.proof(METHOD, URL, token)
    return make


def _now(delta):
    return int(time.time()) + delta


HOSTILE = {
    "htm POST for a GET": _proof(htm="POST"),
    "htm get for GET (methods are case-sensitive)": _proof(htm="get"),
    "htm missing": _proof(htm=DROP),
    "htu another path": _proof(htu="https://api.example.com/admin"),
    "htu another host": _proof(htu="https://evil.example.com/invoices"),
    "htu another scheme": _proof(htu="http://api.example.com/invoices"),
    "htu another port": _proof(htu="https://api.example.com:8443/invoices"),
    "htu missing": _proof(htu=DROP),
    "ath of another token bound to the same key": _ath_of_another_token,
    "ath missing": _proof(ath=DROP),
    "proof signed by another client's key (jkt mismatch)": lambda e: (
        lambda t: (t, e.other.proof(METHOD, URL, t)))(e.token()),
    "token cnf.jkt is another key's thumbprint": _cnf_of_another_key,
    "token without cnf": _without_cnf,
    "iat 120 s old": lambda e: _proof(iat=_now(-120))(e),
    "iat 300 s ahead": lambda e: _proof(iat=_now(300))(e),
    "iat missing": _proof(iat=DROP),
    "iat not an integer": lambda e: _proof(iat=_now(0) + 0.5)(e),
    "jti missing": _proof(jti=DROP),
    "jti empty": _proof(jti=""),
    "typ missing": _proof(header={"typ": DROP}),
    "typ JWT": _proof(header={"typ": "JWT"}),
    "typ DPoP+JWT": _proof(header={"typ": "DPoP+JWT"}),
    "alg none": lambda e: (lambda t: (t, e.key.unsecured(METHOD, URL, t)))(e.token()),
    "alg HS256 with an oct jwk": lambda e: (lambda t: (t, e.key.hmac_proof(METHOD, URL, t)))(e.token()),
    "jwk with private member d": lambda e: _proof(header={"jwk": e.key.private_jwk})(e),
    "jwk missing": _proof(header={"jwk": DROP}),
    "header jwk is not the key that signed": lambda e: (
        lambda t: (t, e.key.proof(METHOD, URL, t, signed_by=e.other)))(e.token()),
    "crit in the header": _proof(header={"crit": ["exp"]}),
    "access token expired": _token(ttl=-120),
    "access token of an unknown key": lambda e: _token(signer=Signer("dpop-nobody", "HS256"))(e),
    "access token for another audience": _token(aud="another-service"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_proof_is_refused_with_28000_and_no_token_or_proof_text(dpop, conn, name):
    token, proof = HOSTILE[name](dpop)
    e = present(conn, token, proof)
    assert state(e) == "28000", f"{name}: {describe(e)}"
    assert not leaks(e, token, proof), f"{name}: the error carries {leaks(e, token, proof)}"
    assert claim(conn) is None


def test_a_proof_for_one_token_is_refused_with_another_token_of_the_same_key(dpop, conn):
    """ath binds the proof to its token: the proof made for `first` fails
    with `second` (same key, same request) and is not spent by that
    refusal; with `first` it is accepted, then refused with either."""
    first, second = dpop.token(), dpop.token(tenant=TENANT_B)
    proof = dpop.key.proof(METHOD, URL, first)
    e = present(conn, second, proof)
    assert state(e) == "28000", describe(e)
    assert not leaks(e, first, second, proof)
    e = present(conn, first, proof)
    assert e is None, describe(e)
    assert state(present(conn, second, proof)) == "28000"
    assert state(present(conn, first, proof)) == "28000"


MALFORMED = {
    "empty": lambda p: "",
    "one segment": lambda p: "not-a-dpop-proof",
    "two segments": lambda p: p.rsplit(".", 1)[0],
    "four segments": lambda p: p + ".AAAA",
    "whitespace inside": lambda p: p[:20] + " " + p[20:],
    "padded base64url": lambda p: p + "=",
    "header not base64url": lambda p: "!!!" + p,
    "header not JSON": lambda p: "e25vdCBqc29u." + p.split(".", 1)[1],
    "header a JSON array": lambda p: "WzFd." + p.split(".", 1)[1],
    "Bearer prefix": lambda p: "DPoP " + p,
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_proof_is_22023_without_token_or_proof_text(dpop, conn, name):
    token = dpop.token()
    proof = MALFORMED[name](dpop.key.proof(METHOD, URL, token))
    e = present(conn, token, proof)
    assert state(e) == "22023", f"{name}: {describe(e)}"
    assert not leaks(e, token, proof), f"{name}: the error carries {leaks(e, token, proof)}"


def test_a_signed_proof_whose_payload_is_not_json_is_22023(dpop, conn):
    token = dpop.token()
    proof = dpop.key.proof(METHOD, URL, token, payload=b"{not json")
    e = present(conn, token, proof)
    assert state(e) == "22023", describe(e)
    assert not leaks(e, token, proof)


@pytest.mark.parametrize("url", ["", "api.example.com/invoices", "/invoices", "ftp://api.example.com/invoices",
                                 "https://", "https:///invoices", "not a url", "https://api.example.com/in voices"])
def test_a_bad_request_url_argument_is_22023(dpop, conn, url):
    token = dpop.token()
    proof = dpop.key.proof(METHOD, URL, token)
    e = present(conn, token, proof, METHOD, url)
    assert state(e) == "22023", describe(e)
    assert not leaks(e, token, proof)


# --- replay --------------------------------------------------------------------------


def test_a_proof_is_accepted_once_then_refused_in_this_and_another_backend(dpop, conn):
    token = dpop.token()
    proof = dpop.key.proof(METHOD, URL, token)
    assert present(conn, token, proof) is None
    again = present(conn, token, proof)
    assert state(again) == "28000", describe(again)
    assert not leaks(again, token, proof)
    with dpop.app() as other:
        e = present(other, token, proof)
        assert state(e) == "28000", describe(e)
        assert not leaks(e, token, proof)
        # The key and token are not blocked: a new proof (new jti) is accepted there.
        e = present(other, token, dpop.key.proof(METHOD, URL, token))
        assert e is None, describe(e)


def test_a_proof_accepted_in_a_rolled_back_transaction_stays_spent(dpop, conn):
    """The replay table is not transactional: a proof seen by the server
    is refused again even when the transaction that accepted it rolled
    back (else a replay after a client's failed request would pass)."""
    token = dpop.token()
    proof = dpop.key.proof(METHOD, URL, token)
    with conn.transaction() as tx:
        conn.execute(PRESENT, (token, proof, METHOD, URL))
        assert claim(conn) == str(TENANT_A)
        raise psycopg.Rollback(tx)
    assert claim(conn) is None
    e = present(conn, token, proof)
    assert state(e) == "28000", describe(e)
    with dpop.app() as other:
        assert state(present(other, token, proof)) == "28000"


def test_eight_connections_racing_one_proof_accept_it_exactly_once(dpop):
    token = dpop.token()
    proof = dpop.key.proof(METHOD, URL, token)
    conns = [dpop.app() for _ in range(8)]
    try:
        start = threading.Barrier(len(conns))
        results = []

        def run(c):
            start.wait()
            results.append(state(present(c, token, proof)))

        threads = [threading.Thread(target=run, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for c in conns:
            c.close()
    assert sorted(results, key=str) == sorted([None] + ["28000"] * 7, key=str), results


def test_a_full_replay_table_refuses_new_proofs_with_53400_and_forgets_none_early():
    """A 64-entry table: distinct valid proofs are accepted until one is
    refused with 53400 (two-choice sets fill at roughly 70-100% of their
    slots, so the exact count is not asserted); every proof accepted
    before is still refused as a replay, none forgotten to make room."""
    c = Cluster(conf=["shared_preload_libraries = 'jwt_rls'", "jwt_rls.dpop_replay_entries = 64"]).start()
    try:
        signer, key = Signer("dpop-full-hs256", "HS256"), ProofKey("ES256")
        install_schema(c, [signer])
        wait_until_proofs_accepted(c.dsn())
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            shown = admin.execute("SHOW jwt_rls.dpop_replay_entries").fetchone()[0]
        slots = max(128, int(re.match(r"\d+", shown).group()))  # rounded up to a multiple of 128
        token = signer.token(TENANT_A, cnf={"jkt": key.jkt})
        accepted, full, other = [], None, []
        with psycopg.connect(c.dsn(user="app"), autocommit=True) as conn:
            for _ in range(slots * 4 + 64):
                proof = key.proof(METHOD, URL, token)
                e = present(conn, token, proof)
                if e is None:
                    accepted.append(proof)
                elif e.sqlstate == "53400":
                    full = e
                    break
                else:
                    other.append(describe(e))
            print(f"\nreplay table of {shown}: {len(accepted)} proofs accepted before 53400")
            assert not other, other
            assert full is not None, f"no 53400 after {len(accepted)} proofs accepted (table of {shown})"
            assert accepted, "53400 before any proof was recorded"
            assert not leaks(full, token, proof)
            assert claim(conn) is None
            replayed = [state(present(conn, token, p)) for p in accepted]
            assert replayed == ["28000"] * len(accepted), replayed
    finally:
        c.remove()


# --- floods, restarts and promotion ---------------------------------------------------


def stats_of(conn):
    return dict(conn.execute("SELECT name, value FROM jwt_rls.stats()").fetchall())


def test_a_flood_from_one_key_never_makes_another_keys_proof_fail():
    """One key sends 6,000 fresh proofs from two connections at full speed
    into a 4,096-slot table (more than it holds) while 24 other keys send
    up to 60 each (within their share): the flooding key has exactly its
    share (128) accepted and
    every other proof refused with 53400 "too many DPoP proofs from one
    key", counted in stats(); every proof of the other keys is accepted;
    the table holds exactly the accepted proofs (nothing refused took a
    slot, nothing accepted was dropped). Without the share the flood fills
    the table and the other keys' proofs are refused as full."""
    c = Cluster(conf=["shared_preload_libraries = 'jwt_rls'", "jwt_rls.dpop_replay_entries = 4096",
                      "jwt_rls.dpop_proofs_per_key = 128"]).start()
    try:
        signer = Signer("dpop-flood-hs256", "HS256")
        install_schema(c, [signer])
        wait_until_proofs_accepted(c.dsn())
        flooder, others = ProofKey("EdDSA"), [ProofKey("ES256") for _ in range(24)]
        flood_token = signer.token(TENANT_A, cnf={"jkt": flooder.jkt})
        other_tokens = [signer.token(TENANT_B, cnf={"jkt": k.jkt}) for k in others]
        flood, mine, stop = [], [], threading.Event()
        per_thread, each_other = 3000, 60

        def flood_from_one_connection():
            with psycopg.connect(c.dsn(user="app"), autocommit=True) as conn:
                for _ in range(per_thread):
                    proof = flooder.proof(METHOD, URL, flood_token)
                    e = present(conn, flood_token, proof)
                    flood.append(None if e is None else (e.sqlstate, e.diag.message_primary, leaks(e, proof)))

        def other_keys():
            with psycopg.connect(c.dsn(user="app"), autocommit=True) as conn:
                for _ in range(each_other - 1):  # the last one after the flood
                    for key, token in zip(others, other_tokens):
                        if stop.is_set():
                            return
                        mine.append(describe(present(conn, token, key.proof(METHOD, URL, token))))

        flooders = [threading.Thread(target=flood_from_one_connection) for _ in range(2)]
        bystander = threading.Thread(target=other_keys)
        started = time.time()
        for t in flooders + [bystander]:
            t.start()
        for t in flooders:
            t.join()
        stop.set()
        bystander.join()
        elapsed = time.time() - started
        with psycopg.connect(c.dsn(user="app"), autocommit=True) as conn:
            for key, token in zip(others, other_tokens):  # and once more, after the flood
                mine.append(describe(present(conn, token, key.proof(METHOD, URL, token))))
        accepted = sum(1 for r in flood if r is None)
        refused = [r for r in flood if r is not None]
        print(f"\nflood: {len(flood)} proofs of one key in {elapsed:.1f} s ({len(flood) / elapsed:.0f}/s), "
              f"{accepted} accepted, {len(refused)} refused; {len(mine)} proofs of {len(others)} other keys")
        assert accepted == 128, accepted
        assert {r[:2] for r in refused} == {("53400", "too many DPoP proofs from one key")}, set(refused)
        assert not any(r[2] for r in refused), "a proof's text in an error"
        assert len(mine) > len(others), "the other keys sent no proof during the flood"
        assert set(mine) == {"accepted"}, sorted(set(mine))
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            stats = stats_of(admin)
        assert stats["refused_dpop_over_share"] == len(refused)
        assert stats["dpop_replay_used"] == accepted + len(mine)
        assert stats["dpop_replay_keys"] == 1 + len(others)
    finally:
        c.remove()


def made_before_recording(e):
    return e is not None and e.sqlstate == "28000" and \
        e.diag.message_primary == "DPoP proof was made before this server began recording proofs"


def test_a_proof_captured_before_a_restart_is_refused_after_it():
    """Proofs accepted (one with an iat 8 s ahead, as a client with a fast
    clock makes) and one captured but never sent, before an immediate
    shutdown and before a backend's kill -9 (a crash restart): after each,
    all three are refused with 28000 "made before this server began
    recording" (the replay table was emptied; an iat up to 10 s past the
    restart may still be an old proof), stats() shows the new start, and
    once that allowance has passed a new proof is accepted."""
    c = Cluster(conf=["shared_preload_libraries = 'jwt_rls'"]).start()
    try:
        signer, key = Signer("dpop-restart-hs256", "HS256"), ProofKey("ES256")
        install_schema(c, [signer])
        wait_until_proofs_accepted(c.dsn())
        token = signer.token(TENANT_A, cnf={"jkt": key.jkt}, ttl=3600)
        used, ahead, unsent = (key.proof(METHOD, URL, token), key.proof(METHOD, URL, token, iat=int(time.time()) + 8),
                               key.proof(METHOD, URL, token))
        with dpop_app(c) as conn:
            assert present(conn, token, used) is None
            assert present(conn, token, ahead) is None
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            since = recording_since(admin)
        for how in ["pg_ctl stop -m immediate", "kill -9 of a backend"]:
            if how.startswith("pg_ctl"):
                c.stop("immediate")
                c.start()
            else:
                victim = dpop_app(c)
                os.kill(victim.info.backend_pid, signal.SIGKILL)  # the postmaster restarts every backend
                victim.close()
                assert wait_for(lambda: can_connect(c), 60), "the server did not come back"
            with dpop_app(c) as conn:
                for name, proof in [("used", used), ("ahead", ahead), ("unsent", unsent)]:
                    e = present(conn, token, proof)
                    assert made_before_recording(e), f"after {how}, the {name} proof: {describe(e)}"
                    assert not leaks(e, token, proof)
                    assert claim(conn) is None
            with psycopg.connect(c.dsn(), autocommit=True) as admin:
                restarted = recording_since(admin)
            assert restarted > since or how.startswith("kill"), (how, restarted, since)
            assert restarted >= since
            since = restarted
        wait_until_proofs_accepted(c.dsn())
        with dpop_app(c) as conn:
            assert present(conn, token, key.proof(METHOD, URL, token)) is None
            assert state(present(conn, token, used)) == "28000"
    finally:
        c.remove()


def test_a_promoted_standby_refuses_proofs_made_before_its_promotion():
    """A hot standby binds DPoP tokens with a replay table of its own: a
    proof accepted by the primary is accepted once more there (the limit
    SECURITY.md states), and once only. Promoted, it refuses the proofs
    the primary accepted (its table never saw them) with 28000 "made
    before this server began recording", and accepts new proofs once the
    allowance after the promotion has passed."""
    primary = Cluster(conf=["shared_preload_libraries = 'jwt_rls'", "wal_level = replica",
                            "max_wal_senders = 4"]).start()
    standby = None
    try:
        signer, key = Signer("dpop-standby-hs256", "HS256"), ProofKey("EdDSA")
        install_schema(primary, [signer])
        standby = Cluster(init=False)
        standby.start_as_standby_of(primary)
        wait_until_proofs_accepted(primary.dsn())
        wait_until_proofs_accepted(standby.dsn())
        token = signer.token(TENANT_A, cnf={"jkt": key.jkt}, ttl=3600)
        first, second = key.proof(METHOD, URL, token), key.proof(METHOD, URL, token)
        with dpop_app(primary) as conn:
            assert present(conn, token, first) is None
            assert present(conn, token, second) is None
        with dpop_app(standby) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            assert present(conn, token, first) is None, "the standby's own table"
            assert state(present(conn, token, first)) == "28000"
        as_postgres([f"{PG_BIN}/pg_ctl", "-D", standby.data, "-w", "promote"])
        with dpop_app(standby) as conn:
            assert wait_for(lambda: not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0], 30)
            for proof in (second, first):
                e = present(conn, token, proof)
                assert made_before_recording(e), describe(e)
        wait_until_proofs_accepted(standby.dsn())
        with dpop_app(standby) as conn:
            assert present(conn, token, key.proof(METHOD, URL, token)) is None
            assert state(present(conn, token, second)) == "28000"
    finally:
        if standby is not None:
            standby.remove()
        primary.remove()


def dpop_app(c):
    return psycopg.connect(c.dsn(user="app"), autocommit=True)


def can_connect(c):
    try:
        with psycopg.connect(c.dsn(), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


# --- tokens bound to a key, without a proof -----------------------------------------


def no_proof_ways(token):
    """Every way to bind a token without a proof, each in a transaction of
    its own (SET jwt_rls.token inside one is still a session-level SET)."""
    return {
        "authenticate(token)": ("SELECT jwt_rls.authenticate(%s)", (token,)),
        "set_config local": ("SELECT set_config('jwt_rls.token', %s, true)", (token,)),
        "set_config session": ("SELECT set_config('jwt_rls.token', %s, false)", (token,)),
        "SET LOCAL": (f"SET LOCAL jwt_rls.token = '{token}'", None),
        "SET": (f"SET jwt_rls.token = '{token}'", None),
    }


def test_a_cnf_bound_token_without_a_proof_is_refused_with_28000(dpop, conn):
    token = dpop.token()
    wrong = []
    for how, (sql, params) in no_proof_ways(token).items():
        e = error(conn, sql, params)
        if state(e) != "28000":
            wrong.append(f"{how}: {describe(e)}")
        elif "dpop" not in said(e):
            wrong.append(f"{how}: the error does not mention DPoP: {said(e)!r}")
        elif leaks(e, token):
            wrong.append(f"{how}: the error carries {leaks(e, token)}")
        if claim(conn) is not None:
            wrong.append(f"{how}: a claim is bound afterwards")
    assert not wrong, "\n".join(wrong)
    # The same token without cnf binds in each of those ways.
    plain = dpop.token(cnf=None)
    for how, (sql, params) in no_proof_ways(plain).items():
        e = error(conn, sql, params)
        assert e is None, f"{how}: {describe(e)}"
    conn.execute("RESET jwt_rls.token")


def test_set_local_after_a_proof_accepts_that_token_only_and_only_in_that_transaction(dpop, conn):
    token = dpop.token(sub="alice")
    sibling = dpop.token(sub="mallory")  # bound to the same key, never proved
    proof = dpop.key.proof(METHOD, URL, token)
    with conn.transaction():
        conn.execute(PRESENT, (token, proof, METHOD, URL))
        conn.execute(f"SET LOCAL jwt_rls.token = '{token}'")
        assert claim(conn, "sub") == "alice"
        conn.execute("SELECT set_config('jwt_rls.token', %s, true)", (token,))
        assert claim(conn, "sub") == "alice"
        for sql, params in [(f"SET LOCAL jwt_rls.token = '{sibling}'", None),
                            ("SELECT set_config('jwt_rls.token', %s, true)", (sibling,)),
                            ("SELECT jwt_rls.authenticate(%s)", (sibling,))]:
            e = error(conn, sql, params)  # in a savepoint
            assert state(e) == "28000", f"{sql[:40]}: {describe(e)}"
            assert not leaks(e, token, sibling, proof)
            assert claim(conn, "sub") == "alice"
        assert count(conn) == ROWS[TENANT_A]
    assert claim(conn) is None
    e = error(conn, f"SET LOCAL jwt_rls.token = '{token}'")
    assert state(e) == "28000", "the proof covered its own transaction only: " + describe(e)


def test_a_proof_in_a_rolled_back_savepoint_leaves_nothing_bound_or_proven(dpop, conn):
    token = dpop.token()
    proof = dpop.key.proof(METHOD, URL, token)
    with conn.transaction():
        with conn.transaction() as sp:
            conn.execute(PRESENT, (token, proof, METHOD, URL))
            assert claim(conn) == str(TENANT_A)
            raise psycopg.Rollback(sp)
        assert claim(conn) is None
        e = error(conn, f"SET LOCAL jwt_rls.token = '{token}'")
        assert state(e) == "28000", describe(e)
    assert state(present(conn, token, proof)) == "28000", "the proof stays spent"


def test_a_session_set_inside_the_proven_transaction_binds_nothing_after_commit(dpop, conn):
    """SET (not LOCAL) of the proven token inside its transaction may be
    accepted or refused, but the proof covers that transaction only: after
    COMMIT no claim of the token is readable and no row is visible."""
    token = dpop.token()
    proof = dpop.key.proof(METHOD, URL, token)
    with conn.transaction():
        conn.execute(PRESENT, (token, proof, METHOD, URL))
        inside = error(conn, f"SET jwt_rls.token = '{token}'")
        assert state(inside) in (None, "28000"), describe(inside)
    after = [error(conn, "SELECT jwt_rls.jwt_claim('tenant_id')"), error(conn, "SELECT count(*) FROM invoices")]
    assert all(state(e) in (None, "28000") for e in after), [describe(e) for e in after]
    if after[0] is None:
        assert claim(conn) is None
    if after[1] is None:
        assert count(conn) == 0
    conn.execute("RESET jwt_rls.token")


def test_a_cnf_bound_token_in_the_connection_options_binds_nothing(dpop):
    token = dpop.token()
    try:
        conn = dpop.app(options=f"'-c jwt_rls.token={token}'")
    except psycopg.OperationalError as e:
        assert token not in str(e) and token.split(".")[2] not in str(e)
        return
    with conn:
        for sql in ["SELECT jwt_rls.jwt_claim('tenant_id')", "SELECT count(*) FROM invoices"]:
            e = error(conn, sql)
            if e is None:
                assert conn.execute(sql).fetchone()[0] in (None, 0), sql
            else:
                assert e.sqlstate == "28000", describe(e)
                assert not leaks(e, token)


def test_a_non_superuser_cannot_mark_a_token_proven(dpop, conn):
    """jwt_rls.dpop_proven (the ath of the token proven in this
    transaction) is jwt_rls's own mark: the application role can set it in
    none of the ways a setting is set, and the token stays refused."""
    token = dpop.token()
    mark = ath(token)
    wrong = []
    altered = False
    for sql in [f"SET jwt_rls.dpop_proven = '{mark}'",
                f"SET LOCAL jwt_rls.dpop_proven = '{mark}'",
                f"SELECT set_config('jwt_rls.dpop_proven', '{mark}', true)",
                f"SELECT set_config('jwt_rls.dpop_proven', '{mark}', false)",
                f"ALTER ROLE app SET jwt_rls.dpop_proven = '{mark}'"]:
        e = error(conn, sql)
        altered = altered or (e is None and sql.startswith("ALTER"))
        if state(e) != "42501":
            wrong.append(f"{sql[:50]}: {describe(e)}")
    # A function SET clause: refused when created, or else when called.
    e = error(conn, f"""CREATE FUNCTION pg_temp.proven_bind(t text) RETURNS text LANGUAGE sql
                        SET jwt_rls.dpop_proven = '{mark}'
                        AS $$ SELECT set_config('jwt_rls.token', t, true) $$""")
    if e is None:
        e = error(conn, "SELECT pg_temp.proven_bind(%s)", (token,))
    if state(e) not in ("42501", "28000"):
        wrong.append(f"function SET clause: {describe(e)}")
    try:
        with conn.transaction():
            error(conn, f"SET LOCAL jwt_rls.dpop_proven = '{mark}'")
            e = error(conn, f"SET LOCAL jwt_rls.token = '{token}'")
            if state(e) != "28000":
                wrong.append(f"SET LOCAL after the attempts: {describe(e)}")
        assert not wrong, "\n".join(wrong)
    finally:
        if altered:
            with dpop.admin() as admin:
                admin.execute("ALTER ROLE app RESET jwt_rls.dpop_proven")


def test_parallel_workers_see_the_claims_a_proof_bound(dpop, conn):
    token = dpop.token()
    proof = dpop.key.proof(METHOD, URL, token)
    with conn.transaction():
        conn.execute(PRESENT, (token, proof, METHOD, URL))
        for s in PARALLEL + [FORCE_PARALLEL]:
            conn.execute(s)
        query = "SELECT jwt_rls.jwt_claim('tenant_id')"
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + query))
        assert re.search(r"Workers Launched: [1-9]", plan), plan
        assert conn.execute(query).fetchone()[0] == str(TENANT_A)
        query = "SELECT count(*) FROM events"
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + query))
        assert re.search(r"Workers Launched: [1-9]", plan), plan
        assert conn.execute(query).fetchone()[0] == EVENTS // 3
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0


# --- jwt_rls.dpop_require_proof ------------------------------------------------------


def test_dpop_require_proof_is_refused_to_a_non_superuser_with_42501(dpop, conn):
    wrong = []
    try:
        for sql in ["SET jwt_rls.dpop_require_proof = off",
                    "SELECT set_config('jwt_rls.dpop_require_proof', 'off', false)",
                    "SELECT set_config('jwt_rls.dpop_require_proof', 'off', true)",
                    "ALTER ROLE app SET jwt_rls.dpop_require_proof = off"]:
            e = error(conn, sql)
            if state(e) != "42501":
                wrong.append(f"{sql}: {describe(e)}")
        assert not wrong, "\n".join(wrong)
        assert state(error(conn, "SELECT jwt_rls.authenticate(%s)", (dpop.token(),))) == "28000"
    finally:
        with dpop.admin() as admin:  # in case the ALTER ROLE went through
            admin.execute("ALTER ROLE app RESET jwt_rls.dpop_require_proof")


def test_dpop_require_proof_off_for_a_database_binds_cnf_tokens_without_a_proof_there_only(dpop):
    name = "dpop_optional"
    with dpop.admin() as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        make_db(admin, name, {"issuer": ISSUER, "audience": AUDIENCE, "dpop_require_proof": "off"})
        try:
            with dpop.admin(dbname=name) as there:
                there.execute("CREATE EXTENSION jwt_rls")
                there.execute("GRANT USAGE ON SCHEMA jwt_rls TO app")
                with there.cursor() as cur:
                    dpop.rs.install(cur)
            token = dpop.token()
            with dpop.app(dbname=name) as conn:
                for how, (sql, params) in no_proof_ways(token).items():
                    with conn.transaction():
                        conn.execute(sql, params)
                        assert claim(conn) == str(TENANT_A), how
                    conn.execute("RESET jwt_rls.token")
                # A proof, when one is given, is still verified there.
                bad = dpop.key.proof("POST", URL, token)
                assert state(present(conn, token, bad)) == "28000"
                good = dpop.key.proof(METHOD, URL, token)
                assert present(conn, token, good) is None
                assert state(present(conn, token, good)) == "28000"
            with dpop.app() as conn:  # the main database still requires one
                assert state(error(conn, "SELECT jwt_rls.authenticate(%s)", (token,))) == "28000"
            # A superuser may switch it off in a session.
            with dpop.admin() as su:
                su.execute("SET jwt_rls.dpop_require_proof = off")
                e = error(su, "SELECT jwt_rls.authenticate(%s)", (token,))
                assert e is None, describe(e)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- without shared_preload_libraries --------------------------------------------------


def test_without_preload_the_proof_form_is_55000_and_cnf_tokens_stay_refused(cluster, db, app, signers):
    """The session's shared cluster does not preload jwt_rls: there is no
    replay table, so no proof can be accepted, and a token bound to a key
    cannot be used without one."""
    key = ProofKey("ES256")
    token = signers["RS256"].token(TENANT_A, cnf={"jkt": key.jkt})
    proof = key.proof(METHOD, URL, token)
    e = present(app, token, proof)
    assert state(e) == "55000", describe(e)
    assert "shared_preload_libraries" in said(e), said(e)
    assert not leaks(e, token, proof)
    e = error(app, "SELECT jwt_rls.authenticate(%s)", (token,))
    assert state(e) == "28000", describe(e)
    assert "dpop" in said(e)
    assert claim(app) is None


# --- PostgREST's pre-request hook ----------------------------------------------------

BASE = "https://api.example.com"


def pre_request(conn, authorization=None, proof=None, method=METHOD, path="/invoices"):
    """One PostgREST-style request: the settings PostgREST sets, then its
    db-pre-request hook, then what the request sees (tenant claim and
    invoice rows); the psycopg.Error when the hook refuses."""
    headers = {}
    if authorization is not None:
        headers["authorization"] = authorization
    if proof is not None:
        headers["dpop"] = proof
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('request.headers', %s, true), set_config('request.method', %s, true),"
                         " set_config('request.path', %s, true)", (json.dumps(headers), method, path))
            conn.execute("SELECT jwt_rls.postgrest_pre_request()")
            return claim(conn), count(conn)
    except psycopg.Error as e:
        return e


@pytest.fixture
def rest(dpop):
    """The module's database with jwt_rls.dpop_base_url set, as an
    administrator configures it for PostgREST (reset after)."""
    with dpop.admin() as admin:
        admin.execute(f"ALTER DATABASE postgres SET jwt_rls.dpop_base_url = '{BASE}/'")
    try:
        with dpop.app() as conn:
            yield conn
    finally:
        with dpop.admin() as admin:
            admin.execute("ALTER DATABASE postgres RESET jwt_rls.dpop_base_url")


def test_pre_request_binds_a_dpop_scheme_token_with_its_dpop_header_once(dpop, rest):
    token = dpop.token()
    proof = dpop.key.proof("GET", BASE + "/invoices", token)
    assert pre_request(rest, "DPoP " + token, proof) == (str(TENANT_A), ROWS[TENANT_A])
    e = pre_request(rest, "DPoP " + token, proof)
    assert isinstance(e, psycopg.Error) and e.sqlstate == "28000", e
    assert "used before" in said(e) and not leaks(e, token, proof)


def test_pre_request_checks_the_proof_against_postgrest_method_and_path(dpop, rest):
    token = dpop.token()
    for method, path in [("POST", "/invoices"), ("GET", "/other"), ("GET", "/invoices/extra")]:
        proof = dpop.key.proof("GET", BASE + "/invoices", token)
        e = pre_request(rest, "DPoP " + token, proof, method=method, path=path)
        assert isinstance(e, psycopg.Error) and e.sqlstate == "28000", (method, path, e)
        assert not leaks(e, token, proof)


def test_pre_request_refuses_a_dpop_bound_token_as_bearer_and_dpop_without_its_header(dpop, rest):
    token = dpop.token()
    e = pre_request(rest, "Bearer " + token)
    assert isinstance(e, psycopg.Error) and e.sqlstate == "28000" and "dpop" in said(e), e
    e = pre_request(rest, "DPoP " + token)
    assert isinstance(e, psycopg.Error) and e.sqlstate == "28000" and "dpop" in said(e), e
    assert not leaks(e, token)
    # A plain token as Bearer still binds; no header binds nothing.
    assert pre_request(rest, "Bearer " + dpop.rs.token(TENANT_B)) == (str(TENANT_B), ROWS[TENANT_B])
    assert pre_request(rest) == (None, 0)


def test_pre_request_without_dpop_base_url_refuses_dpop_with_55000(dpop, conn):
    token = dpop.token()
    proof = dpop.key.proof("GET", BASE + "/invoices", token)
    e = pre_request(conn, "DPoP " + token, proof)
    assert isinstance(e, psycopg.Error) and e.sqlstate == "55000", e
    assert "dpop_base_url" in said(e) and not leaks(e, token, proof)


# --- sessions bound to a DPoP key (RFC 9449 section 5) ------------------------------

TOKEN_URL = "https://auth.example.com/token"


@pytest.fixture(scope="module")
def login(dpop):
    """A login service: EXECUTE on the session functions (with and without a
    DPoP key) and on verify_dpop_proof(), nothing else."""
    with dpop.admin() as admin:
        admin.execute("DROP ROLE IF EXISTS dpop_login")
        admin.execute("CREATE ROLE dpop_login LOGIN")
        admin.execute("GRANT USAGE ON SCHEMA jwt_rls TO dpop_login")
        admin.execute("GRANT EXECUTE ON FUNCTION jwt_rls.start_session(text, jsonb), "
                      "jwt_rls.start_session(text, jsonb, text), jwt_rls.verify_dpop_proof(text, text, text), "
                      "jwt_rls.rotate_refresh_token(text), jwt_rls.rotate_refresh_token(text, text, text, text) "
                      "TO dpop_login")
        admin.execute("GRANT EXECUTE ON PROCEDURE jwt_rls.refresh(text, text, text, uuid), "
                      "jwt_rls.refresh_with_proof(text, text, text, text, text, text, uuid) TO dpop_login")
        if not admin.execute("SELECT count(*) FROM jwt_rls.signing_keys").fetchone()[0]:
            admin.execute("SELECT jwt_rls.generate_signing_key('dpop-session-es256', 'ES256')")
    with psycopg.connect(dpop.cluster.dsn(user="dpop_login"), autocommit=True) as conn:
        yield conn


def login_with(login, key, sub="dpop-user"):
    """The login request's proof (no access token yet) names the key; the
    session is bound to it. Returns (access, refresh, session id)."""
    jkt = login.execute("SELECT jwt_rls.verify_dpop_proof(%s, 'POST', %s)",
                        (key.proof("POST", TOKEN_URL), TOKEN_URL)).fetchone()[0]
    assert jkt == key.jkt
    return login.execute("SELECT * FROM jwt_rls.start_session(%s, %s::jsonb, %s)",
                         (sub, json.dumps({"tenant_id": str(TENANT_A), "aud": AUDIENCE}), jkt)).fetchone()


def refresh_with(login, refresh_token, proof):
    """CALL refresh_with_proof: the new (access, refresh, sid), or the error."""
    try:
        return login.execute("CALL jwt_rls.refresh_with_proof(%s, %s, 'POST', %s)",
                             (refresh_token, proof, TOKEN_URL)).fetchone()
    except psycopg.Error as e:
        return e


def test_a_session_bound_to_a_dpop_key_issues_access_tokens_that_need_its_proofs(dpop, conn, login):
    access, refresh_token, sid = login_with(login, dpop.key)
    assert payload(access)["cnf"] == {"jkt": dpop.key.jkt}
    assert payload(access)["sid"] == str(sid)
    e = error(conn, "SELECT jwt_rls.authenticate(%s)", (access,))
    assert state(e) == "28000" and "dpop" in said(e), describe(e)
    assert present(conn, access, dpop.key.proof(METHOD, URL, access)) is None
    e = present(conn, access, dpop.other.proof(METHOD, URL, access))
    assert state(e) == "28000", describe(e)


def test_a_dpop_bound_refresh_token_refreshes_only_with_a_proof_by_its_key(dpop, conn, login):
    access, refresh_token, sid = login_with(login, dpop.key)
    # Stolen, without the key: no proof, another client's proof. Each is
    # refused and changes nothing (no reuse is recorded, nothing revoked).
    e = refresh_with(login, refresh_token, dpop.other.proof("POST", TOKEN_URL))
    assert isinstance(e, psycopg.Error) and e.sqlstate == "28000", e
    assert not leaks(e, refresh_token)
    try:
        login.execute("CALL jwt_rls.refresh(%s)", (refresh_token,))
        raise AssertionError("refreshed a DPoP-bound session without a proof")
    except psycopg.Error as e:
        assert e.sqlstate == "28000" and "dpop" in said(e), e
    # The key holder refreshes: a new pair, still bound to the key.
    new_access, new_refresh, new_sid = refresh_with(login, refresh_token, dpop.key.proof("POST", TOKEN_URL))
    assert new_sid == sid and payload(new_access)["cnf"] == {"jkt": dpop.key.jkt}
    assert present(conn, new_access, dpop.key.proof(METHOD, URL, new_access)) is None
    # The old refresh token, now used, presented by a thief without the key:
    # refused without revoking the owner's session.
    e = refresh_with(login, refresh_token, dpop.other.proof("POST", TOKEN_URL))
    assert isinstance(e, psycopg.Error) and e.sqlstate == "28000", e
    again = refresh_with(login, new_refresh, dpop.key.proof("POST", TOKEN_URL))
    assert not isinstance(again, psycopg.Error), again
    # Reuse by the key holder still revokes the family.
    e = refresh_with(login, new_refresh, dpop.key.proof("POST", TOKEN_URL))
    assert isinstance(e, psycopg.Error) and e.sqlstate == "28000" and "already used" in said(e), e
    assert present(conn, again[0], dpop.key.proof(METHOD, URL, again[0])) is not None


def test_a_refresh_proof_must_be_new_and_for_the_token_request(dpop, login):
    access, refresh_token, sid = login_with(login, dpop.key)
    proof = dpop.key.proof("POST", TOKEN_URL)
    first = refresh_with(login, refresh_token, proof)
    assert not isinstance(first, psycopg.Error), first
    e = refresh_with(login, first[1], proof)  # the same proof again
    assert isinstance(e, psycopg.Error) and e.sqlstate == "28000" and "used before" in said(e), e
    e = refresh_with(login, first[1], dpop.key.proof("POST", "https://auth.example.com/other"))
    assert isinstance(e, psycopg.Error) and e.sqlstate == "28000", e
    # Neither refusal used the refresh token up.
    assert not isinstance(refresh_with(login, first[1], dpop.key.proof("POST", TOKEN_URL)), psycopg.Error)


def test_a_session_without_a_key_refuses_a_proof_and_keeps_plain_refresh(dpop, login):
    access, refresh_token, sid = login.execute(
        "SELECT * FROM jwt_rls.start_session('plain-user', %s::jsonb)",
        (json.dumps({"tenant_id": str(TENANT_A), "aud": AUDIENCE}),)).fetchone()
    assert "cnf" not in payload(access)
    e = refresh_with(login, refresh_token, dpop.key.proof("POST", TOKEN_URL))
    assert isinstance(e, psycopg.Error) and e.sqlstate == "28000" and "not bound" in said(e), e
    assert login.execute("CALL jwt_rls.refresh(%s)", (refresh_token,)).fetchone()[1]


def test_session_dpop_functions_refuse_bad_input_and_public(dpop):
    with dpop.admin() as admin:
        e = error(admin, "SELECT jwt_rls.start_session('u', '{}'::jsonb, 'not-a-thumbprint')")
        assert state(e) == "22023", describe(e)
        e = error(admin, "SELECT jwt_rls.verify_dpop_proof(NULL, 'POST', 'https://a.example/')")
        assert state(e) == "22004", describe(e)
    with dpop.app() as app:
        for sql in ["SELECT jwt_rls.verify_dpop_proof('x', 'POST', 'https://a.example/')",
                    "SELECT jwt_rls.start_session('u', '{}'::jsonb, NULL)",
                    "SELECT jwt_rls.rotate_refresh_token('x', NULL, NULL, NULL)",
                    "SELECT jwt_rls.session_cnf(NULL)",
                    "CALL jwt_rls.refresh_with_proof('x', 'p', 'POST', 'https://a.example/')"]:
            e = error(app, sql)
            assert state(e) == "42501", (sql, describe(e))


# --- what makes a token DPoP-bound, and how long a proof covers it -------------------

def test_only_a_cnf_object_with_jkt_binds_a_token_to_a_key(dpop, conn):
    """cnf.jkt is read from the cnf object itself: a top-level claim named
    "cnf.jkt" does not unbind a token, a cnf that is not an object or a jkt
    that is not a non-empty string binds it to a key no proof matches, and
    a cnf with another confirmation method only (a certificate's x5t#S256,
    which the database cannot check) leaves it a bearer token."""
    bound = dpop.token(**{"cnf.jkt": None})
    assert state(error(conn, "SELECT jwt_rls.authenticate(%s)", (bound,))) == "28000"
    assert present(conn, bound, dpop.key.proof(METHOD, URL, bound)) is None
    for cnf in ["just-a-string", {"jkt": ""}, {"jkt": 42}]:
        token = dpop.token(cnf=cnf)
        assert state(error(conn, "SELECT jwt_rls.authenticate(%s)", (token,))) == "28000", cnf
        assert state(present(conn, token, dpop.key.proof(METHOD, URL, token))) == "28000", cnf
    certificate_bound = dpop.token(cnf={"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"})
    assert error(conn, "SELECT jwt_rls.authenticate(%s)", (certificate_bound,)) is None


def test_a_proof_covers_its_token_only_until_its_transaction_commits_even_inside_a_procedure(dpop):
    """A procedure that binds a token with its proof, keeps it for the
    session and commits: from the next transaction in the same CALL the
    token is refused (the mark ended with the transaction)."""
    token = dpop.token()
    with dpop.admin() as admin:
        admin.execute("""CREATE OR REPLACE PROCEDURE public.dpop_then_commit(tok text, proof text, url text,
                                                                       INOUT before text DEFAULT NULL,
                                                                       INOUT after text DEFAULT NULL)
            LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM jwt_rls.authenticate(tok, proof, 'GET', url);
                PERFORM set_config('jwt_rls.token', tok, false);
                before := jwt_rls.jwt_claim('tenant_id');
                COMMIT;
                BEGIN
                    after := jwt_rls.jwt_claim('tenant_id');
                EXCEPTION WHEN invalid_authorization_specification THEN
                    after := 'refused: ' || SQLERRM;
                END;
            END $$""")
        admin.execute("GRANT EXECUTE ON PROCEDURE public.dpop_then_commit(text, text, text, text, text) TO app")
    with dpop.app() as conn:
        before, after = conn.execute("CALL public.dpop_then_commit(%s, %s, %s)",
                                     (token, dpop.key.proof(METHOD, URL, token), URL)).fetchone()
        assert before == str(TENANT_A)
        assert after.startswith("refused: ") and "dpop" in after, after


# Last in the module: it waits until the server has recorded proofs for a minute.
def test_iat_within_max_age_and_leeway_is_accepted_and_beyond_them_refused(dpop, conn):
    """iat up to dpop_max_age (60 s) in the past and up to 10 s
    in the future; margins of several seconds either side (once the
    server has recorded proofs for long enough that a 50 s old one cannot
    predate its start)."""
    wait_until_proofs_accepted(dpop.cluster.dsn(), age=50)
    now = int(time.time())
    results = {}
    for label, iat in {"50 s old": now - 50, "5 s ahead": now + 5, "75 s old": now - 75,
                       "25 s ahead": now + 25}.items():
        token = dpop.token()
        results[label] = state(present(conn, token, dpop.key.proof(METHOD, URL, token, iat=iat)))
    assert results == {"50 s old": None, "5 s ahead": None, "75 s old": "28000", "25 s ahead": "28000"}
