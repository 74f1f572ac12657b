"""Hostile tokens through SQL, as the application role: every case of the
catalog (tests/support/hostile.py) and every invalid case of the shared vectors is
refused with its SQLSTATE and a message naming the reason, never the token;
every valid vector verifies with exactly its claims."""

import json
import os
from collections import Counter

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from support import b64url, backend_pid, error, make_db
from support.hostile import ODD_KIDS, P256_ORDER, Catalog, jws, sign
from support.tokens import ALGS, AUDIENCE, ISSUER, Signer

VECTORS = os.path.join(os.path.dirname(__file__), "..", "core", "tests", "vectors")
METHODS = ["SELECT jwt_rls.authenticate(%s)", "SELECT set_config('jwt_rls.token', %s, true)"]


def leaks(token, e):
    """Pieces of the token, and odd kids of the catalog, found anywhere in
    the error: its text, message, detail, hint or context."""
    text = " ".join(filter(None, [str(e), e.diag.message_primary, e.diag.message_detail, e.diag.message_hint,
                                  e.diag.context]))
    return ([seg[:12] for seg in token.split(".") if len(seg) >= 8 and seg in text]
            + [kid[:12] for kid in ODD_KIDS.values() if kid in text])


@pytest.fixture(scope="module")
def hostile_db(cluster, db):
    keys = {alg: Signer(f"{alg.lower()}-hostile", alg) for alg in ALGS}
    make_db(db, "hostile", {"issuer": ISSUER, "audience": AUDIENCE, "leeway": 0,
                            "max_lifetime": 2 * 86400, "max_token_bytes": 65536})
    with psycopg.connect(cluster.dsn(dbname="hostile"), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION jwt_rls")
        admin.execute("GRANT USAGE ON SCHEMA jwt_rls TO app")
        with admin.cursor() as cur:
            for k in keys.values():
                k.install(cur)
    return keys


def test_hostile_catalog_is_refused(cluster, hostile_db):
    cases = Catalog(hostile_db).build()
    assert len(cases) > 0
    wrong = []
    checked = 0
    with psycopg.connect(cluster.dsn(user="app", dbname="hostile"), autocommit=True) as app:
        pid = backend_pid(app)
        for name, token, sqlstate, words in cases:
            for how in METHODS:
                if token == "" and "set_config" in how:
                    continue  # setting the empty string unbinds: it is not a token
                checked += 1
                e = error(app, how, (token,))
                if e is None:
                    wrong.append(f"{name}: accepted by {how}")
                elif e.sqlstate != sqlstate or words.lower() not in e.diag.message_primary.lower():
                    wrong.append(f"{name}: {how}: {e.sqlstate} {e.diag.message_primary!r}, "
                                 f"expected {sqlstate} {words!r}")
                elif leaks(token, e):
                    # Neither token text nor odd kids may ever be echoed.
                    wrong.append(f"{name}: {how}: the error carries {leaks(token, e)}")
        assert backend_pid(app) == pid
        assert app.execute("SELECT jwt_rls.jwt_claims()").fetchone()[0] is None
    assert not wrong, "\n".join(wrong)
    empty = sum(1 for case in cases if case[1] == "")
    assert checked == len(METHODS) * len(cases) - empty
    print(f"hostile catalog: {len(cases)} cases refused through authenticate() and set_config() "
          f"({checked} refusals checked)")


def test_catalog_controls_are_accepted(cluster, hostile_db):
    """The catalog's building blocks make valid tokens: each case fails for
    its own flaw, not because the scaffolding is broken."""
    catalog = Catalog(hostile_db)
    with psycopg.connect(cluster.dsn(user="app", dbname="hostile"), autocommit=True) as app:
        for alg, signer in hostile_db.items():
            token = jws(catalog.header(alg), catalog.claims(), signer)
            claims = app.execute("SELECT jwt_rls.authenticate(%s)", (token,)).fetchone()[0]
            assert claims["tenant_id"] == "tenant-1", alg
        no_typ = jws(catalog.header(typ=...), catalog.claims(), hostile_db["HS256"])
        assert app.execute("SELECT jwt_rls.authenticate(%s)", (no_typ,)).fetchone()[0]["sub"] == "user-1"


def test_ecdsa_high_s_is_not_an_identity(cluster, hostile_db):
    """ECDSA signatures are malleable: (r, n - s) verifies too. jwt_rls keys
    nothing on the signature (claims are the identity), so both spellings
    give the same claims and neither changes what the other binds."""
    catalog = Catalog(hostile_db)
    es = hostile_db["ES256"]
    h, p = b64url(json.dumps(catalog.header("ES256")).encode()), b64url(json.dumps(catalog.claims()).encode())
    raw = sign(es, f"{h}.{p}".encode())
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    flipped = r + (P256_ORDER - s).to_bytes(32, "big")
    low, high = f"{h}.{p}.{b64url(raw)}", f"{h}.{p}.{b64url(flipped)}"
    with psycopg.connect(cluster.dsn(user="app", dbname="hostile"), autocommit=True) as app:
        a = app.execute("SELECT jwt_rls.authenticate(%s)", (low,)).fetchone()[0]
        b = app.execute("SELECT jwt_rls.authenticate(%s)", (high,)).fetchone()[0]
        assert a["tenant_id"] == "tenant-1"
        assert a == b


def test_weak_keys_are_refused_at_import(cluster, hostile_db):
    weak_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with psycopg.connect(cluster.dsn(dbname="hostile"), autocommit=True) as admin:
        for sql, param in [
            ("SELECT jwt_rls.add_hmac_key('empty', 'HS256', %s)", b""),
            ("SELECT jwt_rls.add_hmac_key('short', 'HS256', %s)", b"x" * 16),
            ("SELECT jwt_rls.add_hmac_key('short384', 'HS384', %s)", b"x" * 47),
            ("SELECT jwt_rls.add_hmac_key('pem', 'HS256', %s)", hostile_db["RS256"].public.encode()),
            ("SELECT jwt_rls.add_pem_key('rsa1024', 'RS256', %s)", weak_rsa),
            ("SELECT jwt_rls.import_jwks(%s)",
             json.dumps({"keys": [{"kty": "oct", "kid": "o", "alg": "HS256", "k": ""}]})),
        ]:
            e = error(admin, sql, (param,))
            assert e is not None and e.sqlstate == "22023", (sql, e)
            assert "invalid key" in e.diag.message_primary


@pytest.fixture(scope="module")
def vectors_db(cluster, db):
    make_db(db, "vectors", {"issuer": "https://issuer.example", "audience": "jwt-rls-tests", "leeway": 0,
                            "max_token_bytes": 65536})
    with psycopg.connect(cluster.dsn(dbname="vectors"), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION jwt_rls")
        admin.execute("GRANT USAGE ON SCHEMA jwt_rls TO app")
        with open(os.path.join(VECTORS, "keys.jwks.json")) as f:
            jwks = f.read()
        keys = len(json.loads(jwks)["keys"])
        assert keys > 0
        assert admin.execute("SELECT jwt_rls.import_jwks(%s)", (jwks,)).fetchone()[0] == keys
    with open(os.path.join(VECTORS, "tokens.json")) as f:
        return json.load(f)


def test_shared_vectors_through_sql(cluster, vectors_db):
    expected = Counter(case["expect"] for case in vectors_db)
    assert set(expected) == {"valid", "invalid"}, expected
    valid = invalid = 0
    wrong = []
    with psycopg.connect(cluster.dsn(user="app", dbname="vectors"), autocommit=True) as app:
        for case in vectors_db:
            token, name = case["token"], case["name"]
            if case["expect"] == "valid":
                # jsonb equality: exact, whatever the key order or escapes.
                same = app.execute("SELECT jwt_rls.authenticate(%s) = %s::jsonb",
                                   (token, json.dumps(case["claims"]))).fetchone()[0]
                if not same:
                    wrong.append(f"{name}: claims differ")
                valid += 1
            else:
                e = error(app, "SELECT jwt_rls.authenticate(%s)", (token,))
                if e is None:
                    wrong.append(f"{name}: accepted")
                elif e.sqlstate not in ("22023", "28000") or leaks(token, e):
                    wrong.append(f"{name}: {e.sqlstate} {e.diag.message_primary}")
                invalid += 1
    print(f"shared vectors through SQL: {valid} valid, {invalid} invalid")
    assert (valid, invalid) == (expected["valid"], expected["invalid"])
    assert not wrong, "\n".join(wrong)

