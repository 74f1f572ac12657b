"""Fixtures: a throwaway cluster with jwt_rls installed and the two-tenant
schema of tests/support/schema.py, its keys, and connections to it."""

import os
import sys

import psycopg
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from support.pgcluster import Cluster  # noqa: E402
from support.schema import EVENTS, SCHEMA, TENANT_A, TENANT_B, insert_invoices  # noqa: E402
from support.tokens import ALGS, AUDIENCE, ISSUER, Signer  # noqa: E402


@pytest.fixture(scope="session")
def cluster():
    c = Cluster(conf=["max_worker_processes = 8", "max_parallel_workers = 4"]).start()
    try:
        yield c
    finally:
        c.remove()


@pytest.fixture(scope="session")
def signers():
    return {alg: Signer(f"{alg.lower()}-test", alg) for alg in ALGS}


@pytest.fixture(scope="session")
def db(cluster, signers):
    """Schema, keys and rows; returns the superuser connection."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(SCHEMA)
        # ALTER DATABASE ... SET applies from the next session on; this one
        # (which revokes tokens and installs keys) follows the same policy.
        admin.execute(f"SET jwt_rls.issuer = '{ISSUER}'; SET jwt_rls.audience = '{AUDIENCE}'")
        with admin.cursor() as cur:
            for s in signers.values():
                s.install(cur)
            admin.execute("SET jwt_rls.token = ''")
            # Superusers bypass RLS: this connection sees and writes all rows.
            insert_invoices(cur)
            cur.execute("""INSERT INTO events SELECT CASE WHEN g %% 3 = 0 THEN %s ELSE %s END::uuid, g
                           FROM generate_series(1, %s) g""", (str(TENANT_A), str(TENANT_B), EVENTS))
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
