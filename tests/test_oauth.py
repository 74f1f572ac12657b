"""Logging in with a token (PostgreSQL 18's OAuth, OAUTHBEARER): jwt_rls as
the validator, its snapshot of the key store, and the token bound for the
session. A real server with `oauth_validator_libraries = 'jwt_rls'` and
oauth lines in pg_hba; the client is libpq 18 itself, handed the token
through its auth-data hook (tests/support/oauth_client.py)."""

import os
import signal
import subprocess
import time

import psycopg
import pytest

from support.dpop import ProofKey
from support.hostile import Catalog, jws
from support.oauth_client import OAuthSession, QueryError, logins
from support.pg import MAJOR
from support.pgcluster import Cluster, wait_for
from support.schema import ROWS, SCHEMA, TENANT_A, TENANT_B, insert_invoices
from support.tokens import AUDIENCE, ISSUER, Signer

pytestmark = pytest.mark.skipif(MAJOR < 18, reason="OAuth logins (validator modules) exist from PostgreSQL 18 on")

SCOPES = "openid invoices"
ELSEWHERE = "https://elsewhere.example"
ROLE_GROUP = "oauth_users"
HBA = f"""
local all all trust
host all postgres 127.0.0.1/32 trust
host postgres reader,rootish,bypasser,outsider 127.0.0.1/32 oauth issuer="{ISSUER}" scope="{SCOPES}" delegate_ident_mapping=1
host all all 127.0.0.1/32 oauth issuer="{ISSUER}" scope="{SCOPES}" map=tokens
"""
# Every identity a token proves may log in as the application role: who
# the user is stays in the claims, which RLS reads.
IDENT = "tokens /^.+$ app\n"


class LoginCatalog(Catalog):
    """The hostile catalog with the scopes a login needs, so that each case
    fails for its own flaw and not for a missing scope."""

    def claims(self, **changes):
        return super().claims(**{"scope": SCOPES, "role": "app", **changes})


@pytest.fixture(scope="module")
def server():
    c = Cluster(conf=["shared_preload_libraries = 'jwt_rls'", "oauth_validator_libraries = 'jwt_rls'",
                      "jwt_rls.oauth_database = 'postgres'", f"jwt_rls.oauth_role_group = '{ROLE_GROUP}'"])
    with open(os.path.join(c.data, "pg_hba.conf"), "w") as f:
        f.write(HBA)
    with open(os.path.join(c.data, "pg_ident.conf"), "w") as f:
        f.write(IDENT)
    c.start()
    keys = {alg: Signer(f"{alg.lower()}-oauth", alg) for alg in ["HS256", "RS256", "ES256", "EdDSA"]}
    try:
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute(SCHEMA)
            admin.execute("ALTER DATABASE postgres SET jwt_rls.role_claim = 'role'")
            # Two issuers the database trusts; the pg_hba lines name one.
            admin.execute(f"ALTER DATABASE postgres SET jwt_rls.issuer = '{ISSUER}, {ELSEWHERE}'")
            # The hostile catalog's policy (tests/test_hostile.py).
            admin.execute("ALTER DATABASE postgres SET jwt_rls.max_lifetime = 172800")
            admin.execute(f"""CREATE ROLE {ROLE_GROUP} NOLOGIN;
                CREATE ROLE reader LOGIN IN ROLE {ROLE_GROUP};
                CREATE ROLE bypasser LOGIN BYPASSRLS IN ROLE {ROLE_GROUP};
                CREATE ROLE rootish LOGIN SUPERUSER IN ROLE {ROLE_GROUP};
                CREATE ROLE outsider LOGIN;
                GRANT USAGE ON SCHEMA jwt_rls TO {ROLE_GROUP}, outsider;
                GRANT SELECT ON invoices TO {ROLE_GROUP}, outsider""")
            admin.execute(f"SET jwt_rls.issuer = '{ISSUER}'; SET jwt_rls.audience = '{AUDIENCE}'")
            with admin.cursor() as cur:
                for k in keys.values():
                    k.install(cur)
                insert_invoices(cur)
        c.keys = keys
        c.oauth = (f"host=127.0.0.1 port={c.port} dbname=postgres oauth_issuer={ISSUER} "
                   "oauth_client_id=jwt-rls-tests")
        # The worker restarts for the database settings above, then copies
        # the keys: the first login that works says the snapshot is current.
        good = token(c, TENANT_A)
        assert wait_for(lambda: login(c, good).connected, timeout=30), c.server_log()[-3000:]
        yield c
    finally:
        c.remove()


def token(server, tenant, alg="ES256", sub="alice", **claims):
    return server.keys[alg].token(tenant, sub=sub, scope=SCOPES, role="app", **claims)


def login(server, tok, user="app"):
    return OAuthSession(f"{server.oauth} user={user}", tok)


def tenants(session):
    return {row[0] for row in session.query("SELECT tenant_id FROM invoices")}


def logs_since(server, mark):
    return server.server_log()[mark:]


def test_a_token_login_sees_exactly_its_tenant(server):
    for tenant, other, sub in [(TENANT_A, TENANT_B, "alice"), (TENANT_B, TENANT_A, "bob")]:
        with login(server, token(server, tenant, sub=sub)) as s:
            assert s.connected, s.error
            assert tenants(s) == {str(tenant)}
            assert s.query("SELECT count(*) FROM invoices") == [[str(ROWS[tenant])]]
            # From the first statement: the claims, who logged in, and how.
            assert s.query("SELECT jwt_rls.jwt_claim('sub'), system_user, session_user") == \
                [[sub, f"oauth:{sub}", "app"]]
            with pytest.raises(QueryError) as e:
                s.query(f"INSERT INTO invoices (tenant_id, amount) VALUES ('{other}', 1)")
            assert e.value.sqlstate == "42501"


def test_every_algorithm_logs_in(server):
    for alg in server.keys:
        with login(server, token(server, TENANT_A, alg=alg)) as s:
            assert s.connected, f"{alg}: {s.error}"
            assert tenants(s) == {str(TENANT_A)}


def test_hostile_catalog_fails_the_login_and_no_token_reaches_the_log(server):
    cases = [c for c in LoginCatalog(server.keys).build() if c[1]]
    mark = len(server.server_log())
    results = logins(f"{server.oauth} user=app", [(t, "SELECT 1") for _, t, _, _ in cases])
    accepted = [name for (name, *_), r in zip(cases, results) if "error" not in r]
    assert not accepted, f"hostile tokens logged in: {accepted}"
    # The client learns that the login failed, nothing of why.
    assert all("authentication failed" in r["error"] or "bearer token" in r["error"] for r in results), \
        {r["error"] for r in results}
    log = logs_since(server, mark)
    leaked = {seg[:16] for _, t, _, _ in cases for seg in t.split(".") if len(seg) >= 8 and seg in log}
    assert not leaked, f"token text in the server log: {sorted(leaked)[:5]}"
    # The reasons are in the log, for the administrator.
    assert log.count("jwt_rls refused an OAuth login") >= len(cases) // 2
    # The scaffolding logs in: every case failed for its own flaw.
    good = jws(LoginCatalog(server.keys).header(), LoginCatalog(server.keys).claims(), server.keys["HS256"])
    assert "rows" in logins(f"{server.oauth} user=app", [(good, "SELECT 1")])[0]
    print(f"hostile catalog: {len(cases)} tokens refused at login, none in the server log")


@pytest.mark.parametrize("case,expected", [
    ("other issuer", "not issued by the issuer this pg_hba line trusts"),
    ("missing scope", "lacks the scope"),
    ("dpop bound", "bound to a key (cnf)"),
    ("no subject", "no \"sub\" claim"),
])
def test_login_rules_refuse_with_the_reason_in_the_log(server, case, expected):
    es = server.keys["ES256"]
    if case == "other issuer":
        # An issuer the database trusts, but not the one of the pg_hba line.
        tok = es.token(TENANT_A, scope=SCOPES, role="app", iss=ELSEWHERE)
    elif case == "missing scope":
        tok = es.token(TENANT_A, scope="openid", role="app")
    elif case == "dpop bound":
        tok = token(server, TENANT_A, cnf={"jkt": ProofKey("ES256").jkt})
    else:
        now = int(time.time())
        tok = jws({"alg": "ES256", "kid": es.kid, "typ": "JWT"},
                  {"iss": ISSUER, "aud": AUDIENCE, "tenant_id": str(TENANT_A), "scope": SCOPES,
                   "role": "app", "iat": now, "exp": now + 600}, es, "ES256")
    mark = len(server.server_log())
    s = login(server, tok)
    s.close()
    assert not s.connected
    assert expected in logs_since(server, mark)


def test_a_disabled_key_stops_new_logins_and_reads_in_open_sessions(server):
    es = server.keys["EdDSA"]
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        with login(server, token(server, TENANT_A, alg="EdDSA")) as open_session:
            assert tenants(open_session) == {str(TENANT_A)}
            admin.execute("SELECT jwt_rls.disable_key(%s)", (es.kid,))
            disabled_at = time.monotonic()
            try:
                # New logins: refused within the documented bound (the
                # worker looks every second).
                assert wait_for(lambda: not login(server, token(server, TENANT_A, alg="EdDSA")).connected,
                                timeout=5)
                took = time.monotonic() - disabled_at
                assert took < 3, took
                with pytest.raises(QueryError) as e:
                    open_session.query("SELECT tenant_id FROM invoices")
                assert e.value.sqlstate == "28000"
            finally:
                admin.execute("SELECT jwt_rls.enable_key(%s)", (es.kid,))
        assert wait_for(lambda: login(server, token(server, TENANT_A, alg="EdDSA")).connected, timeout=5)
    print(f"disabled key: new logins refused {took:.1f} s after the commit")


def test_a_revoked_subject_stops_new_logins_and_reads_in_open_sessions(server):
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        victim = token(server, TENANT_B, sub="mallory", iat=int(time.time()) - 5)
        with login(server, victim) as open_session:
            assert tenants(open_session) == {str(TENANT_B)}
            admin.execute("SELECT jwt_rls.revoke_subject('mallory')")
            try:
                assert wait_for(lambda: not login(server, victim).connected, timeout=5)
                with pytest.raises(QueryError) as e:
                    open_session.query("SELECT tenant_id FROM invoices")
                assert e.value.sqlstate == "28000"
            finally:
                admin.execute("DELETE FROM jwt_rls.revoked_subjects WHERE sub = 'mallory'")


def test_expiry_inside_an_open_session_refuses_reads(server):
    with login(server, token(server, TENANT_A, ttl=3)) as s:
        assert tenants(s) == {str(TENANT_A)}
        time.sleep(3.5)
        with pytest.raises(QueryError) as e:
            s.query("SELECT tenant_id FROM invoices")
        assert e.value.sqlstate == "28000"
        with pytest.raises(QueryError):
            s.query(f"INSERT INTO invoices (tenant_id, amount) VALUES ('{TENANT_A}', 1)")


def test_the_session_token_survives_set_reset_and_discard(server):
    forged = jws({"alg": "HS256", "kid": server.keys["HS256"].kid, "typ": "JWT"},
                 {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "tenant_id": str(TENANT_B),
                  "exp": int(time.time()) + 600, "role": "app"}, Signer("forger", "HS256"), "HS256")
    with login(server, token(server, TENANT_A)) as s:
        for attempt in [f"SET jwt_rls.token = '{forged}'",
                        f"SELECT set_config('jwt_rls.token', '{forged}', false)",
                        f"SELECT jwt_rls.authenticate('{forged}')"]:
            with pytest.raises(QueryError) as e:
                s.query(attempt)
            assert e.value.sqlstate == "28000", attempt
            assert tenants(s) == {str(TENANT_A)}
        for reset in ["RESET jwt_rls.token", "RESET ALL", "DISCARD ALL"]:
            s.query(reset)
            assert tenants(s) == {str(TENANT_A)}, reset
        # A transaction may bind another valid token: it wins inside the
        # transaction, and the session's token is back at COMMIT.
        other = token(server, TENANT_B, sub="bob")
        s.query("BEGIN")
        s.query(f"SELECT jwt_rls.authenticate('{other}')")
        assert tenants(s) == {str(TENANT_B)}
        s.query("COMMIT")
        assert tenants(s) == {str(TENANT_A)}
        # Unbinding leaves no claims, so no rows: never another tenant's.
        s.query("SET jwt_rls.token = ''")
        assert tenants(s) == set()
        s.query("RESET jwt_rls.token")
        assert tenants(s) == {str(TENANT_A)}


def test_a_startup_option_does_not_replace_the_login_token(server):
    other = token(server, TENANT_B, sub="bob")
    s = OAuthSession(f"{server.oauth} user=app options='-c jwt_rls.token={other}'", token(server, TENANT_A))
    with s:
        assert s.connected, s.error
        assert tenants(s) == {str(TENANT_A)}


@pytest.mark.parametrize("user,role_claim,admitted", [
    ("reader", "reader", True),
    ("reader", "outsider", False),   # the token names another role
    ("outsider", "outsider", False),  # not a member of the group
    ("rootish", "rootish", False),   # a superuser
    ("bypasser", "bypasser", False),  # BYPASSRLS
])
def test_delegated_role_rules(server, user, role_claim, admitted):
    tok = server.keys["ES256"].token(TENANT_A, sub="carol", scope=SCOPES, role=role_claim)
    mark = len(server.server_log())
    with login(server, tok, user=user) as s:
        assert s.connected == admitted, s.error
        if admitted:
            # The claims are readable under the role the token chose.
            assert s.query("SELECT session_user, jwt_rls.jwt_claim('sub')") == [[user, "carol"]]
            assert tenants(s) == {str(TENANT_A)}
        else:
            assert "may not log in as this role" in logs_since(server, mark)


def test_a_stopped_snapshot_worker_fails_logins_closed(server):
    pid = int(subprocess.run(["pgrep", "-f", "jwt_rls OAuth key snapshot"], capture_output=True,
                             text=True, check=True).stdout.split()[0])
    good = token(server, TENANT_A)
    os.kill(pid, signal.SIGSTOP)
    try:
        mark = len(server.server_log())
        time.sleep(11)
        assert not login(server, good).connected
        assert "no current key snapshot" in logs_since(server, mark)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert wait_for(lambda: login(server, good).connected, timeout=5)
