"""The verification cache shared by every backend, and the counters
(jwt_rls in shared_preload_libraries): a token verified by one backend is a
hit in all; a key or policy change refuses the shared entry everywhere; the
cache stays within its bound; concurrent first uses are safe; a backend
killed with kill -9 wedges nothing; the counters add up."""

import hashlib
import json
import os
import signal
import threading
import time
import uuid

import psycopg
import pytest

from support import b64url_decode, backend_pid, error
from support.pgcluster import Cluster, wait_for
from support.schema import SCHEMA, TENANT_A
from support.tokens import Signer

SLOTS = 64  # four sets of 16 slots
WAYS = 16


@pytest.fixture(scope="module")
def shared():
    c = Cluster(conf=["shared_preload_libraries = 'jwt_rls'", f"jwt_rls.shared_cache_entries = {SLOTS}",
                      "restart_after_crash = on"]).start()
    signers = {alg: Signer(f"shared-{alg.lower()}", alg) for alg in ("HS256", "RS256", "ES256")}
    try:
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute(SCHEMA)
            with admin.cursor() as cur:
                for s in signers.values():
                    s.install(cur)
            admin.execute("GRANT EXECUTE ON FUNCTION jwt_rls.stats(), jwt_rls.reset_stats() TO app")
        yield c, signers
    finally:
        c.remove()


def connect(c, **kw):
    return psycopg.connect(c.dsn(user="app", **kw), autocommit=True)


def stats(conn):
    return {name: value for name, value, _ in conn.execute("SELECT * FROM jwt_rls.stats()")}


def bind(conn, token):
    e = error(conn, "SELECT jwt_rls.authenticate(%s)", (token,))
    return None if e is None else e.sqlstate


def test_a_token_verified_in_one_backend_is_a_hit_in_another(shared):
    c, signers = shared
    for alg, signer in signers.items():
        token = signer.token(TENANT_A)
        with connect(c) as one, connect(c) as two:
            assert backend_pid(one) != backend_pid(two)
            before = stats(one)
            assert bind(one, token) is None
            assert bind(two, token) is None
            after = stats(two)
        assert after["verifications"] - before["verifications"] == 1, alg
        assert after["cache_hits_shared"] - before["cache_hits_shared"] == 1, alg
    assert {s for _, _, s in psycopg.connect(c.dsn(), autocommit=True).execute("SELECT * FROM jwt_rls.stats()")} \
        == {"server"}


def test_a_key_change_refuses_the_shared_entry_in_every_backend(shared):
    c, signers = shared
    rs = signers["RS256"]
    token = rs.token(TENANT_A)
    with connect(c) as one:
        assert bind(one, token) is None
    with psycopg.connect(c.dsn(), autocommit=True) as admin:
        admin.execute("SELECT jwt_rls.disable_key(%s)", (rs.kid,))
        try:
            with connect(c) as two:
                assert bind(two, token) == "28000"
        finally:
            admin.execute("SELECT jwt_rls.enable_key(%s)", (rs.kid,))
        with connect(c) as three:
            assert bind(three, token) is None
        # The same kid with other material: the shared entry (made with the
        # old key) must not vouch for the token under the new one.
        replacement = Signer(rs.kid, "RS256")
        admin.execute("SELECT jwt_rls.remove_key(%s)", (rs.kid,))
        with admin.cursor() as cur:
            replacement.install(cur)
        try:
            with connect(c) as four:
                before = stats(four)
                assert bind(four, token) == "28000"
                assert stats(four)["refused_signature"] - before["refused_signature"] == 1
                assert bind(four, replacement.token(TENANT_A)) is None
        finally:
            admin.execute("SELECT jwt_rls.remove_key(%s)", (rs.kid,))
            with admin.cursor() as cur:
                rs.install(cur)


def test_a_token_found_in_the_shared_cache_is_kept_locally_from_its_second_time(shared):
    """A backend copies a token another one verified into its own cache
    only when it finds it in the shared cache a second time: a pooled server
    connection that sees a token once in a while does not pay an insert and
    an eviction for it, and one that binds it again and again finds it in
    its own cache from the third bind on."""
    c, signers = shared
    token = signers["ES256"].token(TENANT_A)
    with connect(c) as one, connect(c) as two:
        before = stats(one)
        assert bind(one, token) is None
        for _ in range(4):
            assert bind(two, token) is None
        after = stats(two)
    assert after["verifications"] - before["verifications"] == 1
    assert after["cache_hits_shared"] - before["cache_hits_shared"] == 2
    assert after["cache_hits_local"] - before["cache_hits_local"] == 2


def doorkeeper_place(token):
    """Where a backend remembers a token it found in the shared cache: the
    last 8 bytes of its SHA-256, little-endian, modulo 512 places."""
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[24:], "little") % 512


def test_two_tokens_remembered_at_the_same_place_are_both_kept_locally(shared):
    """Two tokens a connection binds in turn whose digests pick the same
    place in what it remembers do not push each other out: both are kept in
    its own cache at their second shared hit."""
    c, signers = shared
    es = signers["ES256"]
    by_place = {}
    while True:
        token = es.token(TENANT_A, sub=str(uuid.uuid4()))
        other = by_place.setdefault(doorkeeper_place(token), token)
        if other != token:
            a, b = other, token
            break
    with connect(c) as one, connect(c) as two:
        before = stats(one)
        assert bind(one, a) is None and bind(one, b) is None
        for _ in range(3):
            assert bind(two, a) is None and bind(two, b) is None
        after = stats(two)
    assert after["verifications"] - before["verifications"] == 2
    assert after["cache_hits_shared"] - before["cache_hits_shared"] == 4
    assert after["cache_hits_local"] - before["cache_hits_local"] == 2


def test_another_policy_does_not_use_the_shared_entry(shared):
    """Settings differ per database; an entry verified under one policy is
    not an answer under another, even with the same key."""
    c, signers = shared
    hs = signers["HS256"]
    token = hs.token(TENANT_A)
    with psycopg.connect(c.dsn(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS other_policy")
        admin.execute("CREATE DATABASE other_policy TEMPLATE template0")
        admin.execute("ALTER DATABASE other_policy SET jwt_rls.audience = 'another-service'")
    with psycopg.connect(c.dsn(dbname="other_policy"), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION jwt_rls")
        admin.execute("GRANT USAGE ON SCHEMA jwt_rls TO app")
        with admin.cursor() as cur:
            hs.install(cur)
    with connect(c) as one:
        assert bind(one, token) is None
    with connect(c, dbname="other_policy") as two:
        assert bind(two, token) == "28000"


def test_a_token_without_kid_is_not_shared(shared):
    """Verified with the only key of one database, a token without kid must
    still be refused in a database with two active keys (security review)."""
    c, signers = shared
    hs = signers["HS256"]
    with psycopg.connect(c.dsn(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS one_key")
        admin.execute("CREATE DATABASE one_key TEMPLATE template0")
        # The same policy as the main database, so only the keys differ.
        for name, value in admin.execute("SELECT s.name, s.value FROM pg_db_role_setting r, "
                                         "LATERAL (SELECT split_part(c, '=', 1) AS name, "
                                         "substr(c, strpos(c, '=') + 1) AS value FROM unnest(r.setconfig) c) s "
                                         "WHERE r.setdatabase = (SELECT oid FROM pg_database WHERE datname = 'postgres')"
                                         ).fetchall():
            admin.execute(f"ALTER DATABASE one_key SET {name} = '{value}'")
    with psycopg.connect(c.dsn(dbname="one_key"), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION jwt_rls")
        admin.execute("GRANT USAGE ON SCHEMA jwt_rls TO app")
        with admin.cursor() as cur:
            hs.install(cur)
    token = hs.token(TENANT_A, kid=False)
    with connect(c, dbname="one_key") as one:
        assert bind(one, token) is None
    with connect(c) as many:  # the main database holds three active keys
        assert bind(many, token) == "28000"


def test_a_full_shared_cache_evicts_and_stays_within_its_bound(shared):
    c, signers = shared
    hs = signers["HS256"]
    with connect(c) as conn:
        for i in range(SLOTS * 5):
            assert bind(conn, hs.token(TENANT_A, sub=f"user-{i}")) is None
        s = stats(conn)
    assert s["shared_cache_slots"] == SLOTS
    assert 0 < s["shared_cache_used"] <= SLOTS
    assert s["shared_cache_bytes"] < SLOTS * 2500


def payload(token):
    return json.loads(b64url_decode(token.split(".")[1]))


def claims_of(conn, token, how):
    """The claims jsonb authenticate() returns, or jwt_claims() after SET
    LOCAL, in a transaction of its own."""
    with conn.transaction():
        if how == "authenticate":
            return conn.execute("SELECT jwt_rls.authenticate(%s)", (token,)).fetchone()[0]
        conn.execute("SELECT set_config('jwt_rls.token', %s, true)", (token,))
        return conn.execute("SELECT jwt_rls.jwt_claims()").fetchone()[0]


def test_the_claims_jsonb_is_parsed_once_per_token_for_the_whole_server(shared):
    """authenticate() and jwt_claims() return the claims as jsonb, which
    costs a parse of the payload: it is kept with the verification, so
    binding the token again in the same backend, or in another one (from
    the shared cache), copies it. A payload whose jsonb does not fit in a
    shared slot is parsed again elsewhere, with the same claims."""
    c, signers = shared
    for alg, signer in signers.items():
        for how in ("authenticate", "jwt_claims"):
            token = signer.token(TENANT_A, big=12345678901234567890, nested={"a": [1, 2.5, None, "é"]})
            with connect(c) as one, connect(c) as two:
                before = stats(one)
                assert claims_of(one, token, how) == payload(token)
                assert stats(one)["claims_parsed"] - before["claims_parsed"] == 1, (alg, how)
                assert claims_of(one, token, how) == payload(token)
                assert claims_of(two, token, how) == payload(token)
                assert claims_of(two, token, "jwt_claims" if how == "authenticate" else how) == payload(token)
                after = stats(two)
            assert after["claims_parsed"] - before["claims_parsed"] == 1, (alg, how)
            assert after["verifications"] - before["verifications"] == 1, (alg, how)
    big = signers["ES256"].token(TENANT_A, filler="x" * 1500)
    with connect(c) as one, connect(c) as two:
        before = stats(one)
        assert claims_of(one, big, "authenticate") == payload(big)
        for _ in range(3):
            assert claims_of(two, big, "authenticate") == payload(big)
        after = stats(two)
    assert after["cache_hits_shared"] - before["cache_hits_shared"] == 1, "the payload itself is shared"
    assert after["claims_parsed"] - before["claims_parsed"] == 2, "its jsonb does not fit beside it: once a backend"


def test_a_backend_parses_each_tokens_claims_once_without_the_shared_cache(cluster, db, signers):
    """Without shared_preload_libraries the jsonb is kept in the backend's
    own cache: tokens bound in turn on one connection (as a pooled server
    connection sees them) are parsed once each, not at every switch."""
    es = signers["ES256"]
    tokens = [es.token(TENANT_A, n=i) for i in range(3)]
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:  # superuser: stats() is not for PUBLIC
        assert {s for _, _, s in conn.execute("SELECT * FROM jwt_rls.stats()")} == {"backend"}
        before = stats(conn)
        for _ in range(3):
            for token in tokens:
                assert claims_of(conn, token, "authenticate") == payload(token)
                assert claims_of(conn, token, "jwt_claims") == payload(token)
        assert stats(conn)["claims_parsed"] - before["claims_parsed"] == len(tokens)


def first_set(token):
    """The first of the two sets the shared cache may keep `token` in: the
    first 8 bytes of its SHA-256, little-endian, modulo the number of sets."""
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "little") % (SLOTS // WAYS)


def test_tokens_crowding_one_set_all_stay_cached(shared):
    """More tokens than a set holds, all with the same first set: each can
    also live in its second set, so none is evicted and every one is a
    shared hit in another backend, verified once. (With one set per token,
    the last four would evict four others.)"""
    c, signers = shared
    hs = signers["HS256"]
    crowd = []
    while len(crowd) < WAYS + 4:
        token = hs.token(TENANT_A, sub=f"crowd-{uuid.uuid4()}")
        if first_set(token) == 0:
            crowd.append(token)
    with connect(c) as one, connect(c) as two:
        before = stats(one)
        for token in crowd:
            assert bind(one, token) is None
        for token in crowd:
            assert bind(two, token) is None
        after = stats(two)
    assert after["verifications"] - before["verifications"] == len(crowd)
    assert after["cache_hits_shared"] - before["cache_hits_shared"] == len(crowd)


def test_concurrent_first_uses_of_one_token(shared):
    c, signers = shared
    token = signers["ES256"].token(TENANT_A)
    conns = [connect(c) for _ in range(8)]
    try:
        before = stats(conns[0])
        start = threading.Barrier(len(conns))
        results = []

        def run(conn):
            start.wait()
            results.append(bind(conn, token))

        threads = [threading.Thread(target=run, args=(conn,)) for conn in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [None] * len(conns)
        middle = stats(conns[0])
        assert 1 <= middle["verifications"] - before["verifications"] <= len(conns)
        with connect(c) as late:
            assert bind(late, token) is None
            assert stats(late)["verifications"] == middle["verifications"], "a later backend finds it shared"
    finally:
        for conn in conns:
            conn.close()


def test_a_backend_killed_with_kill_9_wedges_nothing(shared):
    """Writers never hold a lock others wait for (a seqlock per slot); a
    backend killed while writing makes the postmaster reinitialise shared
    memory. Either way the others carry on."""
    c, signers = shared
    hs = signers["HS256"]
    stop = threading.Event()
    victim = connect(c)
    pid = backend_pid(victim)

    def churn():
        i = 0
        while not stop.is_set():
            try:
                victim.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A, sub=f"churn-{i}"),))
            except psycopg.Error:
                return
            i += 1

    worker = threading.Thread(target=churn)
    worker.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    stop.set()
    worker.join(timeout=10)
    victim.close()

    def serving():
        try:
            with connect(c, connect_timeout=2) as conn:
                return bind(conn, hs.token(TENANT_A)) is None
        except psycopg.OperationalError:
            return False

    wait_for(serving, timeout=30)
    # And many backends keep binding, sharing, in bounded time.
    started = time.monotonic()
    token = hs.token(TENANT_A, sub=str(uuid.uuid4()))
    for _ in range(4):
        with connect(c) as conn:
            assert bind(conn, token) is None
    assert time.monotonic() - started < 10


def test_counters_add_up(shared):
    c, signers = shared
    hs, rs = signers["HS256"], signers["RS256"]
    with psycopg.connect(c.dsn(), autocommit=True) as admin:
        admin.execute("SELECT jwt_rls.revoke_jti('revoked-jti', now() + interval '1 hour')")
    good = [hs.token(TENANT_A, sub=f"good-{i}-{uuid.uuid4()}") for i in range(3)]
    bad = {
        "refused_expired": hs.token(TENANT_A, ttl=-60),
        "refused_signature": rs.token(TENANT_A)[:-4] + "AAAA",
        "refused_issuer": hs.token(TENANT_A, iss="https://evil.example"),
        "refused_audience": hs.token(TENANT_A, aud="another-service"),
        "refused_unknown_kid": Signer("nobody", "HS256").token(TENANT_A),
        "refused_malformed": "not-a-token",
        "refused_revoked": hs.token(TENANT_A, jti="revoked-jti"),
    }
    with connect(c) as conn:
        conn.execute("SELECT jwt_rls.reset_stats()")
        for t in good:
            assert bind(conn, t) is None
        assert bind(conn, good[0]) is None  # a local hit
        for name, t in bad.items():
            assert bind(conn, t) is not None, name
        s = stats(conn)
    assert s["binds"] == len(good) + 1 + len(bad)
    assert s["cache_hits_local"] == 1
    assert s["refused"] == len(bad)
    for name in bad:
        assert s[name] == 1, (name, s)
    # Every token not found in a cache is verified from scratch once,
    # whether it then passes or not.
    assert s["verifications"] == len(good) + len(bad), s
    assert s["cache_hits_shared"] == 0
