"""Provider scenarios: each does what its guide in docs/guides/ says.

For each provider the test creates a database, runs the guide's SQL blocks
marked `<!-- test: settings -->` and `<!-- test: schema -->` verbatim (only
`ALTER DATABASE app` is pointed at the test's database), imports a JWKS in
that provider's exact published shape (tests/support/providers.py, fresh
local keys), and then, as the application role: each tenant sees only its
rows with a token shaped like the provider's, writes follow the guide's
policy, and the same provider's tokens for another audience, issuer, realm
or client are refused (28000) or see nothing. Supabase runs in a cluster of
its own, with the guide's postgresql.conf lines (`<!-- test: conf -->`), and
plays PostgREST's part of each request.

They need the lenient import_jwks (keys without alg, x5c/x5t/issuer/key_ops
members, enc keys skipped, unusable keys warned about), the refusal of `aud`
when no audience is configured, and for Supabase `jwt_rls.postgrest_compat`,
`create_auth_functions()` and `postgrest_pre_request()`. The first tests
need no database: they check that the fixtures' tokens verify with PyJWT
against the fixtures' own JWKS, and that the published certificates hold
the published keys.
"""

import base64
import contextlib
import json
import re
import uuid
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from support import b64url, b64url_decode, pg, sqlstate
from support.pgcluster import Cluster
from support.providers import (Auth0, Cognito, EntraID, Keycloak, Supabase, all_providers,
                               decode_segments, rsa_public_members)
from support.schema import ROWS, TENANT_A, TENANT_B, authenticate, tenants

GUIDES = Path(__file__).resolve().parent.parent / "docs" / "guides"
TENANT_C = uuid.UUID("cccccccc-0000-4000-8000-000000000003")  # never onboarded
# Members the lenient import accepts but must not store (only the public key is kept).
NOT_STORED = ["x5c", "x5t", "x5t#S256", "issuer", "key_ops"]


# --- the guides' SQL -----------------------------------------------------------


def guide_block(guide, tag):
    """The code blocks of docs/guides/<guide> marked `<!-- test: tag -->`."""
    text = (GUIDES / guide).read_text()
    blocks = re.findall(r"<!-- test: %s -->\s*```\w*\n(.*?)```" % re.escape(tag), text, re.S)
    assert blocks, f"{guide} has no block marked <!-- test: {tag} -->"
    return "\n".join(blocks)


def for_database(sql, dbname):
    """The guide's SQL with `ALTER DATABASE app` pointed at `dbname`."""
    return re.sub(r"\bALTER DATABASE app\b", f"ALTER DATABASE {dbname}", sql)


def conf_lines(guide):
    return [line for line in guide_block(guide, "conf").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@contextlib.contextmanager
def guide_database(cluster, admin, guide, dbname):
    """A fresh database with the guide's settings block run in it; dropped
    afterwards."""
    admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {dbname} TEMPLATE template0")
    try:
        with psycopg.connect(cluster.dsn(dbname=dbname), autocommit=True) as su:
            su.execute(for_database(guide_block(guide, "settings"), dbname))
        yield dbname
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def import_keys(su, jwks):
    """import_jwks as the guide runs it: (keys added, WARNING texts)."""
    warnings = []
    su.add_notice_handler(lambda d: warnings.append(f"{d.message_primary} {d.message_detail or ''}")
                          if d.severity_nonlocalized == "WARNING" else None)
    added = su.execute("SELECT jwt_rls.import_jwks(%s::jsonb)", (json.dumps(jwks),)).fetchone()[0]
    return added, warnings


def stored_members(su):
    """kid -> member names of each stored JWK (superuser only)."""
    rows = su.execute("SELECT kid, material FROM jwt_rls.keys WHERE format = 'jwk'").fetchall()
    return {kid: set(json.loads(material)) for kid, material in rows}


def set_up(cluster, dbname, guide, jwks, insert_sql="INSERT INTO invoices (tenant_id, amount) VALUES (%s, %s)"):
    """In a new superuser connection (so the settings apply): import the
    provider's JWKS, run the guide's schema block, insert ROWS. Returns
    (keys added, warnings, stored members)."""
    with psycopg.connect(cluster.dsn(dbname=dbname), autocommit=True) as su:
        added, warnings = import_keys(su, jwks)
        su.execute(guide_block(guide, "schema"))
        for tenant, n in ROWS.items():
            for i in range(n):
                su.execute(insert_sql, (tenant, 100 + i))
        return added, warnings, stored_members(su)


def check_stored(members, failures):
    for kid, names in members.items():
        kept = [m for m in NOT_STORED if m in names]
        if kept:
            failures.append(f"kid {kid}: stored {kept}")


def sees_only_own_rows(app, tokens, failures):
    """tokens: tenant -> token. Each token sees exactly its tenant's rows."""
    assert set(tokens) == set(ROWS)
    for tenant, token in tokens.items():
        got = authenticate(app, token)
        if got != ROWS[tenant]:
            failures.append(f"tenant {tenant}: {got!r} instead of {ROWS[tenant]} rows")
            continue
        with app.transaction():
            app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
            if tenants(app) != {tenant}:
                failures.append(f"tenant {tenant} sees {tenants(app)}")


def refused(app, tokens, failures, state="28000"):
    """tokens: why -> token. Each is refused with `state` at bind."""
    assert tokens
    for why, token in tokens.items():
        got = authenticate(app, token)
        if got != state:
            failures.append(f"{why}: {got!r} instead of {state}")


def insert_as(app, token, tenant):
    """The SQLSTATE of inserting an invoice for `tenant` under `token`, or None."""
    try:
        with app.transaction():
            app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
            app.execute("INSERT INTO invoices (tenant_id, amount) VALUES (%s, 1)", (tenant,))
            raise _Rollback
    except _Rollback:
        return None
    except psycopg.Error as e:
        return e.sqlstate


class _Rollback(Exception):
    pass


def app_connection(cluster, dbname, user="app"):
    return psycopg.connect(cluster.dsn(user=user, dbname=dbname), autocommit=True)


def show(conn, name):
    conn.execute("SELECT jwt_rls.jwt_claims()")  # loads jwt_rls, which defines its settings
    return conn.execute(f"SELECT current_setting('{name}')").fetchone()[0]


# --- the fixtures themselves (no database) -----------------------------------------


@pytest.mark.parametrize("provider", all_providers([TENANT_A, TENANT_B]), ids=lambda p: p.name)
def test_fixture_tokens_verify_with_their_own_jwks(provider):
    token = provider.token(TENANT_A)
    issuer = provider.issuer.split(",")[0]
    claims = provider.verify_with_jwks(token, audience=provider.audience or None, issuer=issuer)
    assert claims["iss"] == issuer
    header, _ = decode_segments(token)
    assert header["kid"] in {k["kid"] for k in provider.jwks()["keys"]}
    assert header["alg"] == provider.alg


def test_fixture_jwks_have_each_providers_published_shape():
    a, b = TENANT_A, TENANT_B
    kc, a0, cg, en, sb = all_providers([a, b])
    kc_keys = kc.jwks()["keys"]
    assert [(k["use"], k["alg"]) for k in kc_keys] == [("sig", "RS256"), ("enc", "RSA-OAEP")]
    assert all({"x5c", "x5t", "x5t#S256"} <= set(k) for k in kc_keys)
    assert all(set(k) == {"alg", "kty", "use", "n", "e", "kid", "x5t", "x5c"} for k in a0.jwks()["keys"])
    assert all(set(k) == {"alg", "e", "kid", "kty", "n", "use"} for k in cg.jwks()["keys"])
    assert all(k["kid"].endswith("=") for k in cg.jwks()["keys"]), "Cognito kids are standard base64"
    assert decode_segments(cg.token(a))[0] == {"alg": "RS256", "kid": cg.access_kid}, "no typ"
    assert decode_segments(cg.token(a))[1].get("aud") is None and "client_id" in decode_segments(cg.token(a))[1]
    for k in en.jwks()["keys"]:
        assert "alg" not in k and k["kid"] == k["x5t"] and k["issuer"].endswith("/v2.0")
    assert set(sb.jwks()["keys"][0]) == {"alg", "crv", "ext", "key_ops", "kid", "kty", "x", "y"}
    assert "kid" not in decode_segments(sb.legacy_token(a))[0]


@pytest.mark.parametrize("provider", [Keycloak(), Auth0(), EntraID([TENANT_A])], ids=lambda p: p.name)
def test_fixture_certificates_hold_the_published_key_and_thumbprints(provider):
    for jwk in provider.jwks()["keys"]:
        der = base64.b64decode(jwk["x5c"][0])
        cert = x509.load_der_x509_certificate(der)
        numbers = cert.public_key().public_numbers()
        assert b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")) == jwk["n"]
        assert b64url_decode(jwk["x5t"]) == cert.fingerprint(hashes.SHA1())
        if "x5t#S256" in jwk:
            assert b64url_decode(jwk["x5t#S256"]) == cert.fingerprint(hashes.SHA256())


# --- Keycloak --------------------------------------------------------------------------


def test_keycloak_guide(cluster, db):
    kc = Keycloak()
    failures = []
    with guide_database(cluster, db, "keycloak.md", "guide_keycloak") as name:
        added, warnings, members = set_up(cluster, name, "keycloak.md", kc.jwks())
        assert added == 1, "the RS256 sig key; the RSA-OAEP enc key is skipped"
        assert set(members) == {kc.sig_kid}, members
        assert not [w for w in warnings if kc.enc_kid not in w], warnings
        check_stored(members, failures)
        with app_connection(cluster, name) as app:
            assert show(app, "jwt_rls.issuer") == kc.issuer and show(app, "jwt_rls.audience") == kc.audience
            sees_only_own_rows(app, {t: kc.token(t) for t in ROWS}, failures)
            writer = ("invoice-reader", "invoice-writer")
            if insert_as(app, kc.token(TENANT_A, roles=writer), TENANT_A) is not None:
                failures.append("an invoice-writer cannot add to its tenant")
            for why, token, tenant in [("a reader writes", kc.token(TENANT_A), TENANT_A),
                                       ("a writer writes into another tenant",
                                        kc.token(TENANT_A, roles=writer), TENANT_B)]:
                if insert_as(app, token, tenant) != "42501":
                    failures.append(f"{why}: not refused by the policy")
            refused(app, {
                "a token of another client (aud account only)": kc.token(TENANT_A, aud="account"),
                "an ID token (aud = the client, typ ID)": kc.token(TENANT_A, aud="invoices-web", typ="ID"),
                "a token of another realm": kc.token(TENANT_A, iss="https://sso.example.com/realms/other"),
                "the right claims signed by another realm's key": Keycloak(realm="acme").token(TENANT_A),
            }, failures)
    assert not failures, failures


# --- Auth0 -------------------------------------------------------------------------------


def test_auth0_guide_and_key_rotation(cluster, db):
    a0 = Auth0()
    failures = []
    with guide_database(cluster, db, "auth0.md", "guide_auth0") as name:
        added, warnings, members = set_up(cluster, name, "auth0.md", a0.jwks())
        assert added == 2 and set(members) == set(a0.kids) and not warnings, (added, warnings)
        check_stored(members, failures)
        with app_connection(cluster, name) as app:
            assert show(app, "jwt_rls.tenant_id_claim") == a0.tenant_claim
            sees_only_own_rows(app, {t: a0.token(t) for t in ROWS}, failures)
            sees_only_own_rows(app, {t: a0.token(t, key=1) for t in ROWS}, failures)
            with app.transaction():
                app.execute("SELECT jwt_rls.authenticate(%s)", (a0.token(TENANT_B),))
                got = app.execute("SELECT jwt_rls.tenant_id(), jwt_rls.jwt_claim('org_id')").fetchone()
                if got != (str(TENANT_B), "org_9ybsU1dN2dKfDkBi"):
                    failures.append(f"tenant_id(), org_id: {got}")
            creator = ["read:invoices", "create:invoices"]
            if insert_as(app, a0.token(TENANT_A, permissions=creator), TENANT_A) is not None:
                failures.append("create:invoices cannot add to its tenant")
            if insert_as(app, a0.token(TENANT_A), TENANT_A) != "42501":
                failures.append("read:invoices alone could add an invoice")
            refused(app, {
                "a token for another API": a0.token(TENANT_A, aud=["https://api.acme.example/billing",
                                                                   "https://acme.eu.auth0.com/userinfo"]),
                "a token with only the /userinfo audience": a0.token(TENANT_A, aud="https://acme.eu.auth0.com/userinfo"),
                "another Auth0 tenant's issuer": a0.token(TENANT_A, iss="https://evil.eu.auth0.com/"),
                "the issuer without its trailing slash": a0.token(TENANT_A, iss="https://acme.eu.auth0.com"),
            }, failures)

            # The rotation finished: the document lists only the new key. The
            # guides' retire statement (docs/guides/README.md) disables the old one.
            retire = guide_block("README.md", "retire").replace(":'jwks'", "%(jwks)s")
            with psycopg.connect(cluster.dsn(dbname=name), autocommit=True) as su:
                with su.transaction():
                    again, _ = import_keys(su, a0.jwks(which=(1,)))
                    rows = su.execute(retire, {"jwks": json.dumps(a0.jwks(which=(1,)))}).fetchall()
            assert again == 0, "a key imported before is not added again"
            assert rows == [(a0.kids[0], True)], rows
            refused(app, {"a token of the retired key": a0.token(TENANT_A, key=0)}, failures)
            sees_only_own_rows(app, {t: a0.token(t, key=1) for t in ROWS}, failures)
    assert not failures, failures


# --- Amazon Cognito ------------------------------------------------------------------------


def test_cognito_guide(cluster, db):
    cg = Cognito()
    failures = []
    with guide_database(cluster, db, "cognito.md", "guide_cognito") as name:
        added, warnings, members = set_up(cluster, name, "cognito.md", cg.jwks())
        assert added == 2 and set(members) == {cg.id_kid, cg.access_kid}, (added, warnings)
        with app_connection(cluster, name) as app:
            assert show(app, "jwt_rls.issuer") == cg.issuer and show(app, "jwt_rls.audience") == ""
            sees_only_own_rows(app, {t: cg.token(t) for t in ROWS}, failures)
            refused(app, {
                "the ID token of the same sign-in (it carries aud)": cg.id_token(TENANT_A),
                "another user pool": cg.token(TENANT_A, iss=cg.issuer.replace("Xk3pQ9aZb", "Zz9yY8xX7")),
                "an access token without the trigger's tenant_id": cg.token(TENANT_A, tenant_id=None),
            }, failures)
            # Another app client of the same pool: verified, but the policy shows nothing.
            other_client = cg.token(TENANT_A, client_id="7m1234abcdefghijklmnopqrst")
            if authenticate(app, other_client) != 0:
                failures.append("another app client's access token sees rows")
            if insert_as(app, cg.token(TENANT_A), TENANT_B) != "42501":
                failures.append("an access token wrote into another tenant")
            # An access token that also carries aud (say, one a trigger added):
            # refused only because no audience is configured ...
            with_aud = cg.token(TENANT_A, aud=cg.client_id)
            refused(app, {"an access token with aud, no audience configured": with_aud}, failures)
        # ... until a superuser turns on accept_any_audience.
        db.execute(f"ALTER DATABASE {name} SET jwt_rls.accept_any_audience = on")
        with app_connection(cluster, name) as app:
            if authenticate(app, with_aud) != ROWS[TENANT_A]:
                failures.append("accept_any_audience = on does not accept a token with aud")
    assert not failures, failures


# --- Microsoft Entra ID ------------------------------------------------------------------------


def test_entra_id_guide(cluster, db):
    en = EntraID([TENANT_A, TENANT_B])
    failures = []
    with guide_database(cluster, db, "entra-id.md", "guide_entra") as name:
        added, warnings, members = set_up(cluster, name, "entra-id.md", en.jwks())
        assert added == 2 and set(members) == set(en.kids) and not warnings, (added, warnings)
        check_stored(members, failures)
        with psycopg.connect(cluster.dsn(dbname=name), autocommit=True) as su:
            algs = {r[0] for r in su.execute("SELECT alg FROM jwt_rls.key_list")}
            assert algs == {"RS256"}, "keys without alg are stored as RS256"
        with app_connection(cluster, name) as app:
            assert show(app, "jwt_rls.issuer").split(",") == [en.issuer_for(t) for t in (TENANT_A, TENANT_B)]
            sees_only_own_rows(app, {t: en.token(t) for t in ROWS}, failures)
            token = en.token(TENANT_A)
            with app.transaction():
                app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
                got = app.execute("SELECT jwt_rls.user_id(), jwt_rls.tenant_id()").fetchone()
                if got != (decode_segments(token)[1]["oid"], str(TENANT_A)):
                    failures.append(f"user_id(), tenant_id(): {got}")
            writer = ("Invoices.Read", "Invoices.Write")
            if insert_as(app, en.token(TENANT_B, roles=writer), TENANT_B) is not None:
                failures.append("Invoices.Write cannot add to its tenant")
            if insert_as(app, en.token(TENANT_B), TENANT_B) != "42501":
                failures.append("Invoices.Read alone could add an invoice")
            refused(app, {
                "a token for Microsoft Graph": en.token(TENANT_A, aud="00000003-0000-0000-c000-000000000000"),
                "a tenant that was never onboarded": en.token(TENANT_C),
                "a v1.0 token of an onboarded tenant (sts.windows.net issuer)":
                    en.token(TENANT_A, version=1, aud=en.api_client_id),
                "RS256 key, token claiming PS256": en.token(TENANT_A, header={"alg": "PS256"}),
            }, failures)
    assert not failures, failures


def test_lenient_import_warns_about_an_unusable_key_and_a_missing_issuer(cluster, db):
    """README: an unusable key is skipped with a WARNING naming its kid; with
    jwt_rls.issuer empty the import warns that any issuer is accepted."""
    en = EntraID([TENANT_A])
    weak = rsa_key_1024()
    jwks = en.jwks()
    jwks["keys"].append({"kty": "RSA", "use": "sig", "kid": "weak-1024", "x5t": "weak-1024",
                         **rsa_public_members(weak), "issuer": jwks["keys"][0]["issuer"]})
    name = "guide_lenient"
    db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    try:
        with psycopg.connect(cluster.dsn(dbname=name), autocommit=True) as su:
            su.execute("CREATE EXTENSION jwt_rls")
            added, warnings = import_keys(su, jwks)
            assert added == 2, added
            assert any("weak-1024" in w for w in warnings), warnings
            assert any("issuer" in w for w in warnings), warnings
            assert sqlstate(su, "SELECT jwt_rls.import_jwks(%s::jsonb)",
                            (json.dumps({"keys": [jwks["keys"][-1]]}),)) is not None, \
                "a document with no usable key is still an error"
            # Encryption keys are not unusable signature keys: skipped, no error.
            assert su.execute("SELECT jwt_rls.import_jwks(%s::jsonb)",
                              (json.dumps({"keys": [Keycloak().jwks()["keys"][1]]}),)).fetchone()[0] == 0
    finally:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def rsa_key_1024():
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


# --- Supabase ------------------------------------------------------------------------------


SUPABASE_ROLES = """
CREATE ROLE anon NOLOGIN;
CREATE ROLE authenticated NOLOGIN;
CREATE ROLE service_role NOLOGIN BYPASSRLS;
CREATE ROLE authenticator LOGIN NOINHERIT;
GRANT anon, authenticated, service_role TO authenticator;
"""


@pytest.fixture(scope="module")
def supabase_db():
    """A cluster with the guide's postgresql.conf lines, Supabase's roles and
    a database `app` set up as the guide says. Yields (cluster, Supabase)."""
    sb = Supabase()
    with Cluster(conf=conf_lines("supabase-auth.md")) as c:
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute(SUPABASE_ROLES)
            admin.execute("CREATE DATABASE app TEMPLATE template0")
        with psycopg.connect(c.dsn(dbname="app"), autocommit=True) as su:
            su.execute(for_database(guide_block("supabase-auth.md", "settings"), "app"))
        added, warnings, members = set_up(
            c, "app", "supabase-auth.md", sb.jwks(),
            insert_sql="INSERT INTO invoices (tenant_id, amount, created_by) VALUES (%s, %s, gen_random_uuid())")
        assert added == 1 and set(members) == {sb.kid} and not warnings, (added, warnings)
        failures = []
        check_stored(members, failures)
        assert not failures, failures
        yield c, sb


def postgrest_request(conn, role, authorization=None, claims=None):
    """What PostgREST does at the start of each request's transaction
    (docs.postgrest.org, "Transactions"): switch role, set the claims it
    verified and the request headers, then call db-pre-request."""
    conn.execute(f"SET LOCAL ROLE {role}")
    conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims or {}),))
    headers = {"accept": "application/json", "user-agent": "supabase-js/2"}
    if authorization:
        headers["authorization"] = authorization
    conn.execute("SELECT set_config('request.headers', %s, true)", (json.dumps(headers),))
    conn.execute("SELECT public.pre_request()")


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()[0]


def test_supabase_guide_behind_postgrest(supabase_db):
    c, sb = supabase_db
    failures = []
    with app_connection(c, "app", user="authenticator") as conn:
        for tenant, n in ROWS.items():
            token = sb.token(tenant)
            sub = decode_segments(token)[1]["sub"]
            # What PostgREST would write: another user of another tenant. Ignored.
            forged = sb.claims(TENANT_B if tenant == TENANT_A else TENANT_A)
            with conn.transaction():
                postgrest_request(conn, "authenticated", f"Bearer {token}", claims=forged)
                got = {
                    "rows": one(conn, "SELECT count(*) FROM invoices"),
                    "tenants": tenants(conn),
                    "auth.uid()": str(one(conn, "SELECT auth.uid()")),
                    "auth.role()": one(conn, "SELECT auth.role()"),
                    "auth.email()": one(conn, "SELECT auth.email()"),
                    "request.jwt.claims sub": one(conn, "SELECT current_setting('request.jwt.claims', true)::jsonb ->> 'sub'"),
                    "request.jwt.claim.sub": one(conn, "SELECT current_setting('request.jwt.claim.sub', true)"),
                    "request.jwt.claim.aal": one(conn, "SELECT current_setting('request.jwt.claim.aal', true)"),
                }
                want = {"rows": n, "tenants": {tenant}, "auth.uid()": sub, "auth.role()": "authenticated",
                        "auth.email()": "ada@acme.example", "request.jwt.claims sub": sub,
                        "request.jwt.claim.sub": sub, "request.jwt.claim.aal": "aal1"}
                if got != want:
                    failures.append(f"tenant {tenant}: {got} != {want}")
                # Writing the claims later in the transaction changes nothing either.
                conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(forged),))
                conn.execute("SELECT set_config('request.jwt.claim.sub', %s, true)", (forged["sub"],))
                after = (one(conn, "SELECT current_setting('request.jwt.claims', true)::jsonb ->> 'sub'"),
                         one(conn, "SELECT current_setting('request.jwt.claim.sub', true)"),
                         one(conn, "SELECT count(*) FROM invoices"))
                if after != (sub, sub, n):
                    failures.append(f"tenant {tenant}: after set_config {after}")
                # From 15 on no other request.jwt.* name can be set; 14 cannot
                # reserve a prefix (pinned: SECURITY.md).
                refused = sqlstate(conn, "SELECT set_config('request.jwt.made_up', 'x', true)") is not None
                if refused != pg.RESERVES_PREFIXES:
                    failures.append(f"another request.jwt.* name refused: {refused}")
    assert not failures, failures


def test_supabase_policies_insert_and_mfa_delete(supabase_db):
    c, sb = supabase_db
    with app_connection(c, "app", user="authenticator") as conn:
        aal1 = sb.token(TENANT_A)
        sub = decode_segments(aal1)[1]["sub"]
        with conn.transaction():
            postgrest_request(conn, "authenticated", f"Bearer {aal1}")
            new_id, created_by = conn.execute(
                "INSERT INTO invoices (tenant_id, amount) VALUES (%s, 7) RETURNING id, created_by",
                (TENANT_A,)).fetchone()
        assert str(created_by) == sub, "created_by defaults to auth.uid()"
        with conn.transaction():
            postgrest_request(conn, "authenticated", f"Bearer {aal1}")
            assert sqlstate(conn, "INSERT INTO invoices (tenant_id, amount) VALUES (%s, 7)", (TENANT_B,)) == "42501"
            assert conn.execute("DELETE FROM invoices WHERE id = %s", (new_id,)).rowcount == 0, "aal1 deletes"
        aal2 = sb.token(TENANT_A, sub=sub, aal="aal2",
                        amr=[{"method": "totp", "timestamp": 1}, {"method": "password", "timestamp": 1}])
        with conn.transaction():
            postgrest_request(conn, "authenticated", f"Bearer {aal2}")
            assert conn.execute("DELETE FROM invoices WHERE id = %s", (new_id,)).rowcount == 1


def test_supabase_anonymous_and_api_key_requests_bind_nothing(supabase_db):
    c, sb = supabase_db
    anon_key = psycopg_free_hs256({"iss": "supabase", "ref": sb.ref, "role": "anon",
                                   "iat": 1700000000, "exp": 2000000000})
    with app_connection(c, "app", user="authenticator") as conn:
        for role, authorization in [("anon", f"Bearer {anon_key}"), ("anon", None), ("authenticated", None)]:
            with conn.transaction():
                postgrest_request(conn, role, authorization)
                assert one(conn, "SELECT auth.uid()") is None, role
                assert one(conn, "SELECT jwt_rls.jwt_claims()") is None, role
                assert one(conn, "SELECT current_setting('request.jwt.claims', true)") == "{}", role
                if role == "authenticated":
                    assert one(conn, "SELECT count(*) FROM invoices") == 0


def psycopg_free_hs256(payload):
    """A legacy Supabase API key: HS256 with a secret this database does not hold."""
    import jwt
    return jwt.encode(payload, "a-legacy-jwt-secret-of-another-kind-32b!", algorithm="HS256")


def test_supabase_tokens_of_another_project_are_refused(supabase_db):
    c, sb = supabase_db
    other_project = Supabase(ref="zyxwvutsrqponmlkjihg")
    tokens = {
        "another project's issuer, same key": sb.token(TENANT_A, iss=other_project.issuer),
        "another project's key": other_project.token(TENANT_A, iss=sb.issuer),
        "an audience other than authenticated": sb.token(TENANT_A, aud="service"),
    }
    with app_connection(c, "app", user="authenticator") as conn:
        for why, token in tokens.items():
            with pytest.raises(psycopg.Error) as e, conn.transaction():
                postgrest_request(conn, "authenticated", f"Bearer {token}")
            assert e.value.sqlstate == "28000", why


def test_supabase_direct_connection_switches_to_the_token_role(supabase_db):
    """Without PostgREST: authenticate() with jwt_rls.role_claim = 'role'."""
    c, sb = supabase_db
    with app_connection(c, "app", user="authenticator") as conn:
        for tenant, n in ROWS.items():
            with conn.transaction():
                conn.execute("SELECT jwt_rls.authenticate(%s)", (sb.token(tenant),))
                assert one(conn, "SELECT current_user") == "authenticated"
                assert one(conn, "SELECT count(*) FROM invoices") == n
        assert one(conn, "SELECT current_user") == "authenticator"


def test_supabase_legacy_jwt_secret(cluster, db):
    """supabase-auth.md, Keys: the legacy HS256 secret added by hand; tokens
    without kid verify while it is the only key, not once the JWKS is
    imported next to it."""
    sb = Supabase()
    name = "guide_supabase_legacy"
    db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    try:
        with psycopg.connect(cluster.dsn(dbname=name), autocommit=True) as su:
            su.execute("CREATE EXTENSION jwt_rls; GRANT USAGE ON SCHEMA jwt_rls TO app")
            su.execute(f"ALTER DATABASE {name} SET jwt_rls.issuer = '{sb.issuer}'")
            su.execute(f"ALTER DATABASE {name} SET jwt_rls.audience = 'authenticated'")
        with psycopg.connect(cluster.dsn(dbname=name), autocommit=True) as su:
            su.execute("SELECT jwt_rls.add_hmac_key('supabase-legacy', 'HS256', convert_to(%s, 'UTF8'))",
                       (sb.legacy_secret.decode(),))
            with app_connection(cluster, name) as app:
                claims = app.execute("SELECT jwt_rls.authenticate(%s)", (sb.legacy_token(TENANT_A),)).fetchone()[0]
                assert claims["app_metadata"]["tenant_id"] == str(TENANT_A)
            import_keys(su, sb.jwks())
            with app_connection(cluster, name) as app:
                assert sqlstate(app, "SELECT jwt_rls.authenticate(%s)", (sb.legacy_token(TENANT_A),)) == "28000"
                assert app.execute("SELECT jwt_rls.authenticate(%s) ->> 'role'",
                                   (sb.token(TENANT_A),)).fetchone()[0] == "authenticated"
    finally:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
