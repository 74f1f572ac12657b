"""asyncpg behind PgBouncer in transaction mode.

statement_cache_size=0: asyncpg otherwise prepares every query as a named
statement and reuses it by name from then on, which PgBouncer < 1.21 cannot
follow from one transaction's server connection to the next."""

import asyncpg

from . import PROBE


async def connect(url):
    return await asyncpg.create_pool(url, min_size=1, max_size=2, statement_cache_size=0)


async def as_tenant(pool, token, work):
    """The recipe: the first statement of the transaction binds the token."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT jwt_rls.authenticate($1)", token)
        return await work(conn)


async def without_token(pool, work):
    async with pool.acquire() as conn:
        return await work(conn)


async def invoice_tenants(conn):
    return [str(r["tenant_id"]) for r in await conn.fetch("SELECT tenant_id FROM invoices")]


async def probe(conn):
    return dict(await conn.fetchrow(PROBE))


async def close(pool):
    await pool.close()
