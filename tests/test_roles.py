"""Role from a claim (jwt_rls.role_claim): authenticate() switches the
transaction to the claimed role when the session user is a member of it,
never to a superuser or BYPASSRLS role, only for the transaction, and the
claims are unreadable under any other role set inside it."""

import psycopg
import pytest

from support import sqlstate
from support.schema import TENANT_A, TENANT_B
from support.tokens import AUDIENCE

SCHEMA = f"""
CREATE EXTENSION jwt_rls;
ALTER DATABASE roles SET jwt_rls.role_claim = 'role';
ALTER DATABASE roles SET jwt_rls.audience = '{AUDIENCE}';
CREATE TABLE notes (tenant_id uuid NOT NULL, body text NOT NULL);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON notes USING (tenant_id = (SELECT jwt_rls.jwt_claim('tenant_id')::uuid));
CREATE TABLE admin_only (secret text);
CREATE FUNCTION whoami_definer() RETURNS text LANGUAGE sql SECURITY DEFINER
    AS $$ SELECT current_user || ' ' || jwt_rls.jwt_claim('tenant_id') $$;
"""


@pytest.fixture(scope="module")
def roles_db(cluster, db, signers):
    hs = signers["HS256"]
    for name in ["reader", "writer", "not_granted", "rls_bypasser", "super_role"]:
        db.execute(f"DROP ROLE IF EXISTS {name}")
    db.execute("DROP DATABASE IF EXISTS roles")
    db.execute("CREATE DATABASE roles TEMPLATE template0")
    db.execute("CREATE ROLE reader NOLOGIN; CREATE ROLE writer NOLOGIN; CREATE ROLE not_granted NOLOGIN")
    db.execute("CREATE ROLE rls_bypasser NOLOGIN BYPASSRLS; CREATE ROLE super_role NOLOGIN SUPERUSER")
    db.execute("GRANT reader, writer, rls_bypasser, super_role TO app")
    with psycopg.connect(cluster.dsn(dbname="roles"), autocommit=True) as admin:
        admin.execute(SCHEMA)
        with admin.cursor() as cur:
            hs.install(cur)
        admin.execute("GRANT USAGE ON SCHEMA jwt_rls TO reader, writer, app")
        admin.execute("GRANT SELECT ON notes TO reader, writer")
        admin.execute("GRANT INSERT ON notes TO writer")
        admin.execute("GRANT SELECT ON notes, admin_only TO app")
        admin.execute("GRANT EXECUTE ON FUNCTION whoami_definer() TO reader")
        admin.execute("INSERT INTO notes VALUES (%s, 'a'), (%s, 'b')", (TENANT_A, TENANT_B))
    yield
    db.execute("DROP DATABASE roles WITH (FORCE)")


@pytest.fixture
def conn(cluster, roles_db):
    with psycopg.connect(cluster.dsn(user="app", dbname="roles"), autocommit=True) as c:
        yield c


def bind(conn, token):
    return conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))


def test_authenticate_switches_to_the_claimed_role_for_the_transaction_only(conn, hs):
    with conn.transaction():
        bind(conn, hs.token(TENANT_A, role="reader"))
        assert conn.execute("SELECT current_user, current_setting('role')").fetchone() == ("reader", "reader")
        assert [r[0] for r in conn.execute("SELECT body FROM notes")] == ["a"]
        assert sqlstate(conn, "INSERT INTO notes VALUES (%s, 'x')", (TENANT_A,)) == "42501", "reader cannot write"
        assert sqlstate(conn, "SELECT * FROM admin_only") == "42501", "the login role's grants do not apply"
        # A SECURITY DEFINER function reads the claims under its owner.
        assert conn.execute("SELECT whoami_definer()").fetchone()[0].endswith(str(TENANT_A))
    assert conn.execute("SELECT current_user, current_setting('role')").fetchone() == ("app", "none")
    with conn.transaction():
        bind(conn, hs.token(TENANT_B, role="writer"))
        conn.execute("INSERT INTO notes VALUES (%s, 'w')", (TENANT_B,))
        assert conn.execute("SELECT current_user").fetchone()[0] == "writer"


@pytest.mark.parametrize("role, why", [("not_granted", "not a member"), ("rls_bypasser", "not allowed"),
                                       ("super_role", "not allowed"), ("no_such_role", "does not exist"),
                                       (None, "names no role")])
def test_roles_that_would_widen_or_do_not_fit_are_refused(conn, hs, role, why):
    token = hs.token(TENANT_A, role=role)
    with pytest.raises(psycopg.Error) as e:
        bind(conn, token)
    assert e.value.sqlstate == "42501" and why in e.value.diag.message_primary, e.value
    assert conn.execute("SELECT current_user").fetchone()[0] == "app"


def test_resetting_the_role_inside_the_transaction_makes_the_claims_unreadable(conn, hs):
    for escape in ["RESET ROLE", "SET ROLE app", "SET ROLE writer", "SET LOCAL ROLE NONE"]:
        with conn.transaction():
            bind(conn, hs.token(TENANT_A, role="reader"))
            conn.execute(escape)
            assert sqlstate(conn, "SELECT jwt_rls.jwt_claim('tenant_id')") == "42501", escape
            assert sqlstate(conn, "SELECT count(*) FROM notes") == "42501", escape
            conn.execute("SET LOCAL ROLE reader")
            assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 1


def test_a_token_bound_by_set_does_not_switch_and_reads_only_under_its_role(conn, hs):
    with conn.transaction():
        conn.execute("SELECT set_config('jwt_rls.token', %s, true)", (hs.token(TENANT_A, role="reader"),))
        assert conn.execute("SELECT current_user").fetchone()[0] == "app"
        assert sqlstate(conn, "SELECT jwt_rls.jwt_claim('tenant_id')") == "42501"
        conn.execute("SET LOCAL ROLE reader")
        assert conn.execute("SELECT jwt_rls.jwt_claim('tenant_id')").fetchone()[0] == str(TENANT_A)
