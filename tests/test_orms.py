"""The ORM recipes of docs/guides/orms.md, executed (issue #34): node-postgres,
Prisma (7, @prisma/adapter-pg, no engine download), Kysely and TypeORM in
tests/orms/node/, psycopg_pool, SQLAlchemy, Django and asyncpg in
tests/orms/python/, each behind a real PgBouncer in transaction mode with
one server connection, so that every transaction of both tenants and every
tokenless request runs on the same backend, one after the other.

Each recipe runs ROUNDS rounds of a tenant A transaction, a tenant B
transaction and a request without a token, all started at once over a
client pool of two connections: each transaction sees its claim and only
its tenant's invoices, the tokenless requests see no claim and no rows, and
the tenants' transactions alternate on that one backend; and the recipe
left no statement prepared by name there (its prepared-statement setting).

Then the pitfalls, run through the pooler for real: a binding outside
BEGIN..COMMIT lasts one statement (the next sees nothing), and a statement
prepared (cached by name) on one server connection fails with 26000 on the
next, where the recipe's setting works. A session-level SET jwt_rls.token
would stay on the server connection for the pooler's next client; with
jwt_rls.allow_session_binding = off (the guide's advice behind a
transaction pooler) it is refused and rolled back, so nothing stays.

Runs on PostgreSQL 15 only; the Node recipes skip without node 20.19+ or
tests/orms/node/node_modules (npm ci there), the Python ones without their
packages (tests/requirements.txt)."""

import asyncio
import importlib
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from support import backend_pid, claim
from support.pgbouncer import PgBouncer
from support.pgcluster import wait_for
from support.schema import ROWS, TENANT_A, TENANT_B, count

pytestmark = pytest.mark.skipif(
    os.environ.get("PG_MAJOR", "15") != "15",
    reason="runs on PostgreSQL 15 only: the recipes exercise the clients and the pooler, not the major")

NODE_DIR = os.path.join(os.path.dirname(__file__), "orms", "node")
ROUNDS = 8
TENANTS = {"a": TENANT_A, "b": TENANT_B}


@pytest.fixture(scope="module")
def bouncer(cluster, db):
    """Transaction pooling with a single server connection for every client."""
    with PgBouncer(cluster, "transaction", pool_size=1) as b:
        yield b


def url(bouncer):
    return f"postgresql://app@127.0.0.1:{bouncer.port}/postgres"


@pytest.fixture(scope="module")
def tokens(signers):
    return {who: signers["ES256"].token(tenant, ttl=3600) for who, tenant in TENANTS.items()}


def check_isolated(results, tokens):
    """Every transaction saw its tenant only, every tokenless request
    nothing, all on one backend where the tenants took turns."""
    assert [r for r in results if "error" in r] == []
    assert sorted(r["who"] for r in results) == sorted(["a", "b", "none"] * ROUNDS)
    for r in results:
        if r["who"] == "none":
            assert (r["claim"], r["tenants"]) == (None, []), r
        else:
            tenant = str(TENANTS[r["who"]])
            assert r["claim"] == tenant, r
            assert r["tenants"] == [tenant] * ROWS[TENANTS[r["who"]]], r
    assert len({r["pid"] for r in results}) == 1, "one server connection served every client"
    order = [r["who"] for r in sorted(results, key=lambda r: r["at"]) if r["who"] != "none"]
    assert sum(x != y for x, y in zip(order, order[1:])) >= 2, order  # A after B after A on that backend
    leaked = any(t in json.dumps(results) for t in tokens.values())
    assert not leaked, "a token in what the recipe returned"


def named_statements(bouncer):
    """The statements prepared by name on the pooler's one server
    connection: a recipe that leaves one would break on PgBouncer < 1.21
    as soon as its next transaction ran on another server connection."""
    with psycopg.connect(url(bouncer), autocommit=True, prepare_threshold=None) as conn:
        return conn.execute("SELECT name, statement FROM pg_prepared_statements").fetchall()


def failure(who, e):
    # The driver's SQLSTATE; SQLAlchemy keeps the driver's error as .orig, Django as __cause__.
    sqlstate = next((getattr(x, "sqlstate") for x in (e, getattr(e, "orig", None), e.__cause__)
                     if getattr(x, "sqlstate", None)), None)
    return {"who": who, "error": {"code": sqlstate, "message": str(e)[:300]}}


# -- Node -------------------------------------------------------------------

def node_missing():
    """Why the Node recipes cannot run here, or None."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (bash scripts/setup.sh installs it)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    if tuple(int(n) for n in version.lstrip("v").split(".")[:2]) < (20, 19):
        return f"node {version} is too old for these ORMs (Prisma 7 and TypeORM 1 need 20.19 or later)"
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@prisma", "adapter-pg")):
        return "tests/orms/node/node_modules is missing (bash scripts/setup.sh runs npm ci there)"
    return None


@pytest.fixture(scope="module")
def node_recipes():
    """Skips without Node; generates the Prisma client, which must work with
    nothing downloaded (no engine binary exists on this machine)."""
    reason = node_missing()
    if reason:
        pytest.skip(reason)
    gen = subprocess.run(["npm", "run", "-s", "generate"], cwd=NODE_DIR, capture_output=True, text=True,
                         timeout=120)
    assert gen.returncode == 0, gen.stdout + gen.stderr
    return NODE_DIR


def run_node(recipe, bouncer, tokens):
    job = json.dumps({"url": url(bouncer), "tokens": tokens, "rounds": ROUNDS})
    out = subprocess.run(["node", "run.mjs", recipe], cwd=NODE_DIR, input=job, capture_output=True,
                         text=True, timeout=120)
    text = out.stdout + out.stderr
    for who, token in tokens.items():
        text = text.replace(token, f"<token {who}>")  # never a token in the test's output
    assert out.returncode == 0, text
    assert text == out.stdout + out.stderr, "a token reached the recipe's output"
    return json.loads(out.stdout)


@pytest.mark.parametrize("recipe", ["node-postgres", "prisma", "kysely", "typeorm"])
def test_node_recipe_isolates_pooled_tenants(recipe, node_recipes, bouncer, tokens):
    check_isolated(run_node(recipe, bouncer, tokens), tokens)
    assert named_statements(bouncer) == []


# -- Python -----------------------------------------------------------------

def python_recipe(name, module):
    pytest.importorskip(module, reason=f"{module} is not installed (tests/requirements.txt)")
    return importlib.import_module(f"orms.python.{name}")


def interleave(recipe, handle, tokens, finish=None):
    """ROUNDS rounds of (A, B, no token) over two threads."""
    def observe(q):
        return {**recipe.probe(q), "tenants": recipe.invoice_tenants(q)}

    def run(who):
        try:
            if who == "none":
                return {"who": who, **recipe.without_token(handle, observe)}
            return {"who": who, **recipe.as_tenant(handle, tokens[who], observe)}
        except Exception as e:  # noqa: BLE001 (reported, then asserted absent)
            return failure(who, e)

    with ThreadPoolExecutor(2) as executor:
        results = list(executor.map(run, ["a", "b", "none"] * ROUNDS))
        if finish:
            finish(executor, 2)
    return results


@pytest.mark.parametrize("name,module", [("psycopg_pool_recipe", "psycopg_pool"),
                                         ("sqlalchemy_recipe", "sqlalchemy")])
def test_python_recipe_isolates_pooled_tenants(name, module, bouncer, tokens):
    recipe = python_recipe(name, module)
    handle = recipe.connect(url(bouncer))
    try:
        results = interleave(recipe, handle, tokens)
    finally:
        recipe.close(handle)
    check_isolated(results, tokens)
    assert named_statements(bouncer) == []


def test_django_recipe_isolates_pooled_tenants(cluster, bouncer, tokens):
    """Also: a refused token stays out of the server log. PostgreSQL logs a
    failing statement's text; the recipe's server_side_binding keeps the
    token a parameter (Django's default would inline it into that text)."""
    recipe = python_recipe("django_recipe", "django")
    from django.conf import settings
    if settings.configured:
        pytest.skip("Django's settings were configured elsewhere in this process")
    recipe.configure("127.0.0.1", bouncer.port)
    check_isolated(interleave(recipe, None, tokens, finish=recipe.close_in_threads), tokens)
    assert named_statements(bouncer) == []

    forged = tokens["a"][:-6] + "AAAAAA"
    with ThreadPoolExecutor(1) as executor:
        refused = failure("a", executor.submit(recipe.as_tenant, None, forged, recipe.probe).exception())
        recipe.close_in_threads(executor, 1)
    assert refused["error"]["code"] == "28000", refused
    # The refusal is logged with its statement; the token must not be in it.
    assert wait_for(lambda: "STATEMENT:  SELECT jwt_rls.authenticate(" in cluster.server_log(), 10)
    leaked = forged in cluster.server_log()
    assert not leaked, "the refused token is in the server log"


def test_asyncpg_recipe_isolates_pooled_tenants(bouncer, tokens):
    recipe = python_recipe("asyncpg_recipe", "asyncpg")

    async def main():
        pool = await recipe.connect(url(bouncer))

        async def observe(conn):
            return {**await recipe.probe(conn), "tenants": await recipe.invoice_tenants(conn)}

        async def run(who):
            try:
                if who == "none":
                    return {"who": who, **await recipe.without_token(pool, observe)}
                return {"who": who, **await recipe.as_tenant(pool, tokens[who], observe)}
            except Exception as e:  # noqa: BLE001
                return failure(who, e)

        try:
            return await asyncio.gather(*[run(who) for who in ["a", "b", "none"] * ROUNDS])
        finally:
            await recipe.close(pool)

    check_isolated(asyncio.run(main()), tokens)
    assert named_statements(bouncer) == []


# -- Pitfalls ---------------------------------------------------------------

@pytest.mark.parametrize("bind", ["SELECT set_config('jwt_rls.token', %s, true)",
                                  "SELECT jwt_rls.authenticate(%s)"], ids=["set_config", "authenticate"])
def test_a_binding_in_autocommit_lasts_one_statement(bind, bouncer, tokens):
    """Outside BEGIN..COMMIT each statement is its own transaction: the
    next statement (here on the same server connection) has no claims and
    sees no rows. The same token in a transaction sees its rows."""
    with psycopg.connect(url(bouncer), autocommit=True, prepare_threshold=None) as conn:
        pid = backend_pid(conn)
        conn.execute(bind, (tokens["a"],))
        assert backend_pid(conn) == pid  # one server connection: nothing else ran between
        assert claim(conn) is None
        assert count(conn) == 0
        with conn.transaction():
            conn.execute(bind, (tokens["a"],))
            assert count(conn) == ROWS[TENANT_A]


def test_a_session_binding_is_refused_with_the_guard_and_nothing_stays(db, cluster, tokens):
    """With jwt_rls.allow_session_binding = off for the pooler's role (and
    jwt_rls loaded at connect), a session-level binding (SET, set_config(..., false), SET inside BEGIN)
    fails with 0A000 and is rolled back: the next client of the same server
    connection has no claims and sees no rows. Per-transaction binding works."""
    # The guard is jwt_rls's: it holds from the session's first statement
    # when the library is loaded at connect (here session_preload_libraries).
    db.execute("ALTER ROLE app SET jwt_rls.allow_session_binding = off")
    db.execute("ALTER ROLE app SET session_preload_libraries = 'jwt_rls'")
    try:
        with PgBouncer(cluster, "transaction", pool_size=1) as guarded:
            with psycopg.connect(url(guarded), autocommit=True, prepare_threshold=None) as alice:
                pid = backend_pid(alice)
                for attempt in ["SET jwt_rls.token = '%s'" % tokens["a"],
                                "SELECT set_config('jwt_rls.token', '%s', false)" % tokens["a"]]:
                    with pytest.raises(psycopg.errors.FeatureNotSupported):
                        alice.execute(attempt)
                    assert claim(alice) is None
                with pytest.raises(psycopg.errors.FeatureNotSupported):
                    with alice.transaction():
                        alice.execute("SET jwt_rls.token = '%s'" % tokens["a"])
                        assert count(alice) == ROWS[TENANT_A]  # bound until the commit refuses it
                with alice.transaction():
                    alice.execute("SELECT jwt_rls.authenticate(%s)", (tokens["a"],))
                    assert count(alice) == ROWS[TENANT_A]
                alice.execute("SET jwt_rls.token = ''")  # unbinding stays allowed
            with psycopg.connect(url(guarded), autocommit=True, prepare_threshold=None) as bob:
                assert backend_pid(bob) == pid  # the same server connection
                assert claim(bob) is None
                assert count(bob) == 0
    finally:
        db.execute("ALTER ROLE app RESET jwt_rls.allow_session_binding")
        db.execute("ALTER ROLE app RESET session_preload_libraries")


def prepared_on_one_server_connection_then_another(cluster, connect_cached, run_transaction, close):
    """Runs a transaction on a client whose statements are cached, holds the
    server connection it used with another client, and runs the same
    transaction again: PgBouncer (2 server connections) has to put it on
    the other one. Returns both outcomes and the backend the first ran on."""
    with PgBouncer(cluster, "transaction", pool_size=2) as b:
        cached = connect_cached(url(b))
        try:
            first = run_transaction(cached)
            with psycopg.connect(url(b), autocommit=True) as other, other.transaction():
                held = backend_pid(other)  # the only idle server connection: the one `first` used
                try:
                    second = run_transaction(cached)
                except Exception as e:  # noqa: BLE001 (what the pitfall raises is the point)
                    second = failure("a", e)
            return first, second, held
        finally:
            close(cached)


def psycopg_transaction(token):
    def run(conn):
        with conn.transaction():
            conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))
            return {"pid": backend_pid(conn), "claim": claim(conn), "rows": count(conn)}
    return run


@pytest.mark.parametrize("prepare_threshold", [0, None])
def test_psycopg_prepared_statements_across_server_connections(prepare_threshold, cluster, db, tokens):
    """prepare_threshold=0 (psycopg prepares at once; its default, 5, after
    five executions): the second transaction lands on another server
    connection, where `_pg3_0` does not exist, and fails with 26000 before
    any row is read. With the recipe's prepare_threshold=None it reads its
    tenant's rows there."""
    first, second, held = prepared_on_one_server_connection_then_another(
        cluster, lambda u: psycopg.connect(u, autocommit=True, prepare_threshold=prepare_threshold),
        psycopg_transaction(tokens["a"]), lambda conn: conn.close())
    assert first == {"pid": held, "claim": str(TENANT_A), "rows": ROWS[TENANT_A]}
    if prepare_threshold is None:
        assert "error" not in second, second
        assert second["pid"] != held and (second["claim"], second["rows"]) == (str(TENANT_A), ROWS[TENANT_A])
    else:
        assert second["error"]["code"] == "26000", second
        assert "does not exist" in second["error"]["message"]
        leaked = tokens["a"] in second["error"]["message"]
        assert not leaked, "the token in the error"


@pytest.mark.parametrize("statement_cache_size", [100, 0])
def test_asyncpg_statement_cache_across_server_connections(statement_cache_size, cluster, db, tokens):
    """asyncpg's default statement cache (100) names its statements: on the
    other server connection the second transaction fails with 26000 and
    reads nothing. With the recipe's statement_cache_size=0 it reads its
    tenant's rows there."""
    asyncpg = pytest.importorskip("asyncpg", reason="asyncpg is not installed (tests/requirements.txt)")
    loop = asyncio.new_event_loop()

    async def transaction(conn):
        async with conn.transaction():
            await conn.execute("SELECT jwt_rls.authenticate($1)", tokens["a"])
            row = await conn.fetchrow("SELECT pg_backend_pid() AS pid, jwt_rls.jwt_claim('tenant_id') AS claim")
            rows = await conn.fetchval("SELECT count(*) FROM invoices")
            return {"pid": row["pid"], "claim": row["claim"], "rows": rows}

    try:
        first, second, held = prepared_on_one_server_connection_then_another(
            cluster,
            lambda u: loop.run_until_complete(asyncpg.connect(u, statement_cache_size=statement_cache_size)),
            lambda conn: loop.run_until_complete(transaction(conn)),
            lambda conn: loop.run_until_complete(conn.close()))
    finally:
        loop.close()
    assert first == {"pid": held, "claim": str(TENANT_A), "rows": ROWS[TENANT_A]}
    if statement_cache_size == 0:
        assert "error" not in second, second
        assert second["pid"] != held and (second["claim"], second["rows"]) == (str(TENANT_A), ROWS[TENANT_A])
    else:
        assert second["error"]["code"] == "26000", second
        leaked = tokens["a"] in second["error"]["message"]
        assert not leaked, "the token in the error"
