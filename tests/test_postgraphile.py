"""PostGraphile v4 in front of jwt_rls, through PgBouncer in transaction
mode (issue #34, docs/guides/postgraphile.md).

tests/postgraphile/server.js runs PostGraphile with no jwtSecret: its
pgSettings hands the request's bearer token to `jwt_rls.token`
(`set_config(..., true)` at the start of each request's transaction), and
the database verifies it. PostGraphile connects as `app` (not superuser, not
the owner, no BYPASSRLS) through a PgBouncer with ONE server connection, so
every request of every tenant runs on the same backend, one after another.

Proved over HTTP, with tokens signed by PyJWT: each tenant's GraphQL query
returns only its invoices; no token returns none (HTTP 200, no error), even
when another client of the pool left a session-level token on the server
connection; forged, expired and malformed tokens fail the request with
jwt_rls's message, its SQLSTATE and HTTP 401, and no token text in the
response or PostGraphile's log; a tenant cannot create an invoice for
another or delete another's; 300 interleaved requests of both tenants, with
and without tokens, never see another's rows. And two realistic details:
PostGraphile's prepared statement cache breaks behind PgBouncer 1.18
(POSTGRAPHILE_PREPARED_STATEMENT_CACHE_SIZE=0 is needed), and watch mode
does not see schema changes through a transaction pooler (its LISTEN is
lost), while connected directly it does.

Runs on PostgreSQL 15 only; skips without node 20+ or
tests/postgraphile/node_modules (`bash scripts/setup.sh` runs npm ci)."""

import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import psycopg
import pytest

from support import b64url, b64url_decode
from support.pgbouncer import PgBouncer
from support.pgcluster import Cluster, read_text, wait_for
from support.schema import ROWS, SCHEMA, TENANT_A, TENANT_B, insert_invoices
from support.tokens import Signer

NODE_DIR = os.path.join(os.path.dirname(__file__), "postgraphile")
SERVER = os.path.join(NODE_DIR, "server.js")
INVOICES = "{ allInvoices(orderBy: ID_ASC) { totalCount nodes { id tenantId amount } } }"


def cannot_run():
    """Why this file cannot run here, or None."""
    if os.environ.get("PG_MAJOR", "15") != "15":
        return ("runs on PostgreSQL 15 only: PostGraphile is a client and talks to every major alike; "
                "one major keeps CI within its time")
    node = shutil.which("node")
    if node is None:
        return "node is not installed (bash scripts/setup.sh installs it)"
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "postgraphile")):
        return "tests/postgraphile/node_modules is missing (bash scripts/setup.sh runs npm ci there)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        return f"node {version} is older than the tested 20"
    return None


def pgbouncer_version():
    out = subprocess.run(["/usr/sbin/pgbouncer", "--version"], capture_output=True, text=True).stdout
    return tuple(int(n) for n in re.search(r"PgBouncer (\d+)\.(\d+)", out).groups())


class PostGraphile:
    """`node server.js` on 127.0.0.1 with `database_url`; its output (the
    query log and any error it logs) goes to one file, read by log()."""

    def __init__(self, database_url, pool_size=2, **env):
        self.dir = tempfile.mkdtemp(prefix="jwt_rls_postgraphile_")
        self.logfile = os.path.join(self.dir, "server.log")
        environ = {**os.environ, "DATABASE_URL": database_url, "POOL_SIZE": str(pool_size), "PORT": "0", **env}
        with open(self.logfile, "wb") as out:
            self.proc = subprocess.Popen(["node", SERVER], cwd=NODE_DIR, env=environ,
                                         stdout=out, stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda: self.proc.poll() is not None or "\n" in self.log(), 30), self.log()
            assert self.proc.poll() is None, f"PostGraphile exited: {self.log()}"
            self.port = json.loads(self.log().split("\n", 1)[0])["port"]
            # The first request waits for the introspection of the schema.
            assert wait_for(lambda: self.ready(), 60, step=0.5), f"PostGraphile never answered: {self.log()}"
        except BaseException:
            self.stop()
            raise

    def ready(self):
        try:
            return self.query("{ __typename }").status == 200
        except OSError:
            return False

    def query(self, query, token=None, authorization=None, variables=None):
        """POST /graphql: status, headers, body (parsed) and text (raw)."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if authorization is not None:
            headers["Authorization"] = authorization
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", "/graphql", json.dumps({"query": query, "variables": variables or {}}), headers)
            response = conn.getresponse()
            text = response.read().decode()
            return SimpleNamespace(status=response.status, headers=dict(response.headers), body=json.loads(text),
                                   text=text)
        finally:
            conn.close()

    def log(self):
        return read_text(self.logfile)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def site(signers):
    """A cluster with the two-tenant schema, the fixtures' HS256 and ES256
    keys, jwt_rls in session_preload_libraries (so that a bad token is
    refused by the set_config itself, not dropped later with a WARNING), and
    a PgBouncer in transaction mode with one server connection, as `app`."""
    if reason := cannot_run():
        pytest.skip(reason)
    c = Cluster().start()
    try:
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute(SCHEMA)
            admin.execute("ALTER DATABASE postgres SET session_preload_libraries = 'jwt_rls'")
            with admin.cursor() as cur:
                for alg in ("HS256", "ES256"):
                    signers[alg].install(cur)
                insert_invoices(cur)
        with PgBouncer(c, "transaction", pool_size=1) as bouncer:
            yield SimpleNamespace(cluster=c, bouncer=bouncer,
                                  url=f"postgres://app@127.0.0.1:{bouncer.port}/postgres",
                                  direct_url=f"postgres://app@127.0.0.1:{c.port}/postgres")
    finally:
        c.remove()


@pytest.fixture(scope="module")
def graphile(site):
    """PostGraphile as server.js runs it (prepared statement cache off), a
    pool of 2 connections to the one-server-connection PgBouncer."""
    server = PostGraphile(site.url, pool_size=2)
    try:
        yield server
    finally:
        server.stop()


def token_for(signers, tenant, **claims):
    """A fresh token of `tenant`'s user: HS256 for A, ES256 for B."""
    return signers["HS256" if tenant == TENANT_A else "ES256"].token(tenant, **claims)


def invoices(response):
    """(totalCount, tenants of the rows) of an allInvoices answer without
    errors."""
    assert response.status == 200 and "errors" not in response.body, response.text
    found = response.body["data"]["allInvoices"]
    assert found["totalCount"] == len(found["nodes"]), found
    return found["totalCount"], {node["tenantId"] for node in found["nodes"]}


def pieces(text, *tokens):
    """Pieces of `tokens` (whole, and each segment of 8 characters or more)
    found in `text`, shortened so the assertion does not print them."""
    return [piece[:12] for token in tokens for piece in [token, *token.split(".")]
            if len(piece) >= 8 and piece in text]


def with_payload(token, **changes):
    """`token` with its payload changed and its signature kept: a forgery."""
    header, payload, signature = token.split(".")
    claims = {**json.loads(b64url_decode(payload)), **changes}
    return ".".join([header, b64url(json.dumps(claims).encode()), signature])


def test_each_tenant_sees_only_its_own_invoices(graphile, signers):
    for tenant in (TENANT_A, TENANT_B):
        assert invoices(graphile.query(INVOICES, token_for(signers, tenant))) == (ROWS[tenant], {str(tenant)})


def test_a_request_without_a_token_sees_no_rows_even_after_a_session_level_token_on_the_pooled_connection(
        site, graphile, signers):
    assert invoices(graphile.query(INVOICES)) == (0, set())
    # Another client of the same pool binds tenant A's token for its session
    # (SET, not SET LOCAL). In transaction mode PgBouncer hands the server
    # connection on with that setting still in place; server.js's empty
    # token for a request without one unbinds it for that request.
    with psycopg.connect(site.bouncer.dsn(), autocommit=True, prepare_threshold=None) as other:
        other.execute("SELECT set_config('jwt_rls.token', %s, false)", (token_for(signers, TENANT_A),))
        try:
            assert other.execute("SELECT count(*) FROM invoices").fetchone()[0] == ROWS[TENANT_A]
            assert invoices(graphile.query(INVOICES)) == (0, set())
            # Still bound on the server connection: it was only overridden.
            assert other.execute("SELECT count(*) FROM invoices").fetchone()[0] == ROWS[TENANT_A]
        finally:
            other.execute("RESET jwt_rls.token")


REFUSALS = {
    # case: (how to make the Authorization header's token, SQLSTATE, message)
    "payload changed to the other tenant": (
        lambda s: with_payload(token_for(s, TENANT_A), tenant_id=str(TENANT_B)), "28000", "token signature is invalid"),
    "signed by an unknown key under a known kid": (
        lambda s: Signer("hs256-test", "HS256").token(TENANT_A), "28000", "token signature is invalid"),
    "expired": (
        lambda s: token_for(s, TENANT_A, iat=int(time.time()) - 600, nbf=int(time.time()) - 600,
                            exp=int(time.time()) - 60), "28000", "token is expired"),
    "not a token": (lambda s: "not-a-token.at-all", "22023", "token is not a JWS compact serialization"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_token_fails_the_request_with_jwt_rls_message_and_no_token_text(graphile, signers, case):
    make, state, message = REFUSALS[case]
    token = make(signers)
    r = graphile.query(INVOICES, token)
    assert r.status == 401 and r.headers.get("WWW-Authenticate") == 'Bearer error="invalid_token"', r.text
    assert r.body.get("data") is None, r.text  # nothing was run
    [error] = r.body["errors"]
    assert (error["extensions"], error["message"]) == ({"sqlstate": state}, message), r.text
    assert not pieces(r.text, token) and not pieces(graphile.log(), token)
    # The same pooled connection serves the next request normally.
    assert invoices(graphile.query(INVOICES, token_for(signers, TENANT_B))) == (ROWS[TENANT_B], {str(TENANT_B)})


def test_without_session_preload_a_forged_token_on_a_fresh_server_connection_sees_nothing_instead_of_failing(
        site, graphile, signers):
    """Why the guide says session_preload_libraries: until a backend has
    loaded jwt_rls, set_config stores the token unchecked; the library,
    loaded by the policy, drops it with a WARNING. Fail closed, but the
    client gets no error, and only on fresh server connections."""
    forged = with_payload(token_for(signers, TENANT_A), tenant_id=str(TENANT_B))

    def new_server_connections(preload):
        with psycopg.connect(site.cluster.dsn(), autocommit=True) as admin:
            admin.execute("ALTER DATABASE postgres SET session_preload_libraries = 'jwt_rls'" if preload else
                          "ALTER DATABASE postgres RESET session_preload_libraries")
            admin.execute("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = 'app'")

    warning = "WARNING:  token signature is invalid"
    new_server_connections(preload=False)
    try:
        before = site.cluster.server_log().count(warning)
        assert invoices(graphile.query(INVOICES, forged)) == (0, set())
        assert site.cluster.server_log().count(warning) == before + 1
        # The same server connection has loaded jwt_rls now: refused.
        assert graphile.query(INVOICES, forged).status == 401
    finally:
        new_server_connections(preload=True)
    assert graphile.query(INVOICES, forged).status == 401


def test_an_authorization_header_that_is_not_bearer_is_refused_before_the_database(graphile):
    for header in ["Basic YXBwOnNlY3JldA==", "Bearer", "Bearer a b"]:
        r = graphile.query(INVOICES, authorization=header)
        assert r.status == 401 and r.body.get("data") is None, (header, r.text)
        assert [e["message"] for e in r.body["errors"]] == ['the Authorization header must be "Bearer <token>"']


CREATE = """mutation($tenant: UUID!) {
  createInvoice(input: {invoice: {tenantId: $tenant, amount: 7, note: "graphql"}}) { invoice { id tenantId } }
}"""
DELETE = "mutation($id: BigInt!) { deleteInvoiceById(input: {id: $id}) { deletedInvoiceId } }"


def test_a_tenant_cannot_create_another_tenants_invoice_nor_delete_one(graphile, signers):
    a, b = token_for(signers, TENANT_A), token_for(signers, TENANT_B)
    r = graphile.query(CREATE, a, variables={"tenant": str(TENANT_B)})
    assert r.status == 200 and r.body["data"] == {"createInvoice": None}, r.text
    [error] = r.body["errors"]
    assert error["extensions"] == {"sqlstate": "42501"}, r.text
    assert error["message"] == 'new row violates row-level security policy for table "invoices"'
    assert invoices(graphile.query(INVOICES, b)) == (ROWS[TENANT_B], {str(TENANT_B)})

    created = graphile.query(CREATE, a, variables={"tenant": str(TENANT_A)}).body["data"]["createInvoice"]["invoice"]
    try:
        assert created["tenantId"] == str(TENANT_A)
        assert invoices(graphile.query(INVOICES, a)) == (ROWS[TENANT_A] + 1, {str(TENANT_A)})
        # B cannot see A's new invoice, so cannot delete it.
        r = graphile.query(DELETE, b, variables={"id": created["id"]})
        assert r.body["data"] == {"deleteInvoiceById": None} and r.body["errors"], r.text
        assert invoices(graphile.query(INVOICES, a)) == (ROWS[TENANT_A] + 1, {str(TENANT_A)})
    finally:
        r = graphile.query(DELETE, a, variables={"id": created["id"]})
    assert "errors" not in r.body, r.text
    assert invoices(graphile.query(INVOICES, a)) == (ROWS[TENANT_A], {str(TENANT_A)})


def test_interleaved_requests_of_both_tenants_on_one_server_connection_never_leak(site, graphile, signers):
    kinds = ["A", "B", "none", "A", "forged", "B"]
    expected = {"A": (ROWS[TENANT_A], {str(TENANT_A)}), "B": (ROWS[TENANT_B], {str(TENANT_B)}),
                "none": (0, set())}
    in_flight, most, lock, sent = 0, 0, threading.Lock(), []

    def request(i):
        nonlocal in_flight, most
        kind = kinds[i % len(kinds)]
        token = {"A": lambda: token_for(signers, TENANT_A), "B": lambda: token_for(signers, TENANT_B),
                 "none": lambda: None,
                 "forged": lambda: with_payload(token_for(signers, TENANT_B), tenant_id=str(TENANT_A))}[kind]()
        if token:
            sent.append(token)
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            r = graphile.query(INVOICES, token)
        finally:
            with lock:
                in_flight -= 1
        if kind == "forged":
            ok = r.status == 401 and r.body["errors"][0]["extensions"] == {"sqlstate": "28000"}
            return None if ok else f"request {i} ({kind}): {r.status} {r.text[:200]}"
        try:
            seen = invoices(r)
        except AssertionError:
            return f"request {i} ({kind}): {r.status} {r.text[:200]}"
        return None if seen == expected[kind] else f"request {i} ({kind}) saw {seen}"

    with ThreadPoolExecutor(8) as pool:
        wrong = [w for w in pool.map(request, range(300)) if w]
    assert not wrong, "\n".join(wrong[:20])
    assert most > 2, f"at most {most} requests were in flight: nothing was interleaved"
    with psycopg.connect(site.cluster.dsn(), autocommit=True) as admin:
        backends = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'").fetchone()[0]
    assert backends == 1, f"{backends} server connections as app: the requests did not share one"
    assert not pieces(graphile.log(), *sent)


def test_postgraphile_prepared_statement_cache_fails_behind_pgbouncer_1_18(site, signers):
    """What server.js's POSTGRAPHILE_PREPARED_STATEMENT_CACHE_SIZE=0 avoids:
    with PostGraphile's default cache (100), its two pool connections
    prepare the same statement name on PgBouncer's one server connection."""
    if pgbouncer_version() >= (1, 21):
        pytest.skip("PgBouncer 1.21 and later can track named prepared statements (max_prepared_statements)")
    server = PostGraphile(site.url, pool_size=2, POSTGRAPHILE_PREPARED_STATEMENT_CACHE_SIZE="100")
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: server.query(INVOICES, token_for(signers, TENANT_A)), range(40)))
    finally:
        server.stop()
    failures = [e for r in answers for e in r.body.get("errors", [])]
    assert failures, "every request succeeded with the prepared statement cache on"
    kinds = {(e["extensions"]["sqlstate"], re.sub(r'"[^"]*"', '"…"', e["message"])) for e in failures}
    assert kinds <= {("42P05", 'prepared statement "…" already exists'),
                     ("26000", 'prepared statement "…" does not exist')}, failures


@pytest.mark.parametrize("through", ["pgbouncer", "direct"])
def test_watch_mode_sees_schema_changes_only_when_connected_directly(site, through):
    """PostGraphile's watch mode LISTENs on one of its pool's connections
    for the notifications of its event triggers. Through a transaction
    pooler that LISTEN is a statement on whichever server connection ran it:
    PgBouncer receives the notification on a server connection no client is
    linked to, logs it and drops it, and the schema stays as introspected at
    startup. Connected to Postgres directly, the new table appears."""
    table = f"watch_probe_{through}"
    field = "allWatchProbe" + through.capitalize() + "s"
    owner = f"postgres://postgres@127.0.0.1:{site.cluster.port}/postgres"  # installs the event triggers
    server = PostGraphile(site.url if through == "pgbouncer" else site.direct_url, WATCH="1",
                          OWNER_DATABASE_URL=owner)
    try:
        def visible():
            return "errors" not in server.query(f"{{ {field} {{ totalCount }} }}").body
        assert not visible()
        dropped = "got packet 'A' from server when not linked"
        before = site.bouncer.read_log().count(dropped)
        with psycopg.connect(site.cluster.dsn(), autocommit=True) as admin:
            admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
            admin.execute(f"GRANT SELECT ON {table} TO app")
        if through == "direct":
            assert wait_for(visible, 15, step=0.2), server.log()
        else:
            assert wait_for(lambda: site.bouncer.read_log().count(dropped) > before, 15), site.bouncer.read_log()
            time.sleep(2)  # what the direct connection needs is well under a second
            assert not visible(), "the schema change reached PostGraphile through PgBouncer"
    finally:
        server.stop()
