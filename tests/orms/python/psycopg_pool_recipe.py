"""psycopg 3 with psycopg_pool behind PgBouncer in transaction mode.

prepare_threshold=None: psycopg otherwise prepares a query (a named
statement on the server connection) after its fifth execution, and on
PgBouncer < 1.21 the next transaction may run on a server connection
that never saw that name."""

from psycopg_pool import ConnectionPool

from . import PROBE


def connect(url):
    return ConnectionPool(url, min_size=1, max_size=2, open=True,
                          kwargs={"autocommit": True, "prepare_threshold": None})


def as_tenant(pool, token, work):
    """The recipe: the first statement of the transaction binds the token."""
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))
        return work(conn)


def without_token(pool, work):
    with pool.connection() as conn:
        return work(conn)


def invoice_tenants(conn):
    return [str(t) for (t,) in conn.execute("SELECT tenant_id FROM invoices")]


def probe(conn):
    pid, claim, at = conn.execute(PROBE).fetchone()
    return {"pid": pid, "claim": claim, "at": at}


def close(pool):
    pool.close()
