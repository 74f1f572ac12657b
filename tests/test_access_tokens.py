"""Access-token profile and introspection (0.3.0):

- `jwt_rls.require_at_jwt` (RFC 9068): only tokens whose header `typ` is
  `at+jwt` bind; an ID token (typ `JWT`) or a token without `typ` is refused
  with 28000, whichever way it is bound. `jwt_rls.sign_at_jwt` makes
  `sign()` issue `at+jwt`.
- `jwt_rls.introspect(token)` (RFC 7662 shape): `{"active": true}` with the
  claims exactly as signed for a token that would bind; `{"active": false}`
  and nothing else for anything that would be refused; not for PUBLIC."""

import json
import time

import jwt
import psycopg
import pytest

from support import error, make_db
from support.schema import TENANT_A
from support.tokens import AUDIENCE, ISSUER


@pytest.fixture(scope="module")
def strict(cluster, db, signers):
    """A database that accepts access tokens only (`require_at_jwt`), with
    the shared schema's issuer and audience, and jwt_rls installed."""
    db.execute("DROP DATABASE IF EXISTS at_only")
    make_db(db, "at_only", {"issuer": ISSUER, "audience": AUDIENCE, "require_at_jwt": "on"})
    with psycopg.connect(cluster.dsn(dbname="at_only"), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION jwt_rls")
        admin.execute("DROP ROLE IF EXISTS at_app")
        admin.execute("CREATE ROLE at_app LOGIN")
        admin.execute("GRANT USAGE ON SCHEMA jwt_rls TO at_app")
        with admin.cursor() as cur:
            signers["HS256"].install(cur)
            signers["ES256"].install(cur)
    with psycopg.connect(cluster.dsn(dbname="at_only", user="at_app"), autocommit=True) as conn:
        yield conn


def typed(signer, typ, **claims):
    """A token of `signer` with header typ `typ` (None: no typ member)."""
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "tenant_id": str(TENANT_A),
               "iat": now, "exp": now + 600, **claims}
    headers = {"kid": signer.kid, "typ": typ}
    token = jwt.encode(payload, signer.key, algorithm=signer.alg, headers=headers)
    if typ is None:  # PyJWT always writes typ: rebuild the header without it
        import base64
        head = base64.urlsafe_b64encode(json.dumps({"alg": signer.alg, "kid": signer.kid}).encode()).rstrip(b"=")
        body = token.split(".")[1]
        signing_input = head.decode() + "." + body
        sig = jwt.api_jws.get_algorithm_by_name(signer.alg).sign(
            signing_input.encode(), jwt.api_jws.get_algorithm_by_name(signer.alg).prepare_key(signer.key))
        token = signing_input + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    return token


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT"])
def test_require_at_jwt_accepts_access_tokens(strict, signers, typ):
    for alg in ["HS256", "ES256"]:
        token = typed(signers[alg], typ)
        assert strict.execute("SELECT jwt_rls.authenticate(%s) ->> 'tenant_id'", (token,)).fetchone()[0] \
            == str(TENANT_A)


@pytest.mark.parametrize("typ", ["JWT", "application/jwt", None])
def test_require_at_jwt_refuses_id_tokens_and_untyped_tokens_every_way(strict, signers, typ):
    token = typed(signers["ES256"], typ, nonce="n-1", azp="client")  # an OIDC ID token's shape
    for sql, params in [("SELECT jwt_rls.authenticate(%s)", (token,)),
                        ("SELECT set_config('jwt_rls.token', %s, true)", (token,)),
                        ("SELECT set_config('jwt_rls.token', %s, false)", (token,))]:
        e = error(strict, sql, params)
        assert e is not None and e.sqlstate == "28000", (typ, sql, e)
        assert e.diag.message_primary == "token is not an access token"
        assert "require_at_jwt" in e.diag.message_detail and token.split(".")[2] not in str(e)
    assert strict.execute("SELECT jwt_rls.jwt_claim('sub')").fetchone()[0] is None


def test_without_require_at_jwt_both_kinds_bind(app, signers):
    for typ in ["JWT", "at+jwt", None]:
        token = typed(signers["HS256"], typ)
        assert app.execute("SELECT jwt_rls.authenticate(%s) ->> 'tenant_id'", (token,)).fetchone()[0] \
            == str(TENANT_A)


def test_require_at_jwt_is_superuser_only(strict):
    e = error(strict, "SET jwt_rls.require_at_jwt = off")
    assert e is not None and e.sqlstate == "42501", e


def test_sign_at_jwt_issues_access_tokens_that_a_strict_database_accepts(cluster, db, strict):
    with psycopg.connect(cluster.dsn(dbname="at_only"), autocommit=True) as admin:
        admin.execute("SELECT jwt_rls.generate_signing_key('at-signer', 'ES256')")
        claims = json.dumps({"sub": "u-2", "aud": AUDIENCE, "iss": ISSUER, "tenant_id": str(TENANT_A)})
        plain = admin.execute("SELECT jwt_rls.sign(%s::jsonb)", (claims,)).fetchone()[0]
        admin.execute("SET jwt_rls.sign_at_jwt = on")
        access = admin.execute("SELECT jwt_rls.sign(%s::jsonb)", (claims,)).fetchone()[0]
    assert jwt.get_unverified_header(plain)["typ"] == "JWT"
    assert jwt.get_unverified_header(access)["typ"] == "at+jwt"
    assert error(strict, "SELECT jwt_rls.authenticate(%s)", (plain,)).sqlstate == "28000"
    assert strict.execute("SELECT jwt_rls.authenticate(%s) ->> 'sub'", (access,)).fetchone()[0] == "u-2"


# --- introspection --------------------------------------------------------------------

def introspect(conn, token):
    return conn.execute("SELECT jwt_rls.introspect(%s)", (token,)).fetchone()[0]


def test_introspect_reports_an_active_token_with_its_claims_exactly(db, hs):
    big = 123456789012345678901234567890
    token = hs.token(TENANT_A, sub="u-3", jti="j-3", sid="s-3", cnf={"jkt": "x" * 43}, big=big, active=False)
    answer = db.execute("SELECT jwt_rls.introspect(%s)::text", (token,)).fetchone()[0]
    parsed = json.loads(answer)
    assert parsed["active"] is True  # wins over a claim named active
    claims = jwt.decode(token, options={"verify_signature": False})
    for name in ["sub", "exp", "iat", "nbf", "jti", "sid", "cnf", "iss", "aud", "tenant_id", "big"]:
        assert parsed[name] == claims[name], name
    assert str(big) in answer  # exact, not a float


def test_introspect_answers_only_active_false_for_anything_refused(db, hs, signers):
    good = hs.token(TENANT_A, jti="revoke-me-introspect")
    assert introspect(db, good)["active"] is True
    db.execute("SELECT jwt_rls.revoke_token(%s)", (good,))
    refused = {
        "revoked": good,
        "expired": hs.token(TENANT_A, ttl=-3600),
        "forged": good[:-4] + "AAAA",
        "unknown key": jwt.encode({"exp": int(time.time()) + 60}, b"k" * 32, algorithm="HS256",
                                  headers={"kid": "nobody"}),
        "other audience": hs.token(TENANT_A, aud="someone-else"),
        "garbage": "not a token",
        "empty": "",
    }
    for why, token in refused.items():
        assert introspect(db, token) == {"active": False}, why


def test_introspect_binds_nothing_and_is_not_for_public(db, app, hs):
    token = hs.token(TENANT_A)
    assert introspect(db, token)["active"] is True
    assert db.execute("SELECT jwt_rls.jwt_claim('tenant_id')").fetchone()[0] is None
    e = error(app, "SELECT jwt_rls.introspect(%s)", (token,))
    assert e is not None and e.sqlstate == "42501", e
