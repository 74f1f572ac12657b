"""jwt_rls on a Citus cluster (a coordinator and two workers on 127.0.0.1,
jwt_rls preloaded on each): a table distributed by tenant_id, FORCE RLS,
the bare `jwt_claim()` policy, the application role connected to the
coordinator. Skipped where Citus is not installed (support/citus.py).

What is checked:
- the documented binding, `authenticate()` inside a transaction, reaches
  every worker the transaction touches, and each worker verifies the token
  itself: router and multi-shard reads see exactly the token's tenant, a
  write into another tenant is refused, no token sees nothing;
- a token no node accepts binds nowhere;
- after `share_with_citus()` on the coordinator, keys, revocations and
  sessions are one store for the cluster: a key added, disabled or
  removed, a token or subject revoked, a session ended or its refresh token
  reused, through the coordinator, holds on every node from the next
  transaction, in connections that verified the token before; a node added
  later gets the current state;
- a node whose copy disagrees (changed behind Citus's back) fails closed."""

import json
import threading

import psycopg
import pytest
from jwt.algorithms import ECAlgorithm

from support import error
from support.citus import CONF as CITUS_CONF
from support.citus import CitusCluster, skip_reason
from support.jwks_server import JwksServer
from support.pgbouncer import PgBouncer
from support.pgcluster import Cluster, wait_for
from support.schema import TENANT_A, TENANT_B
from support.tokens import AUDIENCE, ISSUER, Signer

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

ROWS = {TENANT_A: 30, TENANT_B: 50}

SHARED = ["jwt_rls.jwks_sources", "jwt_rls.keys", "jwt_rls.signing_keys", "jwt_rls.decryption_keys",
          "jwt_rls.revoked_tokens", "jwt_rls.revoked_subjects", "jwt_rls.sessions", "jwt_rls.refresh_tokens"]

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
    # A JWKS endpoint the cluster trusts, and a JWKS worker configured on
    # every node (as a uniform postgresql.conf would have it).
    server = JwksServer()
    c = CitusCluster(conf=["jwt_rls.jwks_database = 'postgres'", f"jwt_rls.jwks_ca_file = '{server.ca_file}'",
                           "jwt_rls.jwks_refresh_interval = 2", "jwt_rls.jwks_timeout = 2"]).start()
    c.jwks = server
    try:
        signer = Signer("citus-hs256", "HS256")
        with c.admin() as admin:
            # One statement at a time: Citus refuses to propagate a
            # multi-statement query string.
            for statement in filter(str.strip, SCHEMA.split(";\n")):
                admin.execute(statement)
            for tenant, n in ROWS.items():
                admin.execute("INSERT INTO docs SELECT %s, g, 'doc' FROM generate_series(1, %s) g", (tenant, n))
        # One key store for the cluster, then the key, on the coordinator only.
        with c.admin() as admin, admin.cursor() as cur:
            c.audit_before = findings(admin)
            shared = {r[0] for r in admin.execute("SELECT * FROM jwt_rls.share_with_citus()")}
            assert shared == set(SHARED), shared
            signer.install(cur)
        c.signer = signer
        yield c
    finally:
        c.remove()
        server.stop()


def findings(conn):
    return {(r[0], r[1]): r for r in conn.execute("SELECT severity, object, finding, fix FROM jwt_rls.audit()")}


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


def test_insert_select_a_cte_and_a_delegated_function_see_only_the_tokens_tenant(citus):
    with citus.admin() as admin:
        admin.execute("CREATE TABLE docs_copy (tenant_id uuid NOT NULL, id int NOT NULL, body text)")
        admin.execute("SELECT create_distributed_table('docs_copy', 'tenant_id', colocate_with => 'docs')")
        admin.execute("GRANT SELECT, INSERT, DELETE ON docs_copy TO app")
        admin.execute("CREATE FUNCTION docs_of(t uuid) RETURNS bigint LANGUAGE sql AS "
                      "$$ SELECT count(*) FROM docs WHERE tenant_id = t $$")
        admin.execute("SELECT create_distributed_function('docs_of(uuid)', 't', colocate_with => 'docs')")
        admin.execute("GRANT EXECUTE ON FUNCTION docs_of(uuid) TO app")
    token = citus.signer.token(TENANT_A)
    try:
        with app(citus) as conn:
            with conn.transaction():
                conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))
                # INSERT ... SELECT: the SELECT sees the token's tenant only.
                conn.execute("INSERT INTO docs_copy SELECT * FROM docs")
            with citus.admin() as admin:
                assert admin.execute("SELECT tenant_id, count(*) FROM docs_copy GROUP BY 1").fetchall() \
                    == [(TENANT_A, ROWS[TENANT_A])]
            assert seen(conn, token, "WITH d AS (SELECT tenant_id FROM docs) "
                                     "SELECT count(*) FROM d JOIN docs_copy c USING (tenant_id)") \
                == ROWS[TENANT_A] * ROWS[TENANT_A]
            assert seen(conn, token, "SELECT docs_of(%s)", (TENANT_A,)) == ROWS[TENANT_A]
            assert seen(conn, token, "SELECT docs_of(%s)", (TENANT_B,)) == 0
            assert conn.execute("SELECT docs_of(%s)", (TENANT_A,)).fetchone()[0] == 0
    finally:
        with citus.admin() as admin:
            admin.execute("DROP TABLE docs_copy")
            admin.execute("DROP FUNCTION docs_of(uuid)")


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


def placement(conn, table):
    """The name of `table`'s placement (Citus shard) on the node of conn."""
    shard = conn.execute("SELECT shardid FROM pg_dist_shard WHERE logicalrelid = %s::regclass",
                         (table,)).fetchone()[0]
    return f"{table}_{shard}"


def test_a_token_a_worker_refuses_fails_closed_and_no_node_logs_it(citus):
    """A key one worker's copy has disabled (changed behind Citus's back,
    directly in that node's placement): the coordinator binds the token,
    that worker refuses it when a policy reads it, and the query fails with
    28000. Neither the error nor any node's server log holds the token."""
    only_here = Signer("citus-diverged", "HS256")
    with citus.admin() as admin, admin.cursor() as cur:
        only_here.install(cur)
    worker = citus.workers[0]
    with citus.admin(worker) as admin:
        admin.execute(f"UPDATE {placement(admin, 'jwt_rls.keys')} SET enabled = false WHERE kid = %s",
                      (only_here.kid,))
    token = only_here.token(TENANT_A)
    try:
        with app(citus) as conn:
            with pytest.raises(psycopg.Error) as e:
                seen(conn, token)
            assert e.value.sqlstate == "28000", e.value
            d = e.value.diag
            text = " ".join(filter(None, [str(e.value), d.message_primary, d.message_detail, d.message_hint,
                                          d.context]))
            assert not leaks(text, token), text
    finally:
        with citus.admin() as admin:
            admin.execute("SELECT jwt_rls.remove_key(%s)", (only_here.kid,))
    for node in citus.nodes:
        assert not leaks(node.server_log(), token), node.log


def test_share_with_citus_makes_the_tables_reference_tables_once_from_the_coordinator(citus):
    with citus.admin() as admin:
        kinds = dict(admin.execute("SELECT logicalrelid::text, partmethod::text || repmodel::text FROM pg_dist_partition "
                                   "WHERE logicalrelid::text LIKE 'jwt_rls.%'").fetchall())
        assert kinds == {t: "nt" for t in SHARED}, kinds
        assert admin.execute("SELECT count(*) FROM jwt_rls.share_with_citus()").fetchone()[0] == 0
        # The foreign keys are back, on every node.
        for node in citus.nodes:
            with citus.admin(node) as there:
                fks = there.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                                    "AND conrelid::regclass::text IN ('jwt_rls.keys', 'jwt_rls.signing_keys', "
                                    "'jwt_rls.refresh_tokens')").fetchone()[0]
                assert fks == 3, (node.port, fks)
    with citus.admin(citus.workers[0]) as worker:
        e = error(worker, "SELECT jwt_rls.share_with_citus()")
        assert e is not None and e.sqlstate == "0A000" and "coordinator" in e.diag.message_primary, e
    with app(citus) as conn:
        e = error(conn, "SELECT jwt_rls.share_with_citus()")
        assert e is not None and e.sqlstate == "42501", e


def verifies(conn, token):
    """None when `token` binds on conn's node (a superuser connection
    straight to it), else the SQLSTATE it is refused with."""
    e = error(conn, "SELECT jwt_rls.authenticate(%s)", (token,))
    return None if e is None else e.sqlstate


def on_every_node(citus):
    """Superuser connections straight to every node, opened now: they verify
    tokens before a change and must see the change after it."""
    return [citus.admin(node) for node in citus.nodes]


def test_a_key_added_then_disabled_on_the_coordinator_holds_on_every_node(citus):
    signer = Signer("citus-rotated", "ES256")
    with citus.admin() as admin, admin.cursor() as cur:
        signer.install(cur)
    token = signer.token(TENANT_A)
    conns = on_every_node(citus)
    try:
        assert [verifies(c, token) for c in conns] == [None] * len(conns)
        with citus.admin() as admin:
            assert admin.execute("SELECT jwt_rls.disable_key(%s)", (signer.kid,)).fetchone()[0]
        assert [verifies(c, token) for c in conns] == ["28000"] * len(conns)
        with app(citus) as conn:
            assert error(conn, "SELECT jwt_rls.authenticate(%s)", (token,)).sqlstate == "28000"
        with citus.admin() as admin:
            admin.execute("SELECT jwt_rls.enable_key(%s)", (signer.kid,))
        assert [verifies(c, token) for c in conns] == [None] * len(conns)
        with citus.admin() as admin:
            admin.execute("SELECT jwt_rls.remove_key(%s)", (signer.kid,))
        assert [verifies(c, token) for c in conns] == ["28000"] * len(conns)
    finally:
        for c in conns:
            c.close()


def test_a_revocation_on_the_coordinator_holds_on_every_node_and_in_shard_queries(citus):
    revoked = citus.signer.token(TENANT_A, jti="citus-revoked-1")
    subject = citus.signer.token(TENANT_B, sub="citus-subject-1", jti="citus-kept-1")
    kept = citus.signer.token(TENANT_B, jti="citus-kept-2")
    conns = on_every_node(citus)
    try:
        assert [verifies(c, revoked) for c in conns] == [None] * len(conns)
        assert [verifies(c, subject) for c in conns] == [None] * len(conns)
        with citus.admin() as admin:
            admin.execute("SELECT jwt_rls.revoke_jti('citus-revoked-1', now() + interval '1 hour')")
            admin.execute("SELECT jwt_rls.revoke_subject('citus-subject-1')")
        assert [verifies(c, revoked) for c in conns] == ["28000"] * len(conns)
        assert [verifies(c, subject) for c in conns] == ["28000"] * len(conns)
        # The workers look the lists up inside the shard queries a policy
        # runs in (their own placements, not a distributed query).
        with app(citus) as conn:
            assert seen(conn, kept) == ROWS[TENANT_B]
            assert seen(conn, kept, "SELECT count(*) FROM docs WHERE tenant_id = %s", (TENANT_B,)) == ROWS[TENANT_B]
            assert error(conn, "SELECT jwt_rls.authenticate(%s)", (revoked,)).sqlstate == "28000"
    finally:
        for c in conns:
            c.close()


def claims(tenant):
    return json.dumps({"tenant_id": str(tenant), "iss": ISSUER, "aud": AUDIENCE})


def test_sessions_started_on_the_coordinator_end_and_detect_reuse_on_every_node(citus):
    with citus.admin() as admin:
        admin.execute("SELECT jwt_rls.generate_signing_key('citus-signing', 'ES256')")
        ended = admin.execute("SELECT access_token, session_id FROM jwt_rls.start_session(%s, %s)",
                              ("citus-user-1", claims(TENANT_A))).fetchone()
        reused = admin.execute("SELECT access_token, refresh_token FROM jwt_rls.start_session(%s, %s)",
                               ("citus-user-2", claims(TENANT_B))).fetchone()
    conns = on_every_node(citus)
    try:
        with app(citus) as conn:
            assert seen(conn, ended[0]) == ROWS[TENANT_A]
        assert [verifies(c, ended[0]) for c in conns] == [None] * len(conns)
        assert [verifies(c, reused[0]) for c in conns] == [None] * len(conns)
        with citus.admin() as admin:
            assert admin.execute("SELECT jwt_rls.end_session(%s)", (ended[1],)).fetchone()[0]
            # One rotation, then the same refresh token again: reuse.
            fresh = admin.execute("SELECT access_token FROM jwt_rls.rotate_refresh_token(%s)",
                                  (reused[1],)).fetchone()[0]
            assert fresh is not None
            with pytest.raises(psycopg.Error) as e:
                admin.execute("CALL jwt_rls.refresh(%s, NULL, NULL, NULL)", (reused[1],))
            assert e.value.sqlstate == "28000", e.value
        assert [verifies(c, ended[0]) for c in conns] == ["28000"] * len(conns)
        # Reuse revoked the whole family, the rotated token's too, everywhere.
        assert [verifies(c, reused[0]) for c in conns] == ["28000"] * len(conns)
        assert [verifies(c, fresh) for c in conns] == ["28000"] * len(conns)
        with app(citus) as conn:
            assert error(conn, "SELECT jwt_rls.authenticate(%s)", (fresh,)).sqlstate == "28000"
    finally:
        for c in conns:
            c.close()


PROVIDER = Signer("citus-provider-1", "ES256")


def provider_source(citus):
    """The JWKS URL source serving PROVIDER's key, added on the coordinator
    (once), with the key fetched; returns its URL."""
    jwk = json.loads(ECAlgorithm.to_jwk(PROVIDER.key.public_key()))
    citus.jwks.keys = [dict(jwk, kid=PROVIDER.kid, alg="ES256", use="sig")]
    url = citus.jwks.issuer + "/jwks.json"
    with citus.admin() as admin:
        admin.execute("INSERT INTO jwt_rls.jwks_sources (jwks_uri) VALUES (%s) ON CONFLICT DO NOTHING", (url,))
        assert wait_for(lambda: admin.execute("SELECT count(*) FROM jwt_rls.keys WHERE kid = %s",
                                              (PROVIDER.kid,)).fetchone()[0] == 1, timeout=20)
    return url


def test_keys_of_a_shared_jwks_source_are_fetched_once_for_the_cluster(citus):
    """Every node runs a JWKS worker; once the sources are shared, only the
    coordinator's fetches, and its keys verify on every node."""
    provider = PROVIDER
    provider_source(citus)
    with citus.admin() as admin:
        assert admin.execute("SELECT last_error FROM jwt_rls.jwks_sources").fetchone()[0] is None
    conns = on_every_node(citus)
    try:
        assert [verifies(c, provider.token(TENANT_A)) for c in conns] == [None] * len(conns)
    finally:
        for c in conns:
            c.close()
    following = "the coordinator's worker fetches them"
    assert following not in citus.coordinator.server_log()
    for node in citus.workers:
        log = node.server_log()
        assert following in log, node.log
        assert "fetching JWKS source" not in log, node.log


def test_a_shared_source_given_an_issuer_changes_what_open_connections_accept_on_every_node(citus):
    """A fetched key verifies only its source's issuer's tokens. Every
    node's copy of jwt_rls.jwks_sources carries the trigger that announces
    an issuer change, so giving the source an issuer on the coordinator
    refuses the other issuer's tokens in connections already open on every
    node, and taking it back accepts them again."""
    url = provider_source(citus)
    token = PROVIDER.token(TENANT_A)
    conns = on_every_node(citus)
    try:
        for c in conns:
            c.execute("SET citus.show_shards_for_app_name_prefixes = '*'")
            n = c.execute("SELECT count(*) FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid "
                          "WHERE t.tgname LIKE 'jwks\\_sources\\_changed\\_%' AND r.relname LIKE 'jwks\\_sources\\_%'"
                          ).fetchone()[0]
            # (Citus names a placement's copy of a trigger after its shard.)
            assert n == 1, "the node's placement carries the trigger"
        assert [verifies(c, token) for c in conns] == [None] * len(conns)
        with citus.admin() as admin:
            admin.execute("UPDATE jwt_rls.jwks_sources SET jwks_uri = NULL, issuer = 'https://moved.example' "
                          "WHERE jwks_uri = %s", (url,))
        try:
            for c in conns:
                e = error(c, "SELECT jwt_rls.authenticate(%s)", (token,))
                assert e is not None and e.sqlstate == "28000", e
                assert e.diag.message_primary == "token issuer is not accepted", e
        finally:
            with citus.admin() as admin:
                admin.execute("UPDATE jwt_rls.jwks_sources SET issuer = NULL, jwks_uri = %s "
                              "WHERE issuer = 'https://moved.example'", (url,))
        assert [verifies(c, token) for c in conns] == [None] * len(conns)
    finally:
        for c in conns:
            c.close()


def test_refresh_and_revocation_through_a_worker_hold_on_every_node(citus):
    """Citus lets a worker (it holds the metadata) write reference tables:
    a session rotated and a token revoked through one worker hold on the
    other nodes."""
    with citus.admin() as admin:
        admin.execute("SELECT jwt_rls.generate_signing_key('citus-signing-w', 'ES256')")
    with citus.admin(citus.workers[0]) as worker:
        access, refresh = worker.execute("SELECT access_token, refresh_token FROM jwt_rls.start_session(%s, %s)",
                                          ("citus-user-3", claims(TENANT_A))).fetchone()
        rotated = worker.execute("SELECT access_token FROM jwt_rls.rotate_refresh_token(%s)",
                                 (refresh,)).fetchone()[0]
        revoked = citus.signer.token(TENANT_A, jti="citus-revoked-w")
        worker.execute("SELECT jwt_rls.revoke_jti('citus-revoked-w', now() + interval '1 hour')")
    conns = on_every_node(citus)
    try:
        assert [verifies(c, rotated) for c in conns] == [None] * len(conns)
        assert [verifies(c, revoked) for c in conns] == ["28000"] * len(conns)
        with citus.admin(citus.workers[1]) as other:
            with pytest.raises(psycopg.Error) as e:
                other.execute("CALL jwt_rls.refresh(%s, NULL, NULL, NULL)", (refresh,))
            assert e.value.sqlstate == "28000", e.value
        assert [verifies(c, rotated) for c in conns] == ["28000"] * len(conns)
        assert [verifies(c, access) for c in conns] == ["28000"] * len(conns)
    finally:
        for c in conns:
            c.close()


def test_a_refresh_storm_across_the_nodes_has_one_winner_and_revokes_the_family(citus):
    """Eight clients present one refresh token at once, through the
    coordinator and both workers: one rotation wins, every other is reuse,
    and the family is revoked on every node."""
    with citus.admin() as admin:
        admin.execute("SELECT jwt_rls.generate_signing_key('citus-signing-s', 'ES256')")
        access, refresh, sid = admin.execute(
            "SELECT access_token, refresh_token, session_id FROM jwt_rls.start_session(%s, %s)",
            ("citus-user-storm", claims(TENANT_A))).fetchone()
    n = 8
    barrier = threading.Barrier(n)
    outcomes = []

    def racer(node):
        with citus.admin(node) as conn:
            barrier.wait()
            try:
                outcomes.append(("ok", conn.execute("CALL jwt_rls.refresh(%s, NULL, NULL, NULL)",
                                                    (refresh,)).fetchone()))
            except psycopg.Error as e:
                outcomes.append((e.sqlstate, None))

    threads = [threading.Thread(target=racer, args=(citus.nodes[i % 3],)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for o, r in outcomes if o == "ok"]
    assert len(winners) == 1 and [o for o, _ in outcomes].count("28000") == n - 1, outcomes
    with citus.admin() as admin:
        assert admin.execute("SELECT revoked_reason FROM jwt_rls.sessions WHERE id = %s",
                             (sid,)).fetchone()[0] == "refresh token reused"
        assert admin.execute("SELECT count(*) FROM jwt_rls.refresh_tokens WHERE session_id = %s",
                             (sid,)).fetchone()[0] == 2
    conns = on_every_node(citus)
    try:
        assert [verifies(c, winners[0][0]) for c in conns] == ["28000"] * len(conns)
        assert [verifies(c, access) for c in conns] == ["28000"] * len(conns)
    finally:
        for c in conns:
            c.close()


def test_audit_says_when_the_tables_are_not_shared_and_when_a_table_is_distributed_by_another_column(citus):
    unshared = citus.audit_before.get(("high", "extension jwt_rls"))
    assert unshared and "share_with_citus()" in unshared[3], citus.audit_before
    with citus.admin() as admin:
        assert ("high", "extension jwt_rls") not in findings(admin)
        admin.execute("CREATE TABLE events (tenant_id uuid NOT NULL, id bigint NOT NULL)")
        admin.execute("SELECT create_distributed_table('events', 'id')")
        admin.execute("SELECT jwt_rls.isolate('events', 'tenant_id', 'tenant_id')")
        found = findings(admin)
        wrong = found.get(("medium", "table public.events"))
        assert wrong and "distributed by id" in wrong[2] and "distribution_column := 'tenant_id'" in wrong[3], found
        assert ("medium", "table public.docs") not in found, found
        admin.execute("DROP TABLE events")


def test_audit_on_a_worker_finds_a_shard_without_the_row_level_security_of_its_table(citus):
    worker = citus.workers[0]
    with citus.admin(worker) as admin:
        shard = admin.execute(
            "SELECT 'docs_' || s.shardid FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) "
            "WHERE s.logicalrelid = 'docs'::regclass AND p.groupid = (SELECT groupid FROM pg_dist_local_group) "
            "LIMIT 1").fetchone()[0]
        assert not any(k[1] == f"table public.{shard}" for k in findings(admin))
        admin.execute(f"ALTER TABLE {shard} NO FORCE ROW LEVEL SECURITY")
        try:
            found = findings(admin).get(("critical", f"table public.{shard}"))
            assert found and "not forced" in found[2] and "FORCE ROW LEVEL SECURITY" in found[3], found
        finally:
            admin.execute(f"ALTER TABLE {shard} FORCE ROW LEVEL SECURITY")
        assert not any(k[1] == f"table public.{shard}" for k in findings(admin))


def test_a_node_added_later_fails_closed_until_it_has_the_copies_then_follows_every_change(citus):
    late = Cluster(conf=CITUS_CONF)
    try:
        late.start()
        with citus.admin(late) as admin:
            admin.execute("CREATE EXTENSION citus")
        with citus.admin() as admin:
            admin.execute("SELECT citus_add_node('127.0.0.1', %s)", (late.port,))
        token = citus.signer.token(TENANT_A, jti="citus-late-1")
        with citus.admin(late) as there:
            # Citus knows the tables are shared, the node has no copy yet:
            # refused, not read from another node's copy.
            e = error(there, "SELECT jwt_rls.authenticate(%s)", (token,))
            assert e is not None and e.sqlstate == "55000" and "no copy" in e.diag.message_primary, e
        with citus.admin() as admin:
            # Citus copies reference tables to a new node when asked (or
            # when a distributed table's shards move there); without
            # logical replication here, by blocking writes for the copy.
            admin.execute("SELECT replicate_reference_tables('block_writes')")
        with citus.admin(late) as there:
            assert there.execute("SHOW jwt_rls.audience").fetchone()[0] == AUDIENCE
            assert verifies(there, token) is None
            # The copies came with the triggers that announce a change.
            there.execute("SET citus.show_shards_for_app_name_prefixes = '*'")
            triggers = there.execute(
                "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE c.relname LIKE 'revoked\\_tokens\\_%' AND NOT t.tgisinternal").fetchone()[0]
            assert triggers == 1, triggers
            with citus.admin() as admin:
                admin.execute("SELECT jwt_rls.revoke_jti('citus-late-1', now() + interval '1 hour')")
            # The same connection, which verified the token before.
            assert verifies(there, token) == "28000"
    finally:
        with citus.admin() as admin:
            admin.execute("SELECT citus_remove_node('127.0.0.1', %s)", (late.port,))
        late.remove()


def test_share_with_citus_refuses_while_a_worker_holds_rows_of_its_own():
    """A revocation recorded only on a worker (the per-node way before
    sharing) would be lifted once the workers read the shared copies: the
    call refuses, naming the worker, until it is moved and emptied."""
    c = CitusCluster(workers=1).start()
    try:
        with c.admin() as admin:
            admin.execute("CREATE EXTENSION jwt_rls")
        with c.admin(c.workers[0]) as worker:
            worker.execute("SELECT jwt_rls.revoke_jti('only-here', now() + interval '1 hour')")
        with c.admin() as admin:
            e = error(admin, "SELECT jwt_rls.share_with_citus()")
            assert e is not None and e.sqlstate == "55000", e
            assert f"127.0.0.1:{c.workers[0].port} (1 rows)" in e.diag.message_detail, e.diag.message_detail
            assert admin.execute("SELECT count(*) FROM pg_dist_partition").fetchone()[0] == 0
            admin.execute("SELECT jwt_rls.revoke_jti('only-here', now() + interval '1 hour')")
        with c.admin(c.workers[0]) as worker:
            worker.execute("TRUNCATE jwt_rls.revoked_tokens")
        with c.admin() as admin, admin.transaction():
            assert admin.execute("SELECT count(*) FROM jwt_rls.share_with_citus()").fetchone()[0] == len(SHARED)
            # What it turned on for itself is off again for the rest of the transaction.
            assert admin.execute("SHOW citus.enable_unsafe_triggers").fetchone()[0] == "off"
        with c.admin(c.workers[0]) as worker:
            assert worker.execute("SELECT count(*) FROM jwt_rls.revoked_tokens WHERE jti = 'only-here'"
                                  ).fetchone()[0] == 1
    finally:
        c.remove()


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


def test_behind_pgbouncer_pooled_transactions_of_two_tenants_see_only_their_own(citus):
    """PgBouncer in transaction mode (two server connections) in front of
    the coordinator, six clients alternating tenants: every transaction
    sees exactly its token's rows, and one without a token right after sees
    none, on the coordinator's pooled connections and on the worker
    connections Citus keeps open between transactions."""
    tokens = {t: citus.signer.token(t) for t in ROWS}
    failures = []
    with PgBouncer(citus.coordinator, "transaction", pool_size=2) as bouncer:
        def client(k):
            try:
                with psycopg.connect(bouncer.dsn(), autocommit=True, prepare_threshold=None) as conn:
                    for i in range(10):
                        tenant = list(ROWS)[(k + i) % 2]
                        if seen(conn, tokens[tenant]) != ROWS[tenant]:
                            failures.append((k, i, tenant))
                        if conn.execute("SELECT count(*) FROM docs").fetchone()[0] != 0:
                            failures.append((k, i, "no token"))
            except Exception as e:  # noqa: BLE001 (reported below)
                failures.append((k, repr(e)))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == [], failures[:5]


def owner_of(citus, tenant):
    """The worker whose shard holds `tenant`'s rows of docs."""
    with citus.admin() as admin:
        port = admin.execute("SELECT nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid) "
                             "WHERE p.shardid = get_shard_id_for_distribution_column('docs', %s::uuid)",
                             (str(tenant),)).fetchone()[0]
    return next(w for w in citus.workers if w.port == port)


def test_a_worker_going_down_and_coming_back_leaks_nothing_and_recovers(citus):
    """Runs last (it stops a worker). While a worker is down: a query that
    needs it fails, one that does not sees exactly its tenant's rows, a
    revocation (a write to every copy) fails rather than applying on some
    nodes only; nothing is seen without a token. Once it is back, every
    query works again, isolated, and a revocation reaches it."""
    down = owner_of(citus, TENANT_A)
    up_tenant = next((t for t in ROWS if owner_of(citus, t) is not down), None)
    assert up_tenant is not None, "both tenants' shards are on one worker: the scenario needs them apart"
    token_a = citus.signer.token(TENANT_A, jti="citus-down-a")
    down.stop()
    try:
        with app(citus) as conn:
            with pytest.raises(psycopg.Error):
                seen(conn, token_a)
            token = citus.signer.token(up_tenant)
            assert seen(conn, token, "SELECT count(*) FROM docs WHERE tenant_id = %s",
                        (up_tenant,)) == ROWS[up_tenant]
            assert error(conn, "SELECT count(*) FROM docs WHERE tenant_id = %s", (TENANT_A,)) is not None
        with citus.admin() as admin:
            assert error(admin, "SELECT jwt_rls.revoke_jti('citus-down-a', now() + interval '1 hour')") is not None
            assert admin.execute("SELECT count(*) FROM jwt_rls.revoked_tokens WHERE jti = 'citus-down-a'"
                                 ).fetchone()[0] == 0
    finally:
        down.start()
    with app(citus) as conn:
        assert wait_for(lambda: error(conn, "SELECT 1 FROM docs LIMIT 1") is None, timeout=30)
        for tenant in ROWS:
            assert seen(conn, citus.signer.token(tenant)) == ROWS[tenant]
        assert seen(conn, token_a) == ROWS[TENANT_A]
        assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == 0
    with citus.admin() as admin:
        admin.execute("SELECT jwt_rls.revoke_jti('citus-down-a', now() + interval '1 hour')")
    with citus.admin(down) as there:
        assert verifies(there, token_a) == "28000"
    with app(citus) as conn:
        assert error(conn, "SELECT jwt_rls.authenticate(%s)", (token_a,)).sqlstate == "28000"
