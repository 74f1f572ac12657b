"""Tenant isolation through RLS, as the application role, with tokens signed
by PyJWT. Each test states the property from DESIGN.md it proves."""

import time
import uuid

import psycopg
import pytest

from support import claim, make_db, sqlstate
from support.schema import EVENTS, ROWS, TENANT_A, TENANT_B, count, tenants
from support.tokens import ALGS, AUDIENCE, ISSUER, Signer, handmade_hs256


@pytest.mark.parametrize("alg", ALGS)
def test_each_tenant_sees_only_its_rows(app, signers, alg):
    s = signers[alg]
    for tenant, expected in ROWS.items():
        with app.transaction():
            claims = app.execute("SELECT jwt_rls.authenticate(%s)", (s.token(tenant),)).fetchone()[0]
            assert claims["tenant_id"] == str(tenant)
            assert tenants(app) == {tenant}
            assert count(app) == expected


def test_set_local_binds_like_authenticate(app, hs):
    with app.transaction():
        app.execute("SELECT set_config('jwt_rls.token', %s, true)", (hs.token(TENANT_B),))
        assert tenants(app) == {TENANT_B}
    with app.transaction():
        app.execute(f"SET LOCAL jwt_rls.token = '{hs.token(TENANT_A)}'")
        assert tenants(app) == {TENANT_A}


def test_no_token_sees_no_rows(app):
    assert claim(app) is None
    assert count(app) == 0
    assert app.execute("SELECT jwt_rls.jwt_claims()").fetchone()[0] is None


def test_with_check_refuses_writes_into_another_tenant(app, hs):
    with app.transaction():
        app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),))
        app.execute("INSERT INTO invoices (tenant_id, amount) VALUES (%s, 1)", (TENANT_A,))
        app.execute("DELETE FROM invoices WHERE amount = 1")
    for sql, params in [
        ("INSERT INTO invoices (tenant_id, amount) VALUES (%s, 1)", (TENANT_B,)),
        ("UPDATE invoices SET tenant_id = %s", (TENANT_B,)),
    ]:
        with app.transaction():
            app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),))
            assert sqlstate(app, sql, params) == "42501"
    with app.transaction():
        app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),))
        # Rows of B are invisible, so this touches nothing.
        assert app.execute("UPDATE invoices SET amount = 0 WHERE tenant_id = %s", (TENANT_B,)).rowcount == 0


def test_claims_are_gone_after_commit_and_rollback(app, hs):
    with app.transaction():
        app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),))
        assert claim(app) == str(TENANT_A)
    assert claim(app) is None and count(app) == 0

    app.execute("BEGIN")
    app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_B),))
    assert count(app) == ROWS[TENANT_B]
    app.execute("ROLLBACK")
    assert claim(app) is None and count(app) == 0


def test_savepoint_rollback_restores_the_outer_token(app, hs):
    app.execute("BEGIN")
    app.execute("SAVEPOINT s1")
    app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),))
    assert claim(app) == str(TENANT_A)
    app.execute("ROLLBACK TO SAVEPOINT s1")
    assert claim(app) is None and count(app) == 0
    app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_B),))
    app.execute("SAVEPOINT s2")
    app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),))
    assert claim(app) == str(TENANT_A)
    app.execute("ROLLBACK TO SAVEPOINT s2")
    assert claim(app) == str(TENANT_B) and tenants(app) == {TENANT_B}
    app.execute("COMMIT")
    assert claim(app) is None


def test_prepared_statements_follow_the_current_tenant(app, hs):
    query = "SELECT tenant_id, count(*) FROM invoices GROUP BY 1"
    for mode in ["force_custom_plan", "force_generic_plan"]:
        app.execute(f"SET plan_cache_mode = {mode}")
        for tenant in [TENANT_A, TENANT_B, TENANT_A] * 3:
            with app.transaction():
                app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(tenant),))
                # prepare=True: psycopg keeps a server-side prepared statement.
                assert app.execute(query, prepare=True).fetchall() == [(tenant, ROWS[tenant])]
    app.execute("PREPARE q AS SELECT count(*) FROM invoices")
    for tenant in [TENANT_B, TENANT_A]:
        with app.transaction():
            app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(tenant),))
            assert app.execute("EXECUTE q").fetchone()[0] == ROWS[tenant]
    assert app.execute("EXECUTE q").fetchone()[0] == 0


PARALLEL = ["SET LOCAL parallel_setup_cost = 0", "SET LOCAL parallel_tuple_cost = 0",
            "SET LOCAL min_parallel_table_scan_size = 0", "SET LOCAL max_parallel_workers_per_gather = 2"]
QUERY = "SELECT count(*), sum(n) FROM events"


@pytest.mark.parametrize("alg", ["HS256", "ES256"])
def test_parallel_plan_sees_the_leaders_claims(app, signers, alg):
    for tenant in [TENANT_A, TENANT_B]:
        token = signers[alg].token(tenant)
        with app.transaction():
            app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
            app.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            serial = app.execute(QUERY).fetchone()
        with app.transaction():
            app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
            for s in PARALLEL:
                app.execute(s)
            plan = "\n".join(r[0] for r in app.execute("EXPLAIN (ANALYZE, COSTS OFF) " + QUERY))
            assert "Workers Launched: 2" in plan or "Workers Launched: 1" in plan, plan
            parallel = app.execute(QUERY).fetchone()
        assert parallel == serial
        assert serial[0] == (EVENTS // 3 if tenant == TENANT_A else EVENTS - EVENTS // 3)


def test_session_token_and_discard(cluster, db, hs):
    token = hs.token(TENANT_B)
    with psycopg.connect(cluster.dsn(user="app", options=f"'-c jwt_rls.token={token}'"),
                         autocommit=True) as conn:
        assert tenants(conn) == {TENANT_B}
        # A token given at connection time is the session's default, as a
        # login role is: RESET and DISCARD ALL return to it, not to nothing.
        conn.execute("DISCARD ALL")
        assert tenants(conn) == {TENANT_B}
        conn.execute("SET jwt_rls.token = ''")
        assert claim(conn) is None and count(conn) == 0
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as conn:
        conn.execute(f"SET jwt_rls.token = '{hs.token(TENANT_A)}'")
        assert count(conn) == ROWS[TENANT_A]
        with conn.transaction():
            conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))
            assert count(conn) == ROWS[TENANT_B]
        assert count(conn) == ROWS[TENANT_A]
        conn.execute("RESET ALL")
        assert count(conn) == 0
        conn.execute(f"SET jwt_rls.token = '{hs.token(TENANT_A)}'")
        assert count(conn) == ROWS[TENANT_A]
        conn.execute("DISCARD ALL")
        assert claim(conn) is None and count(conn) == 0


def test_expiry_is_checked_at_every_read(app, hs):
    app.execute(f"SET jwt_rls.token = '{hs.token(TENANT_A, ttl=2)}'")
    assert count(app) == ROWS[TENANT_A]
    time.sleep(2.5)
    assert sqlstate(app, "SELECT count(*) FROM invoices") == "28000"
    assert sqlstate(app, "SELECT jwt_rls.jwt_claim('tenant_id')") == "28000"
    app.execute("RESET jwt_rls.token")
    assert count(app) == 0


def test_forged_expired_and_foreign_tokens_are_refused(app, hs, signers):
    attacker = Signer(hs.kid, "HS256")  # same kid, another secret
    cases = {
        "forged": attacker.token(TENANT_B),
        "expired": hs.token(TENANT_B, ttl=-60),
        "not yet valid": hs.token(TENANT_B, nbf=int(time.time()) + 3600),
        "other issuer": hs.token(TENANT_B, iss="https://evil.example"),
        "other audience": hs.token(TENANT_B, aud="another-api"),
        "RS256 key, HS256 token": handmade_hs256(
            {"alg": "HS256", "kid": signers["RS256"].kid},
            {"tenant_id": str(TENANT_B), "exp": int(time.time()) + 60, "iss": ISSUER, "aud": AUDIENCE},
            signers["RS256"].public.encode()),
    }
    for name, token in cases.items():
        assert sqlstate(app, "SELECT jwt_rls.authenticate(%s)", (token,)) == "28000", name
        assert sqlstate(app, f"SET jwt_rls.token = '{token}'") == "28000", name
        assert count(app) == 0, name


def verdict(cluster, dbname, token):
    """authenticate(token) in a fresh connection as app to dbname: the
    tenant_id of the claims, or the refusal's SQLSTATE and message."""
    with psycopg.connect(cluster.dsn(user="app", dbname=dbname), autocommit=True) as conn:
        try:
            return conn.execute("SELECT jwt_rls.authenticate(%s) ->> 'tenant_id'", (token,)).fetchone()[0]
        except psycopg.Error as e:
            return f"{e.sqlstate} {e.diag.message_primary}"


def refused_for(verdict, word):
    return verdict.startswith("28000 ") and word in verdict


def test_superuser_settings_are_per_database(db, cluster, hs):
    rows = db.execute("SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0").fetchone()[0]
    assert any(r.startswith("jwt_rls.issuer=") for r in rows)
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as conn:
        assert conn.execute("SHOW jwt_rls.leeway").fetchone()[0] == "0"
        assert conn.execute("SHOW jwt_rls.audience").fetchone()[0] == "invoices-api"

    # A second database with its own issuer and audience and the same key:
    # each accepts only the tokens its own settings name.
    make_db(db, "other_issuer", {"issuer": "https://other.example", "audience": "other-api"})
    with psycopg.connect(cluster.dsn(dbname="other_issuer"), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION jwt_rls")
        admin.execute("GRANT USAGE ON SCHEMA jwt_rls TO app")
        with admin.cursor() as cur:
            hs.install(cur)
    ours = hs.token(TENANT_A)
    theirs = hs.token(TENANT_A, iss="https://other.example", aud="other-api")
    assert verdict(cluster, "postgres", ours) == str(TENANT_A)
    assert refused_for(verdict(cluster, "postgres", theirs), "issuer")
    assert verdict(cluster, "other_issuer", theirs) == str(TENANT_A)
    assert refused_for(verdict(cluster, "other_issuer", ours), "issuer")

    # Changing the database's settings changes what its new sessions accept.
    db.execute(f"ALTER DATABASE other_issuer SET jwt_rls.issuer = '{ISSUER}'")
    assert refused_for(verdict(cluster, "other_issuer", theirs), "issuer")
    assert refused_for(verdict(cluster, "other_issuer", ours), "audience")
    db.execute(f"ALTER DATABASE other_issuer SET jwt_rls.audience = '{AUDIENCE}'")
    assert verdict(cluster, "other_issuer", ours) == str(TENANT_A)


def test_key_change_reaches_a_running_backend(cluster, db, signers):
    fresh = Signer(f"rotated-{uuid.uuid4().hex[:8]}", "ES256")
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as conn:
        token = fresh.token(TENANT_A)
        assert sqlstate(conn, "SELECT jwt_rls.authenticate(%s)", (token,)) == "28000"
        with db.cursor() as cur:
            fresh.install(cur)
        with conn.transaction():
            conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))
            assert count(conn) == ROWS[TENANT_A]
        db.execute("SELECT jwt_rls.disable_key(%s)", (fresh.kid,))
        assert sqlstate(conn, "SELECT jwt_rls.authenticate(%s)", (token,)) == "28000"
        conn.execute(f"SET jwt_rls.token = '{signers['RS256'].token(TENANT_B)}'")
        assert count(conn) == ROWS[TENANT_B]
        db.execute("SELECT jwt_rls.disable_key(%s)", (signers["RS256"].kid,))
        try:
            # A session token signed by a key disabled meanwhile stops at once.
            assert sqlstate(conn, "SELECT count(*) FROM invoices") == "28000"
        finally:
            db.execute("SELECT jwt_rls.enable_key(%s)", (signers["RS256"].kid,))
        assert count(conn) == ROWS[TENANT_B]
