"""Deployment topologies end to end: PgBouncer in transaction and session
pooling, many concurrent tenants. Every transaction checks that no claims are
visible before it binds, and every row it sees; any leak fails the test."""

import threading
import time

import jwt
import psycopg
import pytest

from support import claim, error
from support.pgbouncer import PgBouncer

TENANTS = [f"tenant-{i}" for i in range(8)]
CLIENTS = 32
TRANSACTIONS = 50_000

ITEMS = """
CREATE TABLE items (
    client    int PRIMARY KEY,
    tenant_id text NOT NULL,
    n         bigint NOT NULL DEFAULT 0
);
ALTER TABLE items ENABLE ROW LEVEL SECURITY;
ALTER TABLE items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON items
    USING      (tenant_id = (SELECT jwt_rls.jwt_claim('tenant_id')))
    WITH CHECK (tenant_id = (SELECT jwt_rls.jwt_claim('tenant_id')));
GRANT SELECT, INSERT, UPDATE ON items TO app;
"""


def tenant_of(client):
    return TENANTS[client % len(TENANTS)]


@pytest.fixture(scope="module")
def items(db):
    db.execute("DROP TABLE IF EXISTS items")
    db.execute(ITEMS)
    with db.cursor() as cur:
        cur.executemany("INSERT INTO items (client, tenant_id) VALUES (%s, %s)",
                        [(c, tenant_of(c)) for c in range(CLIENTS)])
    return db


def reset_counts(db):
    db.execute("UPDATE items SET n = 0")


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"transactions": 0, "leaked_claims": 0, "foreign_rows": 0, "foreign_writes": 0,
                       "refused_foreign_inserts": 0, "errors": 0, "peak_server_connections": 0}
        self.errors = []

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                self.counts[k] += v

    def error(self, text):
        with self.lock:
            self.counts["errors"] += 1
            if len(self.errors) < 10:
                self.errors.append(text)


def run_clients(target, n_clients, db):
    """Runs the clients in threads; samples how many server connections the
    application role holds meanwhile."""
    tally = Tally()
    threads = [threading.Thread(target=target, args=(c, tally)) for c in range(n_clients)]
    started = time.time()
    for t in threads:
        t.start()
    peak = 0
    while any(t.is_alive() for t in threads):
        peak = max(peak, db.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'").fetchone()[0])
        time.sleep(0.2)
    for t in threads:
        t.join()
    tally.counts["peak_server_connections"] = peak
    return tally, time.time() - started


def one_transaction(conn, client, tally, bind):
    """Runs in a transaction the caller commits. `bind` binds the token (or
    is None when the session already holds one)."""
    tenant = tenant_of(client)
    if bind:
        before = claim(conn)
        if before is not None:
            tally.add(leaked_claims=1)
        bind(conn)
    rows = conn.execute("SELECT client, tenant_id FROM items").fetchall()
    foreign = sum(1 for _, t in rows if t != tenant)
    mine = {c for c, t in rows if t == tenant}
    if foreign or client not in mine:
        tally.add(foreign_rows=foreign or 1)
    touched = conn.execute("UPDATE items SET n = n + 1 WHERE client = %s RETURNING tenant_id",
                           (client,)).fetchall()
    if touched != [(tenant,)]:
        tally.add(foreign_writes=1)
    # Another tenant's row is invisible to UPDATE.
    other = (client + 1) % CLIENTS
    if conn.execute("UPDATE items SET n = n + 1000000 WHERE client = %s", (other,)).rowcount != 0:
        tally.add(foreign_writes=1)


def check_counts(db, tally, expected_per_client):
    counts = dict(db.execute("SELECT client, n FROM items").fetchall())
    assert sum(counts.values()) == tally.counts["transactions"], (counts, tally.counts)
    for client, n in counts.items():
        assert n == expected_per_client, (client, n)


def test_transaction_pooling_isolates_32_clients_over_4_connections(cluster, items, signers):
    reset_counts(items)
    tokens = {t: signers["ES256"].token(t, ttl=3600) for t in TENANTS}
    per_client = -(-TRANSACTIONS // CLIENTS)

    def client_loop(client, tally):
        token = tokens[tenant_of(client)]
        # prepare_threshold=None: transaction pooling cannot keep prepared
        # statements across transactions on PgBouncer 1.18.
        with psycopg.connect(bouncer.dsn(), prepare_threshold=None) as conn:
            for i in range(per_client):
                try:
                    one_transaction(conn, client, tally,
                                    lambda c: c.execute("SELECT jwt_rls.authenticate(%s)", (token,)))
                    if i % 100 == 0:
                        try:
                            with conn.transaction():
                                conn.execute("INSERT INTO items (client, tenant_id) VALUES (%s, %s)",
                                             (1000 + client, tenant_of(client + 1)))
                        except psycopg.errors.InsufficientPrivilege:
                            tally.add(refused_foreign_inserts=1)
                    conn.commit()
                    tally.add(transactions=1)
                except psycopg.Error as e:
                    conn.rollback()
                    tally.error(f"client {client}: {e.sqlstate} {e}")

    with PgBouncer(cluster, "transaction", pool_size=4) as bouncer:
        tally, seconds = run_clients(client_loop, CLIENTS, items)
    print(f"\ntransaction pooling: {CLIENTS} clients, 4 server connections, {len(TENANTS)} tenants, "
          f"{seconds:.1f} s, {tally.counts}")
    assert tally.counts["transactions"] == per_client * CLIENTS >= 50_000, tally.errors
    assert tally.counts["leaked_claims"] == 0
    assert tally.counts["foreign_rows"] == 0
    assert tally.counts["foreign_writes"] == 0
    assert tally.counts["refused_foreign_inserts"] == CLIENTS * ((per_client + 99) // 100)
    assert tally.counts["errors"] == 0, tally.errors
    assert 1 <= tally.counts["peak_server_connections"] <= 4
    check_counts(items, tally, per_client)


def test_session_pooling_resets_session_tokens(cluster, items, signers):
    """Session pooling with the default server_reset_query (DISCARD ALL):
    each client binds for its session; the next client on the same server
    connection starts with no claims."""
    reset_counts(items)
    tokens = {t: signers["HS256"].token(t, ttl=3600) for t in TENANTS}
    sessions, per_session = 5, 20

    def client_loop(client, tally):
        token = tokens[tenant_of(client)]
        for _ in range(sessions):
            try:
                with psycopg.connect(bouncer.dsn(), prepare_threshold=None, autocommit=True) as conn:
                    before = claim(conn)
                    if before is not None:
                        tally.add(leaked_claims=1)
                    conn.execute(f"SET jwt_rls.token = '{token}'")
                    for _ in range(per_session):
                        with conn.transaction():
                            one_transaction(conn, client, tally, None)
                        tally.add(transactions=1)
            except psycopg.Error as e:
                tally.error(f"client {client}: {e.sqlstate} {e}")

    with PgBouncer(cluster, "session", pool_size=4) as bouncer:
        tally, seconds = run_clients(client_loop, CLIENTS, items)
    print(f"\nsession pooling: {CLIENTS} clients x {sessions} sessions over 4 server connections, "
          f"{seconds:.1f} s, {tally.counts}")
    assert tally.counts["transactions"] == CLIENTS * sessions * per_session, tally.errors
    assert tally.counts["leaked_claims"] == 0
    assert tally.counts["foreign_rows"] == 0 and tally.counts["foreign_writes"] == 0
    assert tally.counts["errors"] == 0, tally.errors
    assert 1 <= tally.counts["peak_server_connections"] <= 4
    check_counts(items, tally, sessions * per_session)


def test_pgbouncer_refuses_a_token_in_startup_options(cluster, items, signers):
    """PgBouncer does not forward startup options; the session-level SET is
    what a pooled client uses. A token in the startup packet is refused by
    the pooler rather than silently dropped."""
    token = signers["HS256"].token(TENANTS[0])
    with PgBouncer(cluster, "session", pool_size=4) as bouncer:
        with pytest.raises(psycopg.OperationalError) as e:
            psycopg.connect(bouncer.dsn() + f" options='-c jwt_rls.token={token}'").close()
        assert "unsupported startup parameter" in str(e.value), e.value
        with psycopg.connect(bouncer.dsn()) as conn:  # the pooler itself is fine
            assert claim(conn) is None


def connect_with_token(cluster, token):
    return psycopg.connect(cluster.dsn(user="app", options=f"'-c jwt_rls.token={token}'"), autocommit=True)


def test_token_in_connection_options(cluster, items, signers):
    """Straight to the server, `options=-c jwt_rls.token=...` binds the
    session: a valid token yields exactly its claims and its tenant's rows.
    An invalid one never yields claims: when the session loads jwt_rls it
    drops the token with a WARNING."""
    tenant = tenant_of(0)
    mine = {c for c in range(CLIENTS) if tenant_of(c) == tenant}
    token = signers["ES256"].token(tenant)
    with connect_with_token(cluster, token) as conn:
        claims = conn.execute("SELECT jwt_rls.jwt_claims()").fetchone()[0]
        assert claims == jwt.decode(token, options={"verify_signature": False})
        assert {c for c, t in conn.execute("SELECT client, tenant_id FROM items") if t == tenant} == mine
        assert {t for _, t in conn.execute("SELECT client, tenant_id FROM items")} == {tenant}

    forged = signers["HS256"].token(tenant)[:-4] + "AAAA"
    with connect_with_token(cluster, forged) as conn:
        notices = []
        conn.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.sqlstate, d.message_primary)))
        assert claim(conn) is None
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 0
        assert notices == [("WARNING", "28000", "token signature is invalid")], notices


def test_token_in_connection_options_with_session_preload(cluster, db, items, signers):
    """With jwt_rls in session_preload_libraries, the library loads at
    connect, after the startup options were stored as a placeholder: a
    valid token binds the session (this once failed every such connection
    with "cannot execute SQL without an outer snapshot or portal"). An
    invalid one is checked at the session's first read, like every token
    that arrives while the backend starts (before that, the database's and
    role's settings may not apply yet): it stays bound, unverified, and
    every read refuses it (fail closed, as an error instead of no claims)."""
    tenant = tenant_of(0)
    token = signers["HS256"].token(tenant)
    db.execute("ALTER ROLE app SET session_preload_libraries = 'jwt_rls'")
    try:
        with connect_with_token(cluster, token) as conn:
            assert claim(conn) == tenant
            assert {t for (t,) in conn.execute("SELECT tenant_id FROM items")} == {tenant}
        with connect_with_token(cluster, token[:-4] + "AAAA") as conn:
            for sql in ["SELECT jwt_rls.jwt_claim('tenant_id')", "SELECT count(*) FROM items"]:
                e = error(conn, sql)
                assert e is not None and e.sqlstate == "28000", (sql, e)
    finally:
        db.execute("ALTER ROLE app RESET session_preload_libraries")
