"""The Python ORM recipes of docs/guides/orms.md, run by tests/test_orms.py.

Each module binds a token per transaction behind PgBouncer in transaction
mode and offers the same calls to the test: connect(url),
as_tenant(handle, token, work) (the recipe), without_token(handle, work),
invoice_tenants(q) (an ORM query) and probe(q) (the server connection's
pid, the bound tenant claim and the time), then close(handle)."""

PROBE = ("SELECT pg_backend_pid() AS pid, jwt_rls.jwt_claim('tenant_id') AS claim,"
         " to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US') AS at")
