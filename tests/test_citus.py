"""jwt_rls on a Citus cluster (a coordinator and two workers on 127.0.0.1,
jwt_rls preloaded on each): a table distributed by tenant_id, FORCE RLS,
the bare `jwt_claim()` policy, the application role connected to the
coordinator. Skipped where Citus is not installed (support/citus.py).

What holds today, and what is checked:
- the documented binding, `authenticate()` inside a transaction, reaches
  every worker the transaction touches, and each worker verifies the token
  itself: router and multi-shard reads see exactly the token's tenant, a
  write into another tenant is refused, no token sees nothing;
- a token no node accepts binds nowhere."""

import psycopg
import pytest

from support import error
from support.citus import CitusCluster, skip_reason
from support.schema import TENANT_A, TENANT_B
from support.tokens import AUDIENCE, ISSUER, Signer

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

ROWS = {TENANT_A: 30, TENANT_B: 50}

SCHEMA = f"""
CREATE EXTENSION jwt_rls;
ALTER DATABASE postgres SET jwt_rls.issuer = '{ISSUER}';
ALTER DATABASE postgres SET jwt_rls.audience = '{AUDIENCE}';
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA jwt_rls TO app;
CREATE TABLE docs (tenant_id uuid NOT NULL, id int NOT NULL, body text);
SELECT create_distributed_table('docs', 'tenant_id');
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
ALTER TABLE docs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON docs
    USING (tenant_id = jwt_rls.jwt_claim('tenant_id')::uuid)
    WITH CHECK (tenant_id = jwt_rls.jwt_claim('tenant_id')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON docs TO app;
"""


@pytest.fixture(scope="module")
def citus():
    c = CitusCluster().start()
    try:
        signer = Signer("citus-hs256", "HS256")
        with c.admin() as admin:
            # One statement at a time: Citus refuses to propagate a
            # multi-statement query string.
            for statement in filter(str.strip, SCHEMA.split(";\n")):
                admin.execute(statement)
            for tenant, n in ROWS.items():
                admin.execute("INSERT INTO docs SELECT %s, g, 'doc' FROM generate_series(1, %s) g", (tenant, n))
        # Keys do not reach the workers yet: each node gets the key here.
        for node in c.nodes:
            with c.admin(node) as admin, admin.cursor() as cur:
                signer.install(cur)
        c.signer = signer
        yield c
    finally:
        c.remove()


def app(c):
    return psycopg.connect(c.coordinator.dsn(user="app"), autocommit=True)


def seen(conn, token, sql="SELECT count(*) FROM docs", params=()):
    """What `sql` returns as `app` in a transaction that bound `token` with
    authenticate()."""
    with conn.transaction():
        conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))
        return conn.execute(sql, params).fetchone()[0]


def test_the_extension_and_its_settings_reach_every_node(citus):
    for node in citus.workers:
        with citus.admin(node) as admin:
            assert admin.execute("SELECT extversion FROM pg_extension WHERE extname = 'jwt_rls'").fetchone()
            assert admin.execute("SHOW jwt_rls.audience").fetchone()[0] == AUDIENCE


def test_authenticate_binds_the_token_on_every_worker_a_transaction_touches(citus):
    token = citus.signer.token(TENANT_A)
    with app(citus) as conn:
        assert seen(conn, token) == ROWS[TENANT_A]  # multi-shard: every worker
        assert seen(conn, token, "SELECT count(*) FROM docs WHERE tenant_id = %s", (TENANT_A,)) == ROWS[TENANT_A]
        assert seen(conn, token, "SELECT count(*) FROM docs WHERE tenant_id = %s", (TENANT_B,)) == 0
        assert seen(conn, citus.signer.token(TENANT_B)) == ROWS[TENANT_B]


def test_writes_are_checked_on_the_workers(citus):
    token = citus.signer.token(TENANT_A)
    with app(citus) as conn:
        with pytest.raises(psycopg.Error) as e:
            with conn.transaction():
                conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))
                conn.execute("INSERT INTO docs VALUES (%s, 999, 'x')", (TENANT_B,))
        assert e.value.sqlstate == "42501", e.value
        with conn.transaction():
            conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))
            conn.execute("INSERT INTO docs VALUES (%s, 999, 'mine')", (TENANT_A,))
            assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == ROWS[TENANT_A] + 1
            conn.execute("DELETE FROM docs WHERE id = 999")


def test_without_a_token_or_with_a_forged_one_nothing_is_seen(citus):
    with app(citus) as conn:
        assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 0
        forged = citus.signer.token(TENANT_A)[:-4] + "AAAA"
        e = error(conn, "SELECT jwt_rls.authenticate(%s)", (forged,))
        assert e is not None and e.sqlstate == "28000", e


def test_isolate_gives_a_distributed_table_policies_citus_accepts(citus):
    with citus.admin() as admin:
        admin.execute("CREATE TABLE notes (tenant_id uuid NOT NULL, body text)")
        admin.execute("SELECT create_distributed_table('notes', 'tenant_id')")
        admin.execute("GRANT SELECT, INSERT ON notes TO app")
        for tenant, n in ROWS.items():
            admin.execute("INSERT INTO notes SELECT %s, 'n' FROM generate_series(1, %s)", (tenant, n))
        said = admin.execute("SELECT jwt_rls.isolate('notes', 'tenant_id', 'tenant_id')").fetchone()[0]
        assert "jwt_rls.jwt_claim('tenant_id')::uuid" in said and "(SELECT" not in said, said
        # Idempotent there too.
        again = admin.execute("SELECT jwt_rls.isolate('notes', 'tenant_id', 'tenant_id')").fetchone()[0]
        assert again.startswith("already isolated"), again
    with app(citus) as conn:
        assert seen(conn, citus.signer.token(TENANT_B), "SELECT count(*) FROM notes") == ROWS[TENANT_B]
        assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 0


def leaks(text, token):
    return [piece[:12] for piece in [token] + token.split(".") if len(piece) >= 8 and piece in text]


def test_a_token_a_worker_refuses_fails_closed_and_no_node_logs_it(citus):
    """A key the coordinator has and the workers lack (keys are per node):
    the coordinator binds the token, each worker refuses it when a policy
    reads it, and the query fails with 28000. Neither the error nor any
    node's server log holds the token."""
    only_here = Signer("citus-coordinator-only", "HS256")
    with citus.admin() as admin, admin.cursor() as cur:
        only_here.install(cur)
    token = only_here.token(TENANT_A)
    with app(citus) as conn:
        with pytest.raises(psycopg.Error) as e:
            seen(conn, token)
        assert e.value.sqlstate == "28000", e.value
        d = e.value.diag
        text = " ".join(filter(None, [str(e.value), d.message_primary, d.message_detail, d.message_hint, d.context]))
        assert not leaks(text, token), text
    for node in citus.nodes:
        assert not leaks(node.server_log(), token), node.log


def test_a_dpop_bound_token_is_refused_on_citus_without_reaching_the_workers(citus):
    token = citus.signer.token(TENANT_A, cnf={"jkt": "A" * 43})
    with citus.admin() as admin:
        admin.execute("SET jwt_rls.dpop_require_proof = off")  # binds without a proof here
        with pytest.raises(psycopg.Error) as e:
            with admin.transaction():
                admin.execute("SELECT jwt_rls.authenticate(%s)", (token,))
        assert e.value.sqlstate == "0A000" and "citus" in e.value.diag.message_primary.lower(), e.value
        assert not leaks(str(e.value), token)
    for node in citus.nodes:
        assert not leaks(node.server_log(), token), node.log
