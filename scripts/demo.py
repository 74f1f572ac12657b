"""jwt_rls demo: two tenants, one table, tokens signed outside the database.

Runs against a throwaway cluster (removed at the end) with jwt_rls installed.
"""

import json
import os
import sys
import time

import psycopg
from jwt.algorithms import RSAAlgorithm

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from support.pgcluster import Cluster  # noqa: E402
from support.tokens import AUDIENCE, ISSUER, Signer  # noqa: E402

SETUP = f"""
CREATE EXTENSION jwt_rls;
ALTER DATABASE postgres SET jwt_rls.issuer = '{ISSUER}';
ALTER DATABASE postgres SET jwt_rls.audience = '{AUDIENCE}';

CREATE ROLE app LOGIN;                      -- not superuser, not the owner
GRANT USAGE ON SCHEMA jwt_rls TO app;

CREATE TABLE invoices (id int PRIMARY KEY, tenant_id text NOT NULL, customer text, amount int);
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invoices
    USING      (tenant_id = (SELECT jwt_rls.jwt_claim('tenant_id')))
    WITH CHECK (tenant_id = (SELECT jwt_rls.jwt_claim('tenant_id')));
GRANT SELECT, INSERT, UPDATE, DELETE ON invoices TO app;

INSERT INTO invoices VALUES
    (1, 'acme', 'Road Runner Inc', 120), (2, 'acme', 'Coyote LLC', 75),
    (3, 'globex', 'Hank Scorpio', 990), (4, 'globex', 'Homer Simpson', 15), (5, 'globex', 'Frank Grimes', 40);
"""


def say(text):
    print(f"\n\033[1m== {text}\033[0m")


def show(conn, sql, params=None):
    print(f"   app> {sql}")
    try:
        rows = conn.execute(sql, params).fetchall()
        for row in rows:
            print("        ", row)
        if not rows:
            print("         (no rows)")
    except psycopg.Error as e:
        print(f"         ERROR {e.sqlstate}: {e.diag.message_primary}"
              + (f" ({e.diag.message_detail})" if e.diag.message_detail else ""))


def main():
    signer = Signer("login-2026-11", "RS256")
    jwks = {"keys": [dict(json.loads(RSAAlgorithm.to_jwk(signer.key.public_key())),
                          kid=signer.kid, alg="RS256", use="sig")]}
    with Cluster() as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            say("admin: install jwt_rls, a two-tenant table with RLS, and the login service's JWKS")
            admin.execute(SETUP)
            n = admin.execute("SELECT jwt_rls.import_jwks(%s)", (json.dumps(jwks),)).fetchone()[0]
            print(f"   imported {n} key(s): kid {signer.kid}, RS256")

        with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
            for tenant in ["acme", "globex"]:
                token = signer.token(tenant, sub=f"user@{tenant}")
                say(f"app, request for tenant {tenant}: token signed by PyJWT ({len(token)} bytes)")
                with app.transaction():
                    show(app, "SELECT jwt_rls.authenticate(%s) ->> 'tenant_id' AS tenant", (token,))
                    show(app, "SELECT id, tenant_id, customer, amount FROM invoices ORDER BY id")
                    show(app, "INSERT INTO invoices VALUES (99, 'someone-else', 'x', 1)")

            say("app: after COMMIT the pooled connection holds no claims")
            show(app, "SELECT jwt_rls.jwt_claim('tenant_id'), count(*) FROM invoices")

            say("app: a forged token (same kid, attacker's key) is refused")
            forged = Signer(signer.kid, "RS256").token("globex")
            show(app, "SELECT jwt_rls.authenticate(%s)", (forged,))

            say("app: an expired token is refused")
            show(app, "SELECT jwt_rls.authenticate(%s)", (signer.token("acme", ttl=-120),))

            say("app: claims cannot be set from SQL")
            show(app, "SELECT set_config('jwt_rls.token', %s, true)", (forged,))
            show(app, "SELECT * FROM jwt_rls.keys")
    print("\ncluster stopped and removed.")


if __name__ == "__main__":
    started = time.time()
    main()
    print(f"demo finished in {time.time() - started:.1f}s")
