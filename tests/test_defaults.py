"""Safer defaults and lenient key import (0.2.0):

- a token that carries `aud` is refused while no audience is configured,
  unless the administrator opts out with jwt_rls.accept_any_audience;
- adding a key while jwt_rls.issuer is empty says, as a WARNING, that any
  issuer is accepted;
- import_jwks takes a JWKS as identity providers publish it: RSA keys
  without `alg`, certificate members, encryption keys beside signing keys,
  and one unusable key reported and skipped, not fatal to the others."""

import json

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support import b64url, sqlstate
from support.schema import TENANT_A
from support.tokens import AUDIENCE, Signer


@pytest.fixture
def fresh(cluster, db):
    """A database with jwt_rls and no policy settings at all."""
    db.execute("DROP DATABASE IF EXISTS defaults")
    db.execute("CREATE DATABASE defaults TEMPLATE template0")
    with psycopg.connect(cluster.dsn(dbname="defaults"), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION jwt_rls")
        admin.execute("GRANT USAGE ON SCHEMA jwt_rls TO app")
        yield admin
    db.execute("DROP DATABASE defaults WITH (FORCE)")


def notices_of(conn):
    seen = []
    conn.add_notice_handler(lambda d: seen.append((d.severity_nonlocalized, d.message_primary, d.message_detail)))
    return seen


def test_aud_is_refused_without_a_configured_audience_unless_opted_out(cluster, fresh):
    hs = Signer("defaults-hs", "HS256")
    with fresh.cursor() as cur:
        hs.install(cur)
    with_aud, without_aud = hs.token(TENANT_A), hs.token(TENANT_A, aud=None)
    with psycopg.connect(cluster.dsn(user="app", dbname="defaults"), autocommit=True) as app:
        assert sqlstate(app, "SELECT jwt_rls.authenticate(%s)", (with_aud,)) == "28000"
        assert sqlstate(app, "SELECT jwt_rls.authenticate(%s)", (without_aud,)) is None
        # The opt-out is the administrator's, not the application's.
        assert sqlstate(app, "SET jwt_rls.accept_any_audience = on") == "42501"
    fresh.execute("ALTER DATABASE defaults SET jwt_rls.accept_any_audience = on")
    with psycopg.connect(cluster.dsn(user="app", dbname="defaults"), autocommit=True) as app:
        assert sqlstate(app, "SELECT jwt_rls.authenticate(%s)", (with_aud,)) is None
        # aud is still type-checked.
        assert sqlstate(app, "SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A, aud=7),)) == "28000"
    fresh.execute(f"ALTER DATABASE defaults SET jwt_rls.audience = '{AUDIENCE}'")
    with psycopg.connect(cluster.dsn(user="app", dbname="defaults"), autocommit=True) as app:
        # A configured audience wins over the opt-out.
        assert sqlstate(app, "SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A, aud="other"),)) == "28000"
        assert sqlstate(app, "SELECT jwt_rls.authenticate(%s)", (with_aud,)) is None


def test_adding_a_key_without_an_issuer_warns(fresh):
    seen = notices_of(fresh)
    hs = Signer("warn-hs", "HS256")
    with fresh.cursor() as cur:
        hs.install(cur)
    assert [s for s in seen if "tokens from any issuer are accepted" in s[1] and s[0] == "WARNING"], seen
    seen.clear()
    fresh.execute("SET jwt_rls.issuer = 'https://issuer.example'")
    with fresh.cursor() as cur:
        Signer("warn-hs-2", "HS256").install(cur)
    assert seen == []


def rsa_jwk(kid, key, **extra):
    numbers = key.public_key().public_numbers()

    def b(n):
        return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))
    return {"kty": "RSA", "kid": kid, "n": b(numbers.n), "e": b(numbers.e), **extra}


def test_import_jwks_takes_a_provider_jwks_and_skips_what_it_cannot_use(cluster, fresh):
    fresh.execute("SET jwt_rls.issuer = 'https://login.example/v2.0'")
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    encryption = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    jwks = {"keys": [
        # Entra ID style: no alg, a certificate chain, x5t and an issuer member.
        rsa_jwk("entra-1", signing, use="sig", x5t="x5t-value", x5c=["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
                issuer="https://login.example/v2.0"),
        rsa_jwk("enc-1", encryption, use="enc", alg="RSA-OAEP"),
        {"kty": "EC", "kid": "ecdh-1", "crv": "P-256", "alg": "ECDH-ES",
         "x": b64url(p256.x.to_bytes(32, "big")), "y": b64url(p256.y.to_bytes(32, "big"))},
        rsa_jwk("legacy-1024", small, alg="RS256"),
    ]}
    seen = notices_of(fresh)
    assert fresh.execute("SELECT jwt_rls.import_jwks(%s)", (json.dumps(jwks),)).fetchone()[0] == 1
    warnings = [s for s in seen if s[0] == "WARNING"]
    assert len(warnings) == 1 and "cannot be used and is skipped" in warnings[0][1], seen
    assert "legacy-1024" in warnings[0][2] and "2048" in warnings[0][2], warnings
    stored = fresh.execute("SELECT alg, material::jsonb FROM jwt_rls.keys WHERE kid = 'entra-1'").fetchone()
    assert stored[0] == "RS256"
    assert not {"x5c", "x5t", "issuer"} & set(stored[1]), "only the key itself is stored"
    # Importing the same document again adds nothing and still succeeds.
    assert fresh.execute("SELECT jwt_rls.import_jwks(%s)", (json.dumps(jwks),)).fetchone()[0] == 0

    signer = Signer("entra-1", "RS256")
    signer.key = signing
    token = signer.token(TENANT_A, iss="https://login.example/v2.0", aud=None)
    with psycopg.connect(cluster.dsn(user="app", dbname="defaults"), autocommit=True) as app:
        assert sqlstate(app, "SELECT jwt_rls.authenticate(%s)", (token,)) is None
    # A document where nothing can be used is an error, not a silent 0.
    only_bad = {"keys": [rsa_jwk("legacy-1024", small, alg="RS256")]}
    assert sqlstate(fresh, "SELECT jwt_rls.import_jwks(%s)", (json.dumps(only_bad),)) == "22023"
