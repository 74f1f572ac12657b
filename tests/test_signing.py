"""The database as the issuer: signing keys generated in it or imported,
jwt_rls.sign(), and the JWKS other services verify its tokens with."""

import json
import time
import uuid

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support import b64url_decode, sqlstate
from support.schema import TENANT_A, tenants
from support.tokens import AUDIENCE, ISSUER

ALGS = ["HS256", "HS512", "RS256", "PS256", "ES256", "ES384", "EdDSA"]


@pytest.fixture
def db(cluster, db):
    """A fresh superuser connection: it sees the database's jwt_rls.issuer
    (the session fixture's connection predates that setting)."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        yield conn


def kid(alg):
    return f"issued-{alg.lower()}-{uuid.uuid4().hex[:6]}"


def public_key_of(db, kid_, alg):
    """What an independent verifier gets: the JWKS entry, or (HMAC) the
    secret as the superuser reads it from the key table."""
    if alg.startswith("HS"):
        material = db.execute("SELECT material FROM jwt_rls.keys WHERE kid = %s", (kid_,)).fetchone()[0]
        return b64url_decode(material)
    jwks = db.execute("SELECT jwt_rls.jwks()").fetchone()[0]
    entry = next(k for k in jwks["keys"] if k["kid"] == kid_)
    return jwt.PyJWK(entry).key


@pytest.mark.parametrize("alg", ALGS)
def test_generated_key_signs_tokens_that_pyjwt_and_jwt_rls_verify(db, app, alg):
    k = kid(alg)
    public = db.execute("SELECT jwt_rls.generate_signing_key(%s, %s)", (k, alg)).fetchone()[0]
    assert public["kid"] == k and public["alg"] == alg
    for private_member in ["d", "p", "q", "dp", "dq", "qi", "k"]:
        assert private_member not in public, private_member
    token = db.execute("SELECT jwt_rls.sign(%s::jsonb, %s)",
                       (json.dumps({"sub": "u-1", "tenant_id": str(TENANT_A), "aud": AUDIENCE}), k)).fetchone()[0]
    claims = jwt.decode(token, public_key_of(db, k, alg), algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == "u-1"
    assert jwt.get_unverified_header(token) == {"alg": alg, "typ": "JWT", "kid": k}
    # jwt_rls verifies what it signed, as the application role.
    with app.transaction():
        app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
        assert tenants(app) == {TENANT_A}


def test_sign_fills_iat_exp_jti_and_iss(db):
    k = kid("ES256")
    db.execute("SELECT jwt_rls.generate_signing_key(%s, 'ES256')", (k,))
    db.execute("SET jwt_rls.sign_lifetime = 120")
    try:
        before = int(time.time())
        tokens = [db.execute("SELECT jwt_rls.sign('{\"sub\": \"u\"}', %s)", (k,)).fetchone()[0] for _ in range(20)]
        after = int(time.time())
    finally:
        db.execute("RESET jwt_rls.sign_lifetime")
    claims = [jwt.decode(t, options={"verify_signature": False}) for t in tokens]
    for c in claims:
        assert before - 1 <= c["iat"] <= after + 1
        assert c["exp"] == c["iat"] + 120
        assert c["iss"] == ISSUER  # the first of jwt_rls.issuer
        assert len(b64url_decode(c["jti"])) == 16
    assert len({c["jti"] for c in claims}) == 20
    # What the caller gives is kept.
    given = {"sub": "u", "iat": 1_900_000_000, "exp": 1_900_000_060, "jti": "mine", "iss": "elsewhere"}
    token = db.execute("SELECT jwt_rls.sign(%s::jsonb, %s)", (json.dumps(given), k)).fetchone()[0]
    assert jwt.decode(token, options={"verify_signature": False}) == given


def test_imported_private_keys_sign_and_pyjwt_tokens_verify(db, app):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for alg, key, fmt in [("RS256", rsa_key, serialization.PrivateFormat.PKCS8),
                          ("RS512", rsa_key, serialization.PrivateFormat.TraditionalOpenSSL),
                          ("ES256", ec_key, serialization.PrivateFormat.PKCS8)]:
        k = kid(alg)
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
        db.execute("SELECT jwt_rls.import_signing_key(%s, %s, %s)", (k, alg, pem))
        ours = db.execute("SELECT jwt_rls.sign(%s::jsonb, %s)",
                          (json.dumps({"sub": "u", "aud": AUDIENCE}), k)).fetchone()[0]
        jwt.decode(ours, key.public_key(), algorithms=[alg], audience=AUDIENCE)
        theirs = jwt.encode({"sub": "u", "tenant_id": str(TENANT_A), "iss": ISSUER, "aud": AUDIENCE,
                             "exp": int(time.time()) + 60}, key, algorithm=alg, headers={"kid": k})
        with app.transaction():
            app.execute("SELECT jwt_rls.authenticate(%s)", (theirs,))
            assert tenants(app) == {TENANT_A}
    secret_kid = kid("HS256")
    secret = b"\x01" * 16 + uuid.uuid4().bytes + uuid.uuid4().bytes
    db.execute("SELECT jwt_rls.import_signing_secret(%s, 'HS256', %s)", (secret_kid, secret))
    ours = db.execute("SELECT jwt_rls.sign('{\"aud\": \"%s\"}', %%s)" % AUDIENCE, (secret_kid,)).fetchone()[0]
    jwt.decode(ours, secret, algorithms=["HS256"], audience=AUDIENCE)


def test_bad_signing_keys_are_refused(db):
    public_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    for alg, pem in [("RS256", public_pem), ("RS256", small), ("ES384", ec_pem), ("RS256", ec_pem), ("HS256", ec_pem)]:
        assert sqlstate(db, "SELECT jwt_rls.import_signing_key('bad', %s, %s)", (alg, pem)) == "22023", alg
    assert sqlstate(db, "SELECT jwt_rls.import_signing_secret('bad', 'HS256', %s)", (b"short",)) == "22023"
    assert sqlstate(db, "SELECT jwt_rls.generate_signing_key('bad', 'none')") == "22023"
    assert db.execute("SELECT count(*) FROM jwt_rls.keys WHERE kid = 'bad'").fetchone()[0] == 0
    assert sqlstate(db, "SELECT jwt_rls.sign('[1, 2]')") == "22023"


def test_disabling_or_removing_the_key_stops_signing_and_its_tokens(db, app):
    k = kid("EdDSA")
    db.execute("SELECT jwt_rls.generate_signing_key(%s, 'EdDSA')", (k,))
    token = db.execute("SELECT jwt_rls.sign(%s::jsonb, %s)",
                       (json.dumps({"tenant_id": str(TENANT_A), "aud": AUDIENCE}), k)).fetchone()[0]
    db.execute("SELECT jwt_rls.disable_key(%s)", (k,))
    assert sqlstate(db, "SELECT jwt_rls.sign('{}', %s)", (k,)) == "22023"
    assert sqlstate(app, "SELECT jwt_rls.authenticate(%s)", (token,)) == "28000"
    assert k not in {e["kid"] for e in db.execute("SELECT jwt_rls.jwks()").fetchone()[0]["keys"]}
    db.execute("SELECT jwt_rls.enable_key(%s)", (k,))
    db.execute("SELECT jwt_rls.sign('{}', %s)", (k,))
    db.execute("SELECT jwt_rls.remove_key(%s)", (k,))
    assert db.execute("SELECT count(*) FROM jwt_rls.signing_keys WHERE kid = %s", (k,)).fetchone()[0] == 0
    assert sqlstate(db, "SELECT jwt_rls.sign('{}', %s)", (k,)) == "22023"


def test_only_granted_roles_sign_and_nobody_else_reads_private_keys(cluster, db, app):
    k = kid("ES256")
    db.execute("SELECT jwt_rls.generate_signing_key(%s, 'ES256')", (k,))
    for sql in ["SELECT jwt_rls.sign('{}')", "SELECT jwt_rls.generate_signing_key('x', 'ES256')",
                "SELECT jwt_rls.import_signing_secret('x', 'HS256', 'x'::bytea)",
                "SELECT count(*) FROM jwt_rls.signing_keys", "SELECT count(*) FROM jwt_rls.keys"]:
        assert sqlstate(app, sql) == "42501", sql
    # The public JWKS is for everyone, and holds no private member.
    keys = app.execute("SELECT jwt_rls.jwks()").fetchone()[0]["keys"]
    assert k in {e["kid"] for e in keys}
    assert not any(m in e for e in keys for m in ["d", "p", "q", "k"])
    db.execute("DROP ROLE IF EXISTS issuer_service")
    db.execute("CREATE ROLE issuer_service LOGIN")
    db.execute("GRANT USAGE ON SCHEMA jwt_rls TO issuer_service")
    db.execute("GRANT EXECUTE ON FUNCTION jwt_rls.sign(jsonb, text) TO issuer_service")
    with psycopg.connect(cluster.dsn(user="issuer_service"), autocommit=True) as svc:
        token = svc.execute("SELECT jwt_rls.sign('{\"sub\": \"s\"}', %s)", (k,)).fetchone()[0]
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == "s"
        assert sqlstate(svc, "SELECT count(*) FROM jwt_rls.signing_keys") == "42501"
        assert sqlstate(svc, "SELECT private_key FROM jwt_rls.signing_keys") == "42501"
