"""PostgREST/Supabase compatibility (jwt_rls.postgrest_compat): policies in
the forms those projects document keep working unchanged, reading claims
jwt_rls verified, and the attacks that work against them there do nothing
here.

These tests run on a cluster of their own with jwt_rls in
shared_preload_libraries and jwt_rls.postgrest_compat = on; the shared
cluster of the other tests has it off, which shows it is opt-in."""

import json
import uuid

import psycopg
import pytest

from support import error, pg, sqlstate
from support.pgcluster import Cluster
from support.schema import TENANT_A, TENANT_B
from support.tokens import Signer

ISSUER = "https://abcdefghijklmnop.supabase.co/auth/v1"
ALICE = uuid.UUID("a11ce000-0000-4000-8000-000000000001")
BOB = uuid.UUID("b0b00000-0000-4000-8000-000000000002")
TEAM_RED = uuid.UUID("7ea30000-0000-4000-8000-000000000001")
TEAM_BLUE = uuid.UUID("b1000000-0000-4000-8000-000000000002")

# Supabase's own roles, and a login role for the app (PostgREST's
# "authenticator") that may switch to them.
SCHEMA = f"""
CREATE EXTENSION jwt_rls;
ALTER DATABASE postgres SET jwt_rls.issuer = '{ISSUER}';
ALTER DATABASE postgres SET jwt_rls.audience = 'authenticated';
ALTER DATABASE postgres SET jwt_rls.role_claim = 'role';
CREATE ROLE anon NOLOGIN;
CREATE ROLE authenticated NOLOGIN;
CREATE ROLE authenticator LOGIN NOINHERIT;
GRANT anon, authenticated TO authenticator;
GRANT USAGE ON SCHEMA jwt_rls TO anon, authenticated, authenticator;
SELECT jwt_rls.create_auth_functions();

-- Policies in the forms of Supabase's row level security guide, unchanged.
CREATE TABLE profiles (id uuid PRIMARY KEY, name text NOT NULL);
ALTER TABLE profiles ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users can see their own profile" ON profiles
    FOR SELECT TO authenticated USING ((select auth.uid()) = id);
CREATE POLICY "Users can update their own profile" ON profiles
    FOR UPDATE TO authenticated USING ((select auth.uid()) = id) WITH CHECK ((select auth.uid()) = id);

CREATE TABLE members (team_id uuid NOT NULL, user_id uuid NOT NULL);
CREATE TABLE documents (id int PRIMARY KEY, team_id uuid NOT NULL, body text NOT NULL);
ALTER TABLE members ENABLE ROW LEVEL SECURITY;
ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Members see their memberships" ON members
    FOR SELECT TO authenticated USING (user_id = auth.uid());
CREATE POLICY "Team members can read team documents" ON documents
    FOR SELECT TO authenticated
    USING (team_id IN (SELECT team_id FROM members WHERE user_id = (select auth.uid())));

CREATE TABLE invoices (tenant_id uuid NOT NULL, amount int NOT NULL);
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Tenant from app_metadata" ON invoices
    FOR SELECT TO authenticated
    USING (tenant_id = ((select auth.jwt()) -> 'app_metadata' ->> 'tenant_id')::uuid
           AND (select auth.jwt() ->> 'aal') = 'aal1');
-- PostgREST's documented form: the claims setting read directly.
CREATE TABLE notes (owner text NOT NULL, body text NOT NULL);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY "PostgREST style" ON notes
    FOR SELECT TO authenticated
    USING (owner = current_setting('request.jwt.claims', true)::json ->> 'sub'
           OR owner = current_setting('request.jwt.claim.email', true));

GRANT SELECT, UPDATE ON profiles TO authenticated;
GRANT SELECT ON members, documents, invoices, notes TO authenticated;
INSERT INTO profiles VALUES ('{ALICE}', 'alice'), ('{BOB}', 'bob');
INSERT INTO members VALUES ('{TEAM_RED}', '{ALICE}'), ('{TEAM_BLUE}', '{BOB}');
INSERT INTO documents VALUES (1, '{TEAM_RED}', 'red plan'), (2, '{TEAM_BLUE}', 'blue plan');
INSERT INTO invoices VALUES ('{TENANT_A}', 10), ('{TENANT_B}', 20);
INSERT INTO notes VALUES ('{ALICE}', 'by sub'), ('bob@example.com', 'by email'), ('x', 'nobody');
"""


@pytest.fixture(scope="module")
def supa():
    c = Cluster(conf=["shared_preload_libraries = 'jwt_rls'", "jwt_rls.postgrest_compat = on"]).start()
    signer = Signer("supabase-es256", "ES256")
    try:
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute(SCHEMA)
            with admin.cursor() as cur:
                signer.install(cur)
        yield c, signer
    finally:
        c.remove()


def supabase_token(signer, user, email, tenant=TENANT_A, **extra):
    """A token shaped like the ones Supabase Auth issues."""
    claims = dict(iss=ISSUER, aud="authenticated", role="authenticated", email=email, phone="",
                  app_metadata={"provider": "email", "providers": ["email"], "tenant_id": str(tenant)},
                  user_metadata={}, aal="aal1", amr=[{"method": "password", "timestamp": 1700000000}],
                  session_id=str(uuid.uuid4()), is_anonymous=False)
    claims.update(extra)
    return signer.token(tenant, sub=str(user), tenant_id=None, **claims)


@pytest.fixture
def conn(supa):
    c, _ = supa
    with psycopg.connect(c.dsn(user="authenticator"), autocommit=True) as conn:
        yield conn


def rows(conn, sql, params=None):
    return sorted(tuple(r) for r in conn.execute(sql, params))


def test_supabase_policies_run_unchanged_on_verified_claims(supa, conn):
    _, signer = supa
    alice = supabase_token(signer, ALICE, "alice@example.com", TENANT_A)
    with conn.transaction():
        conn.execute("SELECT jwt_rls.authenticate(%s)", (alice,))
        assert conn.execute("SELECT current_user").fetchone()[0] == "authenticated"
        assert conn.execute("SELECT auth.uid(), auth.role(), auth.email()").fetchone() == (
            ALICE, "authenticated", "alice@example.com")
        assert conn.execute("SELECT auth.jwt() -> 'app_metadata' ->> 'tenant_id'").fetchone()[0] == str(TENANT_A)
        assert rows(conn, "SELECT name FROM profiles") == [("alice",)]
        assert rows(conn, "SELECT body FROM documents") == [("red plan",)]
        assert rows(conn, "SELECT amount FROM invoices") == [(10,)]
        assert rows(conn, "SELECT body FROM notes") == [("by sub",)]
        assert conn.execute("UPDATE profiles SET name = 'x' WHERE id = %s", (BOB,)).rowcount == 0
    bob = supabase_token(signer, BOB, "bob@example.com", TENANT_B)
    with conn.transaction():
        conn.execute("SELECT jwt_rls.authenticate(%s)", (bob,))
        assert rows(conn, "SELECT name FROM profiles") == [("bob",)]
        assert rows(conn, "SELECT body FROM documents") == [("blue plan",)]
        assert rows(conn, "SELECT amount FROM invoices") == [(20,)]
        assert rows(conn, "SELECT body FROM notes") == [("by email",)]
    # Outside the transaction: no token, the login role, nothing visible.
    assert conn.execute("SELECT auth.uid(), current_user").fetchone() == (None, "authenticator")


def test_request_jwt_settings_show_the_bound_token_only(supa, conn):
    _, signer = supa
    token = supabase_token(signer, ALICE, "alice@example.com")
    read = ("SELECT current_setting('request.jwt.claims', true), current_setting('request.jwt.claim.sub', true),"
            " current_setting('request.jwt.claim.role', true), current_setting('request.jwt.claim.aal', true)")
    assert conn.execute(read).fetchone() == ("{}", "", "", "")
    with conn.transaction():
        conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))
        claims, sub, role, aal = conn.execute(read).fetchone()
        assert json.loads(claims)["sub"] == sub == str(ALICE)
        assert (role, aal) == ("authenticated", "aal1")
        assert conn.execute("SHOW request.jwt.claim.email").fetchone()[0] == "alice@example.com"
    assert conn.execute(read).fetchone() == ("{}", "", "", "")


FORGED = json.dumps({"sub": str(BOB), "role": "authenticated", "email": "bob@example.com", "aal": "aal2",
                     "app_metadata": {"tenant_id": str(TENANT_B)}})


def test_forged_request_jwt_values_are_ignored(supa, conn):
    _, signer = supa
    # The PostgREST way of passing claims: writes succeed, reads never see them.
    with conn.transaction():
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (FORGED,))
        conn.execute("SET LOCAL request.jwt.claim.sub = %s" % psycopg.sql.quote(str(BOB)))
        assert conn.execute("SELECT current_setting('request.jwt.claims'), "
                            "current_setting('request.jwt.claim.sub')").fetchone() == ("{}", "")
        conn.execute("SELECT jwt_rls.authenticate(%s)", (supabase_token(signer, ALICE, "alice@example.com"),))
        assert json.loads(conn.execute("SELECT current_setting('request.jwt.claims')").fetchone()[0])["sub"] == str(ALICE)
        assert rows(conn, "SELECT name FROM profiles") == [("alice",)]
        # Written again after the bind: still the verified claims.
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (FORGED,))
        conn.execute("SELECT set_config('request.jwt.claim.sub', %s, true)", (str(BOB),))
        assert conn.execute("SELECT auth.uid(), current_setting('request.jwt.claim.sub')").fetchone() == (
            ALICE, str(ALICE))
        assert rows(conn, "SELECT body FROM notes") == [("by sub",)]
    # Other request.* names cannot be created at all (from PostgreSQL 15 on;
    # 14 cannot reserve a prefix, and they become placeholders: SECURITY.md).
    for name in ["request.jwt.claim.tenant", "request.jwt.claim", "request.jwt.other", "request.tenant"]:
        expected = "42602" if pg.RESERVES_PREFIXES else None
        assert sqlstate(conn, f"SELECT set_config('{name}', 'x', true)") == expected, name


def test_a_postgrest_style_request_sees_nothing_without_a_token(supa, conn):
    """What PostgREST sends (role switch, claims setting) without a token
    jwt_rls verified: the claims are ignored and no row is visible."""
    with conn.transaction():
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (FORGED,))
        conn.execute("SELECT set_config('request.jwt.claim.email', 'bob@example.com', true)")
        for table in ["profiles", "documents", "invoices", "notes"]:
            assert rows(conn, f"SELECT * FROM {table}") == [], table


def test_postgrest_pre_request_binds_the_bearer_token(supa, conn):
    _, signer = supa
    alice = supabase_token(signer, ALICE, "alice@example.com")
    with conn.transaction():
        headers = json.dumps({"authorization": f"Bearer {alice}", "accept": "*/*"})
        conn.execute("SELECT set_config('request.headers', %s, true)", (headers,))
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (FORGED,))
        conn.execute("SELECT jwt_rls.postgrest_pre_request()")
        assert rows(conn, "SELECT name FROM profiles") == [("alice",)]
    with conn.transaction():  # no Authorization header: anonymous
        conn.execute("SELECT set_config('request.headers', '{}', true)")
        conn.execute("SELECT jwt_rls.postgrest_pre_request()")
        assert conn.execute("SELECT auth.uid()").fetchone()[0] is None
    forged = alice[:-4] + ("AAAA" if not alice.endswith("AAAA") else "BBBB")
    for header, state in [(f"Bearer {forged}", "28000"), (f"Basic {alice}", "28000")]:
        with conn.transaction():
            conn.execute("SELECT set_config('request.headers', %s, true)", (json.dumps({"authorization": header}),))
            assert sqlstate(conn, "SELECT jwt_rls.postgrest_pre_request()") == state, header
            raise psycopg.Rollback()


def test_alter_role_set_and_function_set_clauses_are_ignored(supa):
    c, signer = supa
    with psycopg.connect(c.dsn(), autocommit=True) as admin:
        admin.execute("ALTER ROLE authenticator SET request.jwt.claims = %s" % psycopg.sql.quote(FORGED))
        admin.execute("ALTER ROLE authenticator SET request.jwt.claim.sub = %s" % psycopg.sql.quote(str(BOB)))
        admin.execute("""CREATE OR REPLACE FUNCTION forged_sub() RETURNS text LANGUAGE sql
                         SET request.jwt.claim.sub = 'b0b00000-0000-4000-8000-000000000002'
                         AS $$ SELECT current_setting('request.jwt.claim.sub') $$""")
        admin.execute("GRANT EXECUTE ON FUNCTION forged_sub() TO authenticated")
        try:
            with psycopg.connect(c.dsn(user="authenticator"), autocommit=True) as conn:
                assert conn.execute("SELECT current_setting('request.jwt.claims'), auth.uid()").fetchone() == ("{}", None)
                with conn.transaction():
                    conn.execute("SELECT jwt_rls.authenticate(%s)",
                                 (supabase_token(signer, ALICE, "alice@example.com"),))
                    assert conn.execute("SELECT forged_sub()").fetchone()[0] == str(ALICE)
                    assert rows(conn, "SELECT name FROM profiles") == [("alice",)]
        finally:
            admin.execute("ALTER ROLE authenticator RESET ALL")


def test_a_shadow_uid_earlier_in_search_path_changes_nothing(supa, conn):
    c, signer = supa
    with psycopg.connect(c.dsn(), autocommit=True) as admin:
        admin.execute("CREATE SCHEMA IF NOT EXISTS evil")
        admin.execute(f"""CREATE OR REPLACE FUNCTION evil.uid() RETURNS uuid LANGUAGE sql
                          AS $$ SELECT '{BOB}'::uuid $$""")
        admin.execute("GRANT USAGE ON SCHEMA evil TO PUBLIC")
    with conn.transaction():
        conn.execute("SET LOCAL search_path = evil, auth, public")
        conn.execute("SELECT jwt_rls.authenticate(%s)", (supabase_token(signer, ALICE, "alice@example.com"),))
        assert conn.execute("SELECT uid()").fetchone()[0] == BOB, "the shadow is there"
        assert rows(conn, "SELECT name FROM public.profiles") == [("alice",)]
    # And nobody but superusers can plant anything in auth itself.
    assert sqlstate(conn, "CREATE FUNCTION auth.uid(x int DEFAULT 0) RETURNS uuid LANGUAGE sql "
                          f"AS $$ SELECT '{BOB}'::uuid $$") == "42501"


def test_create_auth_functions_refuses_a_schema_others_control(supa):
    c, _ = supa
    with psycopg.connect(c.dsn(), autocommit=True) as admin:
        # Idempotent for its own schema.
        admin.execute("SELECT jwt_rls.create_auth_functions()")
        admin.execute("CREATE ROLE schemer")
        try:
            admin.execute("GRANT CREATE ON SCHEMA auth TO schemer")
            msg = error(admin, "SELECT jwt_rls.create_auth_functions()")
            assert msg.sqlstate == "42501" and "can create objects in schema auth" in str(msg)
            admin.execute("REVOKE CREATE ON SCHEMA auth FROM schemer")
            admin.execute("GRANT CREATE ON SCHEMA auth TO PUBLIC")
            assert "PUBLIC holds CREATE" in error(admin, "SELECT jwt_rls.create_auth_functions()").diag.message_detail
            admin.execute("REVOKE CREATE ON SCHEMA auth FROM PUBLIC")
            admin.execute("ALTER SCHEMA auth OWNER TO schemer")
            msg = error(admin, "SELECT jwt_rls.create_auth_functions()")
            assert msg.sqlstate == "42501" and "owned by a role that is not a superuser" in str(msg)
            admin.execute("ALTER SCHEMA auth OWNER TO postgres")
            admin.execute("CREATE FUNCTION auth.email(x int) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$")
            admin.execute("ALTER FUNCTION auth.email(int) OWNER TO schemer")
            msg = error(admin, "SELECT jwt_rls.create_auth_functions()")
            assert msg.sqlstate == "42501" and "auth.email(integer)" in msg.diag.message_detail
            admin.execute("DROP FUNCTION auth.email(int)")
            admin.execute("SELECT jwt_rls.create_auth_functions()")
        finally:
            admin.execute("ALTER SCHEMA auth OWNER TO postgres")
        # Policies depend on the functions: dropping them is refused, and
        # so is dropping the extension under them.
        assert sqlstate(admin, "SELECT jwt_rls.drop_auth_functions()") == "2BP01"
        assert sqlstate(admin, "DROP EXTENSION jwt_rls") == "2BP01"
    with psycopg.connect(c.dsn(user="authenticator"), autocommit=True) as conn:
        assert sqlstate(conn, "SELECT jwt_rls.create_auth_functions()") == "42501"
        assert sqlstate(conn, "SELECT jwt_rls.drop_auth_functions()") == "42501"


def test_compat_is_off_unless_switched_on(cluster, db, app, hs):
    """The shared cluster runs without jwt_rls.postgrest_compat: the
    request.jwt.* names are not jwt_rls's there."""
    with app.transaction():
        app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),))
        assert app.execute("SELECT current_setting('request.jwt.claim.sub', true)").fetchone()[0] is None
        app.execute("SELECT set_config('request.jwt.claims', 'whatever', true)")
        assert app.execute("SELECT current_setting('request.jwt.claims')").fetchone()[0] == "whatever"
    # Not preloaded there: the switch does not even exist.
    assert db.execute("SELECT current_setting('jwt_rls.postgrest_compat', true)").fetchone()[0] is None


def test_compat_is_ignored_without_shared_preload(tmp_path):
    """Loaded per session (lazily, or by session_preload_libraries), a
    client could have written request.* or jwt_rls.postgrest_compat before
    the library loaded: compat needs shared_preload_libraries, and says so."""
    c = Cluster(conf=["jwt_rls.postgrest_compat = on", "session_preload_libraries = 'jwt_rls'"]).start()
    try:
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute("CREATE EXTENSION jwt_rls")
        with psycopg.connect(c.dsn(), autocommit=True) as conn:
            notices = []
            conn.add_notice_handler(lambda d: notices.append(d.message_primary))
            conn.execute("SELECT jwt_rls.jwt_claims()")
            conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (FORGED,))
            assert conn.execute("SELECT current_setting('request.jwt.claims')").fetchone()[0] == FORGED
        log = c.server_log()
        assert "jwt_rls.postgrest_compat is ignored" in log, log[-2000:]
    finally:
        c.remove()


def test_compat_needs_a_restart(supa):
    """A postmaster setting: a reload does not switch it (security review:
    it used to show "on" while nothing was served)."""
    c, _ = supa
    with psycopg.connect(c.dsn(), autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET jwt_rls.postgrest_compat = off")
        admin.execute("SELECT pg_reload_conf()")
        try:
            import time
            time.sleep(0.5)
            with psycopg.connect(c.dsn(), autocommit=True) as conn:
                assert conn.execute("SHOW jwt_rls.postgrest_compat").fetchone()[0] == "on"
                assert conn.execute("SELECT pending_restart FROM pg_settings WHERE name = 'jwt_rls.postgrest_compat'"
                                    ).fetchone()[0] is True
                assert conn.execute("SELECT current_setting('request.jwt.claims')").fetchone()[0] == "{}"
        finally:
            admin.execute("ALTER SYSTEM RESET jwt_rls.postgrest_compat")
            admin.execute("SELECT pg_reload_conf()")


def test_audit_trusts_request_jwt_settings_only_under_compat(supa):
    """With compat on and jwt_rls preloaded, a policy reading
    request.jwt.claims reads verified claims: audit() raises no alarm about
    it (it does on a cluster without compat, tests/test_audit.py)."""
    c, _ = supa
    with psycopg.connect(c.dsn(), autocommit=True) as admin:
        findings = admin.execute("SELECT severity, object, finding FROM jwt_rls.audit()").fetchall()
    about_notes = [f for f in findings if "notes" in f[1] and "setting" in f[2]]
    assert about_notes == [], about_notes


def test_postgrest_flow_through_a_transaction_pooler(supa):
    """PostgREST's per-request transaction (role switch, request.headers,
    pre-request hook, the forged claims it would write) from 16 clients over
    4 pooled server connections: each request sees its own user's rows, via
    request.jwt.claims and auth.uid(), never a neighbour's."""
    import threading

    from support.pgbouncer import PgBouncer

    c, signer = supa
    users = {ALICE: ("alice", "alice@example.com"), BOB: ("bob", "bob@example.com")}
    tokens = {u: supabase_token(signer, u, email) for u, (_, email) in users.items()}
    wrong = []
    with PgBouncer(c, "transaction", pool_size=4, user="authenticator") as bouncer:
        def client(n):
            with psycopg.connect(bouncer.dsn(), autocommit=True, prepare_threshold=None) as conn:
                for i in range(40):
                    user = ALICE if (n + i) % 2 else BOB
                    with conn.transaction():
                        conn.execute("SET LOCAL ROLE authenticated")
                        conn.execute("SELECT set_config('request.headers', %s, true)",
                                     (json.dumps({"authorization": f"Bearer {tokens[user]}"}),))
                        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (FORGED,))
                        conn.execute("SELECT jwt_rls.postgrest_pre_request()")
                        seen = rows(conn, "SELECT name FROM profiles")
                        sub = conn.execute("SELECT current_setting('request.jwt.claims')::json ->> 'sub', auth.uid()"
                                           ).fetchone()
                        if seen != [(users[user][0],)] or sub != (str(user), user):
                            wrong.append((n, i, seen, sub))
                    # Between requests, on whatever server connection: nothing.
                    if conn.execute("SELECT current_setting('request.jwt.claims')").fetchone()[0] != "{}":
                        wrong.append((n, i, "claims outside a request"))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert wrong == [], wrong[:5]
