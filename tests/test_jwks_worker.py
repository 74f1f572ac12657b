"""Keys that follow the provider: the JWKS refresh worker (jwt_rls in
shared_preload_libraries, jwt_rls.jwks_database set) against a real HTTPS
server on 127.0.0.1 whose CA the cluster trusts: keys arrive without SQL,
a rotation adds the new key and retires the old one after the grace
period, a token with an unknown kid makes the worker look at once, and a
server that is down, slow, or serves garbage or a huge body never removes a
key that still verifies, with the reason in jwt_rls.jwks_sources."""

import time

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from support import b64url, error
from support.jwks_server import JwksServer
from support.pgcluster import Cluster, wait_for
from support.schema import TENANT_A
from support.tokens import AUDIENCE, Signer

GRACE = 3


def jwk_of(signer):
    n = signer.key.public_key().public_numbers()
    size = lambda v: (v.bit_length() + 7) // 8  # noqa: E731
    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": signer.kid,
            "n": b64url(n.n.to_bytes(size(n.n), "big")), "e": b64url(n.e.to_bytes(size(n.e), "big"))}


SIGNERS = []  # every provider key made here, to sign with the one a test finds stored


def rs256(kid):
    s = Signer(kid, "RS256")
    s.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    SIGNERS.append(s)
    return s


@pytest.fixture(scope="module")
def provider():
    server = JwksServer()
    first = rs256("provider-1")
    server.keys = [jwk_of(first)]
    c = Cluster(conf=["shared_preload_libraries = 'jwt_rls'", "jwt_rls.jwks_database = 'postgres'",
                      f"jwt_rls.jwks_ca_file = '{server.ca_file}'", "jwt_rls.jwks_refresh_interval = 2",
                      f"jwt_rls.jwks_retire_after = {GRACE}", "jwt_rls.jwks_timeout = 2",
                      "jwt_rls.jwks_unknown_kid_interval = 10"]).start()
    try:
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute("CREATE EXTENSION jwt_rls")
            admin.execute(f"ALTER DATABASE postgres SET jwt_rls.issuer = '{server.issuer}'")
            admin.execute(f"ALTER DATABASE postgres SET jwt_rls.audience = '{AUDIENCE}'")
            admin.execute("CREATE ROLE app LOGIN")
            admin.execute("GRANT USAGE ON SCHEMA jwt_rls TO app")
            admin.execute("INSERT INTO jwt_rls.jwks_sources (issuer) VALUES (%s)", (server.issuer,))
        yield c, server, first
    finally:
        c.remove()
        server.stop()


def admin(c):
    return psycopg.connect(c.dsn(), autocommit=True)


def key_state(c, kid):
    with admin(c) as conn:
        return conn.execute("SELECT enabled, source_state FROM jwt_rls.keys WHERE kid = %s", (kid,)).fetchone()


def status(c):
    with admin(c) as conn:
        return conn.execute("SELECT last_success IS NOT NULL, last_error, failures, keys_listed "
                            "FROM jwt_rls.jwks_sources").fetchone()


def binds(c, signer, issuer):
    with psycopg.connect(c.dsn(user="app"), autocommit=True) as app:
        e = error(app, "SELECT jwt_rls.authenticate(%s)", (signer.token(TENANT_A, iss=issuer),))
        return None if e is None else e.sqlstate


def test_keys_arrive_without_anyone_running_sql(provider):
    c, server, first = provider
    wait_for(lambda: key_state(c, first.kid) == (True, "listed"), timeout=15)
    assert binds(c, first, server.issuer) is None
    ok, last_error, failures, listed = status(c)
    assert ok and last_error is None and failures == 0 and listed == 1
    with admin(c) as conn:
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jwt_rls JWKS refresh'"
                            ).fetchone()[0] == 1


@pytest.mark.parametrize("mode, reason", [("garbage", "json"), ("huge", "large"), ("slow", "no complete answer within"),
                                          ("down", "connect")])
def test_a_failed_fetch_keeps_the_keys_and_says_why(provider, mode, reason):
    c, server, first = provider
    wait_for(lambda: key_state(c, first.kid) == (True, "listed"), timeout=15)
    before = status(c)[2]
    if mode == "down":
        server.stop()  # killed: nothing listens on its port
    else:
        server.slow_seconds = 5
        server.mode = mode
    try:
        wait_for(lambda: status(c)[2] > before, timeout=20)
        last_error = status(c)[1]
        assert reason in last_error.lower(), last_error
        assert key_state(c, first.kid) == (True, "listed")
        assert binds(c, first, server.issuer) is None
    finally:
        server.mode = "ok"
        if mode == "down":
            server.start()
    wait_for(lambda: status(c)[1] is None, timeout=20)


def test_rotation_adds_the_new_key_and_retires_the_old_after_the_grace_period(provider):
    c, server, first = provider
    wait_for(lambda: key_state(c, first.kid) == (True, "listed"), timeout=15)
    second = rs256("provider-2")
    server.keys = [jwk_of(first), jwk_of(second)]
    wait_for(lambda: key_state(c, second.kid) == (True, "listed"), timeout=15)
    server.keys = [jwk_of(second)]
    wait_for(lambda: key_state(c, first.kid) == (True, "missing"), timeout=15)
    assert binds(c, first, server.issuer) is None, "still verifies during the grace period"
    wait_for(lambda: key_state(c, first.kid) == (False, "retired"), timeout=GRACE + 15)
    assert binds(c, first, server.issuer) == "28000"
    assert binds(c, second, server.issuer) is None
    # A key the administrator added by hand is never touched.
    manual = rs256("by-hand")
    with admin(c) as conn:
        with conn.cursor() as cur:
            manual.install(cur)
    time.sleep(5)
    assert key_state(c, manual.kid) == (True, None)


def test_an_unknown_kid_makes_the_worker_look_now(provider):
    c, server, first = provider
    with admin(c) as conn:
        conn.execute("ALTER SYSTEM SET jwt_rls.jwks_refresh_interval = 3600")
        conn.execute("SELECT pg_reload_conf()")
    try:
        time.sleep(12)  # past the last scheduled fetch and the unknown-kid interval
        third = rs256("provider-3")
        server.keys = server.keys + [jwk_of(third)]
        assert binds(c, third, server.issuer) == "28000", "not known yet"
        wait_for(lambda: key_state(c, third.kid) == (True, "listed"), timeout=8)
        assert binds(c, third, server.issuer) is None
        # Made-up kids do not make it fetch again and again.
        requests = server.requests
        for i in range(20):
            assert binds(c, rs256(f"made-up-{i}"), server.issuer) == "28000"
        time.sleep(2)
        assert server.requests - requests <= 2, "at most one fetch (discovery + JWKS) per interval"
    finally:
        with admin(c) as conn:
            conn.execute("ALTER SYSTEM RESET jwt_rls.jwks_refresh_interval")
            conn.execute("SELECT pg_reload_conf()")


def test_a_fetched_key_verifies_only_its_issuers_tokens(provider):
    """Even when the policy accepts several issuers, a key the worker fetched
    from one issuer never vouches for another's tokens (security review)."""
    c, server, _ = provider
    with admin(c) as conn:
        kid = conn.execute("SELECT kid FROM jwt_rls.keys WHERE enabled AND source_id IS NOT NULL LIMIT 1").fetchone()[0]
        conn.execute(f"ALTER DATABASE postgres SET jwt_rls.issuer = '{server.issuer},https://other.example'")
    try:
        signer = next(s for s in SIGNERS if s.kid == kid)
        assert binds(c, signer, server.issuer) is None
        assert binds(c, signer, "https://other.example") == "28000"
    finally:
        with admin(c) as conn:
            conn.execute(f"ALTER DATABASE postgres SET jwt_rls.issuer = '{server.issuer}'")


def test_a_source_given_another_issuer_changes_open_connections_keys(provider):
    """A fetched key is bound to its source's issuer: when the source's
    issuer changes, a connection already open stops accepting the old
    issuer's tokens with that key from its next statement (the keys are
    reloaded at commit, as for a change to the key table), and accepts
    them again once the issuer is put back."""
    c, server, first = provider
    wait_for(lambda: key_state(c, first.kid) is not None, timeout=15)
    with admin(c) as conn:
        kid = conn.execute("SELECT kid FROM jwt_rls.keys WHERE enabled AND source_id IS NOT NULL LIMIT 1").fetchone()[0]
    signer = next(s for s in SIGNERS if s.kid == kid)
    bind = "SELECT jwt_rls.authenticate(%s)"
    with psycopg.connect(c.dsn(user="app"), autocommit=True) as app:
        assert error(app, bind, (signer.token(TENANT_A, iss=server.issuer),)) is None
        with admin(c) as conn:
            conn.execute("UPDATE jwt_rls.jwks_sources SET issuer = 'https://moved.example' WHERE issuer = %s",
                         (server.issuer,))
        try:
            e = error(app, bind, (signer.token(TENANT_A, iss=server.issuer),))
            assert e is not None and e.sqlstate == "28000", "the key now vouches only for the moved issuer"
            assert e.diag.message_primary == "token issuer is not accepted", "refused for its issuer, not its key"
        finally:
            with admin(c) as conn:
                conn.execute("UPDATE jwt_rls.jwks_sources SET issuer = %s WHERE issuer = 'https://moved.example'",
                             (server.issuer,))
        assert error(app, bind, (signer.token(TENANT_A, iss=server.issuer),)) is None


def test_deleting_a_source_deletes_its_keys(provider):
    c, server, _ = provider
    with admin(c) as conn:
        assert conn.execute("SELECT count(*) FROM jwt_rls.keys WHERE source_id IS NOT NULL").fetchone()[0] > 0
        conn.execute("DELETE FROM jwt_rls.jwks_sources")
        assert conn.execute("SELECT count(*) FROM jwt_rls.keys WHERE source_id IS NOT NULL").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM jwt_rls.keys").fetchone()[0] == 1, "the key added by hand stays"


def test_no_worker_unless_a_database_is_named(cluster, db):
    assert db.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jwt_rls JWKS refresh'"
                      ).fetchone()[0] == 0
