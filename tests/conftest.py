"""A throwaway cluster with jwt_rls installed and a two-tenant schema.

Roles: `postgres` (superuser, owns the tables and the keys) and `app`, the
application role: LOGIN, not superuser, not the table owner, no BYPASSRLS,
and only USAGE on schema jwt_rls.
"""

import os
import sys
import uuid

import psycopg
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from pgcluster import Cluster  # noqa: E402
from tokens import AUDIENCE, ISSUER, Signer  # noqa: E402

TENANT_A = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
TENANT_B = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")

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


@pytest.fixture(scope="session")
def cluster():
    c = Cluster(conf=["max_worker_processes = 8", "max_parallel_workers = 4"]).start()
    try:
        yield c
    finally:
        c.remove()


@pytest.fixture(scope="session")
def signers():
    return {alg: Signer(f"{alg.lower()}-test", alg) for alg in ["HS256", "RS256", "ES256", "EdDSA"]}


@pytest.fixture(scope="session")
def db(cluster, signers):
    """Schema, keys and rows; returns the superuser connection."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(SCHEMA)
        with admin.cursor() as cur:
            for s in signers.values():
                s.install(cur)
            admin.execute("SET jwt_rls.token = ''")
            # Superusers bypass RLS: this connection sees and writes all rows.
            for tenant, count in [(TENANT_A, 3), (TENANT_B, 5)]:
                for i in range(count):
                    cur.execute("INSERT INTO invoices (tenant_id, amount, note) VALUES (%s, %s, %s)",
                                (tenant, 100 + i, f"{tenant} #{i}"))
            cur.execute("""INSERT INTO events SELECT CASE WHEN g %% 3 = 0 THEN %s ELSE %s END::uuid, g
                           FROM generate_series(1, 60000) g""", (str(TENANT_A), str(TENANT_B)))
            cur.execute("ANALYZE")
        yield admin


@pytest.fixture
def app(cluster, db):
    """A fresh connection as the application role."""
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def hs(signers):
    return signers["HS256"]
