"""Encrypted tokens (JWE, RFC 7516) through SQL: nested JWTs encrypted by
an independent library (jwcrypto) around tokens signed by another (PyJWT)
decrypt with the database's decryption keys and then verify exactly as a
bare token; without a decryption key they are refused as before; the
attacks of the past on JWE are refused; decryption keys are admin-only and
follow enable/disable in every backend."""

import json

import psycopg
import pytest
from jwcrypto import jwe, jwk

from support import error, sqlstate
from support.schema import ROWS, TENANT_A, TENANT_B, authenticate

PAIRS = [("RSA-OAEP-256", "A256GCM"), ("RSA-OAEP-256", "A128CBC-HS256"),
         ("ECDH-ES", "A256GCM"), ("ECDH-ES", "A128CBC-HS256"),
         ("ECDH-ES+A256KW", "A256GCM"), ("ECDH-ES+A256KW", "A128CBC-HS256"),
         ("A256KW", "A256GCM"), ("A256KW", "A128CBC-HS256"),
         ("dir", "A256GCM"), ("dir", "A128CBC-HS256")]


def encrypt(inner, key, alg, enc, kid=None, **header):
    protected = {"alg": alg, "enc": enc, "cty": "JWT", **header}
    if kid:
        protected["kid"] = kid
    # jwcrypto refuses to make RSA1_5 tokens by default; the attack cases need one.
    token = jwe.JWE(inner.encode() if isinstance(inner, str) else inner, protected=json.dumps(protected),
                    algs=jwe.default_allowed_algs + ["RSA1_5"])
    token.add_recipient(key)
    return token.serialize(compact=True)


@pytest.fixture(scope="module")
def dkeys(db):
    """One decryption key per algorithm (two for dir, one per enc), made by
    jwcrypto and added through SQL; removed at the end."""
    keys = {
        "RSA-OAEP-256": jwk.JWK.generate(kty="RSA", size=2048),
        "ECDH-ES": jwk.JWK.generate(kty="EC", crv="P-256"),
        "ECDH-ES+A256KW": jwk.JWK.generate(kty="EC", crv="P-384"),
        "A256KW": jwk.JWK.generate(kty="oct", size=256),
        ("dir", "A256GCM"): jwk.JWK.generate(kty="oct", size=256),
        ("dir", "A128CBC-HS256"): jwk.JWK.generate(kty="oct", size=256),
    }
    publics, by_name = {}, {}
    for name, key in keys.items():
        alg, enc = name if isinstance(name, tuple) else (name, None)
        kid = f"jwe-{alg}-{enc or 'any'}".lower()
        by_name[name] = (kid, key)
        if key["kty"] == "oct":
            secret = jwk.base64url_decode(key["k"])
            db.execute("SELECT jwt_rls.add_decryption_secret(%s, %s, %s, %s)", (kid, alg, secret, enc))
        else:
            publics[alg] = db.execute("SELECT jwt_rls.add_decryption_key(%s, %s, %s)",
                                      (kid, alg, key.export_private())).fetchone()[0]
    yield by_name, publics
    db.execute("DELETE FROM jwt_rls.decryption_keys")


def key_for(dkeys, alg, enc):
    keys, _ = dkeys
    return keys[(alg, enc)] if alg == "dir" else keys[alg]


def test_without_a_decryption_key_a_jwe_is_refused_as_before(app, hs):
    key = jwk.JWK.generate(kty="oct", size=256)
    token = encrypt(hs.token(TENANT_A), key, "dir", "A256GCM")
    e = error(app, "SELECT jwt_rls.authenticate(%s)", (token,))
    assert e.sqlstate == "22023" and "encrypted tokens (JWE) are not accepted" in str(e)
    assert "add_decryption_key" in e.diag.message_hint


@pytest.mark.parametrize("alg, enc", PAIRS)
def test_nested_tokens_from_jwcrypto_decrypt_and_verify(app, hs, dkeys, alg, enc):
    kid, key = key_for(dkeys, alg, enc)
    for tenant in (TENANT_A, TENANT_B):
        token = encrypt(hs.token(tenant), key, alg, enc, kid=kid)
        assert authenticate(app, token) == ROWS[tenant], (alg, enc)
    # Bound with SET as well, and the claims come from the inner token.
    token = encrypt(hs.token(TENANT_B, role_hint="inner"), key, alg, enc, kid=kid)
    with app.transaction():
        app.execute("SELECT set_config('jwt_rls.token', %s, true)", (token,))
        assert app.execute("SELECT jwt_rls.jwt_claim('role_hint'), jwt_rls.jwt_claim('tenant_id')").fetchone() == (
            "inner", str(TENANT_B))


def test_the_inner_token_is_verified_exactly_as_a_bare_one(app, hs, signers, dkeys):
    kid, key = key_for(dkeys, "A256KW", None)
    refused = {
        "bad inner signature": hs.token(TENANT_A)[:-4] + "AAAA",
        "expired inner token": hs.token(TENANT_A, ttl=-60),
        "inner token from another issuer": hs.token(TENANT_A, iss="https://evil.example"),
        "inner token for another audience": hs.token(TENANT_A, aud="other"),
    }
    for why, inner in refused.items():
        token = encrypt(inner, key, "A256KW", "A256GCM", kid=kid)
        assert authenticate(app, token) == "28000", why
    # Every signature algorithm works inside.
    for alg, signer in signers.items():
        token = encrypt(signer.token(TENANT_A), key, "A256KW", "A256GCM", kid=kid)
        assert authenticate(app, token) == ROWS[TENANT_A], alg


def test_attacks_on_jwe_are_refused_without_the_token_in_the_message(app, hs, dkeys):
    kid, key = key_for(dkeys, "A256KW", None)
    inner = hs.token(TENANT_A)
    good = encrypt(inner, key, "A256KW", "A256GCM", kid=kid)
    h, ek, iv, ct, tag = good.split(".")
    flip = lambda s: s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1]  # noqa: E731
    rsa_kid, rsa_key = key_for(dkeys, "RSA-OAEP-256", None)
    cases = {
        "altered tag": (".".join([h, ek, iv, ct, flip(tag)]), "28000"),
        "truncated tag": (".".join([h, ek, iv, ct, tag[:-6]]), None),
        "altered ciphertext": (".".join([h, ek, iv, flip(ct), tag]), "28000"),
        "altered iv": (".".join([h, ek, flip(iv), ct, tag]), None),
        "bare JWE (claims, no signature)": (
            encrypt(json.dumps({"tenant_id": str(TENANT_B), "exp": 4102444800}), key, "A256KW", "A256GCM",
                    kid=kid, cty="json"), "28000"),
        "JWE inside a JWE": (encrypt(good, key, "A256KW", "A256GCM", kid=kid), "28000"),
        "RSA1_5": (encrypt(inner, rsa_key, "RSA1_5", "A256GCM", kid=rsa_kid), "28000"),
        "zip": (encrypt(inner, key, "A256KW", "A256GCM", kid=kid, zip="DEF"), None),
        "unknown kid": (encrypt(inner, key, "A256KW", "A256GCM", kid="nobody"), "28000"),
        "another key under our kid": (encrypt(inner, jwk.JWK.generate(kty="oct", size=256), "A256KW", "A256GCM",
                                              kid=kid), "28000"),
    }
    for why, (token, state) in cases.items():
        e = error(app, "SELECT jwt_rls.authenticate(%s)", (token,))
        assert e is not None, why
        assert e.sqlstate in (state,) if state else e.sqlstate in ("22023", "28000"), (why, e.sqlstate, str(e))
        text = " ".join(filter(None, [str(e), e.diag.message_detail or "", e.diag.message_hint or ""]))
        assert token[:40] not in text and token[-20:] not in text, why
    # A wrong key and a tampered tag are one and the same error (no oracle).
    a = error(app, "SELECT jwt_rls.authenticate(%s)", (cases["altered tag"][0],))
    b = error(app, "SELECT jwt_rls.authenticate(%s)", (cases["another key under our kid"][0],))
    assert (str(a), a.diag.message_detail) == (str(b), b.diag.message_detail)


def test_decryption_keys_are_admin_only_and_follow_disable_in_every_backend(cluster, db, app, hs, dkeys):
    keys, publics = dkeys
    for public in publics.values():
        assert set(public) <= {"kty", "crv", "x", "y", "n", "e", "kid", "use", "alg"}, public
    assert publics["RSA-OAEP-256"]["use"] == "enc"
    for sql in ["SELECT * FROM jwt_rls.decryption_keys", "SELECT * FROM jwt_rls.decryption_key_list",
                "SELECT jwt_rls.add_decryption_secret('x', 'A256KW', '\\x00'::bytea)",
                "SELECT jwt_rls.disable_decryption_key('x')"]:
        assert sqlstate(app, sql) == "42501", sql
    kid, key = key_for(dkeys, "ECDH-ES", None)
    token = encrypt(hs.token(TENANT_A), key, "ECDH-ES", "A256GCM", kid=kid)
    assert authenticate(app, token) == ROWS[TENANT_A]  # now cached in app's backend
    try:
        assert db.execute("SELECT jwt_rls.disable_decryption_key(%s)", (kid,)).fetchone()[0] is True
        assert authenticate(app, token) == "28000", "a cached verification follows the disabled key"
    finally:
        db.execute("SELECT jwt_rls.enable_decryption_key(%s)", (kid,))
    assert authenticate(app, token) == ROWS[TENANT_A]


def test_refused_decryption_keys(db):
    rsa_small = jwk.JWK.generate(kty="RSA", size=1024)
    for sql, params in [
        ("SELECT jwt_rls.add_decryption_key('k', 'RSA-OAEP-256', %s)", (rsa_small.export_private(),)),
        ("SELECT jwt_rls.add_decryption_key('k', 'RSA1_5', %s)", (jwk.JWK.generate(kty="RSA", size=2048).export_private(),)),
        ("SELECT jwt_rls.add_decryption_key('k', 'RSA-OAEP-256', %s)", (jwk.JWK.generate(kty="RSA", size=2048).export_public(),)),
        ("SELECT jwt_rls.add_decryption_secret('k', 'A256KW', '\\x0001'::bytea)", None),
        ("SELECT jwt_rls.add_decryption_secret('k', 'dir', decode(repeat('ab', 32), 'hex'))", None),
    ]:
        e = error(db, sql, params)
        assert e is not None and e.sqlstate == "22023", (sql, e)
        assert '"d"' not in str(e) and "BEGIN" not in str(e)


def test_a_cached_jwe_is_refused_once_its_decryption_key_leaves_its_window(db, app, hs, dkeys):
    """No table change to clear caches: the key's not_after passes while the
    token sits in the backend's cache, and the next read re-checks it."""
    import time
    key = jwk.JWK.generate(kty="oct", size=256)
    db.execute("SELECT jwt_rls.add_decryption_secret('jwe-window', 'A256KW', %s, NULL, NULL, now() + interval '2 s')",
               (jwk.base64url_decode(key["k"]),))
    try:
        token = encrypt(hs.token(TENANT_A), key, "A256KW", "A256GCM", kid="jwe-window")
        assert authenticate(app, token) == ROWS[TENANT_A]
        time.sleep(2.5)
        assert authenticate(app, token) == "28000"
    finally:
        db.execute("SELECT jwt_rls.remove_decryption_key('jwe-window')")


def test_encrypt_makes_tokens_jwcrypto_and_jwt_rls_decrypt(db, app, hs, dkeys):
    keys, publics = dkeys
    kid, private = keys["RSA-OAEP-256"]
    inner = hs.token(TENANT_B)
    for enc in ("A256GCM", "A128CBC-HS256"):
        token = app.execute("SELECT jwt_rls.encrypt(%s, %s, 'RSA-OAEP-256', %s)",
                            (inner, json.dumps(publics["RSA-OAEP-256"]), enc)).fetchone()[0]
        assert token.count(".") == 4
        other = jwe.JWE()
        other.deserialize(token, key=private)
        assert other.payload.decode() == inner
        assert json.loads(other.objects["protected"])["kid"] == kid
        assert authenticate(app, token) == ROWS[TENANT_B]
    # Only a signed token is encrypted.
    assert sqlstate(app, "SELECT jwt_rls.encrypt('{\"sub\": \"x\"}', %s, 'RSA-OAEP-256', 'A256GCM')",
                    (json.dumps(publics["RSA-OAEP-256"]),)) == "22023"
