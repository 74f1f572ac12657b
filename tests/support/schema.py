"""The two-tenant schema the `db` fixture (and the tests that start their
own clusters) install, and readers of it.

Roles: `postgres` (superuser, owns the tables and the keys) and `app`, the
application role: LOGIN, not superuser, not the table owner, no BYPASSRLS,
and only USAGE on schema jwt_rls.
"""

import uuid

import psycopg

from support.tokens import AUDIENCE, ISSUER

TENANT_A = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
TENANT_B = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
ROWS = {TENANT_A: 3, TENANT_B: 5}  # invoices the `db` fixture inserts
EVENTS = 60_000  # rows of `events`: every third is tenant A's

SCHEMA = f"""
CREATE EXTENSION jwt_rls;
ALTER DATABASE postgres SET jwt_rls.issuer = '{ISSUER}';
ALTER DATABASE postgres SET jwt_rls.audience = '{AUDIENCE}';
ALTER DATABASE postgres SET jwt_rls.leeway = 0;
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA jwt_rls TO app;

CREATE TABLE invoices (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL,
    amount    int NOT NULL,
    note      text
);
CREATE INDEX ON invoices (tenant_id);
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invoices
    USING (tenant_id = (SELECT jwt_rls.jwt_claim('tenant_id')::uuid))
    WITH CHECK (tenant_id = (SELECT jwt_rls.jwt_claim('tenant_id')::uuid));
GRANT SELECT, INSERT, UPDATE, DELETE ON invoices TO app;

-- The same rows under the bare form of the policy, for parallel plans.
CREATE TABLE events (tenant_id uuid NOT NULL, n int NOT NULL);
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON events USING (tenant_id = jwt_rls.jwt_claim('tenant_id')::uuid);
GRANT SELECT ON events TO app;
"""


def insert_invoices(cur, rows=ROWS):
    """`rows[tenant]` invoices per tenant (cur must be a superuser's)."""
    for tenant, n in rows.items():
        for i in range(n):
            cur.execute("INSERT INTO invoices (tenant_id, amount, note) VALUES (%s, %s, %s)",
                        (tenant, 100 + i, f"{tenant} #{i}"))


def tenants(conn):
    """The tenants whose invoices `conn` sees."""
    return {row[0] for row in conn.execute("SELECT tenant_id FROM invoices")}


def count(conn):
    return conn.execute("SELECT count(*) FROM invoices").fetchone()[0]


def authenticate(conn, token):
    """Binds `token` in a transaction of its own: the number of invoices seen
    there, or the SQLSTATE of the refusal."""
    try:
        with conn.transaction():
            conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))
            return count(conn)
    except psycopg.Error as e:
        return e.sqlstate
