"""Writes tests/regress/sql/errors.sql: every error jwt_rls raises to SQL,
from fixed inputs (the shared vectors and hand-made tokens with fixed
times), so that pg_regress can pin their exact SQLSTATE, message, DETAIL and
HINT in tests/regress/expected/errors.out.

Run it after changing the cases; then `bash scripts/regress.sh --update`
and review the diff of expected/errors.out like code.
"""

import base64
import hashlib
import hmac
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "..", "core", "tests", "vectors")
EXP = 4102444800  # 2100-01-01: valid for the life of these tests
IAT = 1700000000
ISS, AUD = "https://issuer.example", "jwt-rls-tests"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(header, payload, secret):
    h = b64(header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode())
    p = b64(payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64(sig)}"


# A fixed 32-byte secret for the JWE cases (`openssl rand -hex 32`).
JWE_SECRET = bytes.fromhex("9d1f0c6a5e2b7c48a1f3e0d9b8c7a6f5e4d3c2b1a09f8e7d6c5b4a3928170615")


JWE_FILE = os.path.join(HERE, "jwe_tokens.json")


def jwe_cases(inner):
    """Encrypted tokens made by jwcrypto (an independent library) around
    `inner`, each refused for one reason, or accepted ("ok"). Encryption
    is randomised, so they are made once and kept in jwe_tokens.json (delete
    it to make new ones): the golden output echoes them."""
    if os.path.exists(JWE_FILE):
        return [tuple(case) for case in json.load(open(JWE_FILE))]
    from jwcrypto import jwe, jwk
    key = jwk.JWK(kty="oct", k=b64(JWE_SECRET))
    rsa = jwk.JWK.generate(kty="RSA", size=2048)
    algs = jwe.default_allowed_algs + ["RSA1_5"]

    def make(payload, header, k=key):
        t = jwe.JWE(payload.encode(), protected=json.dumps(header), algs=algs)
        t.add_recipient(k)
        return t.serialize(compact=True)

    dir_gcm = {"alg": "dir", "enc": "A256GCM", "cty": "JWT", "kid": "jwe-dir"}
    good = make(inner, dir_gcm)
    h, ek, iv, ct, tag = good.split(".")
    flipped = tag[:-2] + ("A" if tag[-2] != "A" else "B") + tag[-1]
    cases = [
        ("jwe/ok", good),
        ("jwe/altered_tag", ".".join([h, ek, iv, ct, flipped])),
        ("jwe/short_iv", ".".join([h, ek, iv[:-4], ct, tag])),
        ("jwe/unknown_kid", make(inner, {**dir_gcm, "kid": "nobody"})),
        ("jwe/other_enc", make(inner, {**dir_gcm, "enc": "A128CBC-HS256"})),
        ("jwe/unsupported_enc", make(inner, {**dir_gcm, "enc": "A128GCM"}, jwk.JWK(kty="oct", k=b64(JWE_SECRET[:16])))),
        ("jwe/rsa1_5", make(inner, {"alg": "RSA1_5", "enc": "A256GCM", "cty": "JWT", "kid": "jwe-dir"}, rsa)),
        ("jwe/zip", make(inner, {**dir_gcm, "zip": "DEF"})),
        ("jwe/bare_claims", make(json.dumps({"sub": "user-1", "exp": EXP}), {**dir_gcm, "cty": "json"})),
        ("jwe/no_cty", make(inner, {k: v for k, v in dir_gcm.items() if k != "cty"})),
        ("jwe/jwe_in_jwe", make(good, dir_gcm)),
    ]
    with open(JWE_FILE, "w") as f:
        json.dump(cases, f, indent=1)
    return cases


def quote(s):
    return "'" + s.replace("'", "''") + "'"


def main():
    vectors = json.load(open(os.path.join(VECTORS, "tokens.json")))
    jwks = open(os.path.join(VECTORS, "keys.jwks.json")).read()
    secret = base64.urlsafe_b64decode(open(os.path.join(VECTORS, "keys.pem", "hs256-5e7da2e2.b64url")).read().strip()
                                      + "==")
    kid = "hs256-5e7da2e2"
    claims = {"sub": "user-1", "iss": ISS, "aud": AUD, "iat": IAT, "exp": EXP}

    def made(name, payload=None, header=None, **edit):
        p = dict(claims) if payload is None else payload
        p.update(edit)
        p = {k: v for k, v in p.items() if v is not None}
        return name, hs256(header or {"alg": "HS256", "typ": "JWT", "kid": kid}, p, secret)

    cases = []
    seen = set()
    for v in vectors:  # one vector per distinct reason, in file order
        if v["expect"] == "invalid" and v["reason"] not in seen and len(v["token"]) < 20000:
            seen.add(v["reason"])
            cases.append((v["name"], v["token"]))
    good = hs256({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, secret)
    cases += [
        made("made/bearer_prefix"), made("made/not_yet_valid", nbf=EXP - 1),
        made("made/issued_in_future", iat=EXP - 1),
        made("made/iss_number", iss=7), made("made/aud_number_array", aud=[AUD, 7]),
        made("made/sub_number", sub=7), made("made/exp_float", exp=4102444800.5), made("made/exp_string", exp="soon"),
        made("made/exp_missing", exp=None), made("made/typ_other", header={"alg": "HS256", "typ": "JOSE+JSON", "kid": kid}),
        made("made/header_kid_number", header={"alg": "HS256", "kid": 7}),
        made("made/header_b64_false", header={"alg": "HS256", "kid": kid, "b64": False, "crit": ["b64"]}),
        made("made/header_zip", header={"alg": "HS256", "kid": kid, "zip": "DEF"}),
        made("made/alg_es512", header={"alg": "ES512", "kid": kid}),
        ("made/duplicate_member", hs256(b'{"alg":"HS256","kid":"%s","kid":"%s"}' % (kid.encode(), kid.encode()),
                                        claims, secret)),
        ("made/nul_in_claim", hs256({"alg": "HS256", "kid": kid}, json.dumps({**claims, "sub": "a\u0000b"}).encode(),
                                    secret)),
        made("made/too_deep_claim", deep=json.loads("[" * 200 + "]" * 200)),
        made("made/too_large", blob="x" * 20000),
        ("made/bad_utf8_payload", hs256({"alg": "HS256", "kid": kid}, b'{"sub":"\xff"}', secret)),
    ]
    cases[cases.index(made("made/bearer_prefix"))] = ("made/bearer_prefix", "Bearer " + good)

    out = ["-- Generated by tests/regress/generate.py; do not edit by hand.",
           "-- Every error jwt_rls raises to SQL, with its exact SQLSTATE, message,",
           "-- DETAIL and HINT. \"now is N\" in DETAIL lines is masked.",
           "SET client_min_messages = warning;",
           "CREATE EXTENSION jwt_rls;",
           f"SET jwt_rls.issuer = {quote(ISS)};",
           f"SET jwt_rls.audience = {quote(AUD)};",
           "SET jwt_rls.max_lifetime = 0;",
           f"SELECT jwt_rls.import_jwks({quote(jwks)}::jsonb);",
           """CREATE FUNCTION pg_temp.err(q text, OUT code text, OUT message text, OUT detail text, OUT hint text)
    LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE q;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                                detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
        detail := regexp_replace(detail, 'now is -?[0-9]+', 'now is (now)');
        detail := regexp_replace(detail, 'Failing row contains .*', 'Failing row contains (...).');
        RETURN;
    END;
    code := 'ok';
END $$;""",
           "CREATE TEMP TABLE cases (ord int, name text, token text);",
           "INSERT INTO cases VALUES"]
    out.append(",\n".join(f"({i}, {quote(n)}, {quote(t)})" for i, (n, t) in enumerate(cases)) + ";")
    out += [
        "\\pset format unaligned",
        "-- Through authenticate():",
        "SELECT c.name, e.* FROM cases c, pg_temp.err(format('SELECT jwt_rls.authenticate(%L)', c.token)) e ORDER BY c.ord;",
        "-- Through SET LOCAL jwt_rls.token the same texts (rows that differ):",
        "SELECT c.name FROM cases c, pg_temp.err(format('SELECT jwt_rls.authenticate(%L)', c.token)) a,",
        "       pg_temp.err(format('SET LOCAL jwt_rls.token = %L', c.token)) s",
        " WHERE a IS DISTINCT FROM s AND c.name <> 'made/bearer_prefix' ORDER BY c.ord;",
        "-- (The empty token differs on purpose: SET jwt_rls.token = '' unbinds.)",
        "SELECT * FROM pg_temp.err('SELECT jwt_rls.authenticate('''')');",
        "-- Key administration:",
    ]
    rs_pem = open(os.path.join(VECTORS, "keys.pem", "rs256-0fdfe147.pem")).read()
    admin = [
        "SELECT jwt_rls.add_hmac_key('k', 'HS256', 'short'::bytea)",
        "SELECT jwt_rls.add_hmac_key('k', 'RS256', repeat('s', 64)::bytea)",
        "SELECT jwt_rls.add_hmac_key('k', 'none', repeat('s', 64)::bytea)",
        f"SELECT jwt_rls.add_hmac_key('k', 'HS256', convert_to({quote(rs_pem)}, 'UTF8'))",
        "SELECT jwt_rls.add_hmac_key('', 'HS256', repeat('s', 32)::bytea)",
        f"SELECT jwt_rls.add_pem_key('p', 'ES256', {quote(rs_pem)})",
        f"SELECT jwt_rls.add_pem_key('p', 'HS256', {quote(rs_pem)})",
        "SELECT jwt_rls.add_pem_key('p', 'RS256', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n')",
        "SELECT jwt_rls.add_pem_key('p', 'RS256', 'not a pem')",
        "SELECT jwt_rls.import_jwks('[]')",
        "SELECT jwt_rls.import_jwks('{\"keys\": 1}')",
        "SELECT jwt_rls.import_jwks('{\"keys\": [{\"kty\": \"oct\", \"kid\": \"hs256-5e7da2e2\", \"alg\": \"HS256\", \"k\": \"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg\"}]}')",
        "SELECT jwt_rls.import_jwks('{\"keys\": [{\"kty\": \"OKP\", \"crv\": \"X25519\", \"kid\": \"x\"}]}')",
        "SELECT jwt_rls.import_jwks('{\"keys\": [{\"kty\": \"RSA\", \"kid\": \"x\"}]}')",
        f"SELECT jwt_rls.add_pem_key('rs256-0fdfe147', 'RS256', {quote(rs_pem)})",
        "INSERT INTO jwt_rls.keys (kid, alg, format, material, not_before, not_after) VALUES ('w', 'HS256', 'secret', 'x', now(), now() - interval '1 day')",
        "INSERT INTO jwt_rls.keys (kid, alg, format, material) VALUES ('w', 'HS999', 'secret', 'x')",
        "SELECT jwt_rls.disable_key(repeat('x', 300))",
        "SELECT jwt_rls.import_signing_key('s', 'RS256', " + quote(rs_pem) + ")",
        "SELECT jwt_rls.generate_signing_key('s', 'none')",
        "SELECT jwt_rls.sign('{}')",
        "SELECT jwt_rls.sign('[1]')",
        "SELECT jwt_rls.revoke_token('x.y.z')",
        f"SELECT jwt_rls.revoke_token({quote(good)})",
        "SELECT jwt_rls.revoke_jti(NULL, now())",
        "CALL jwt_rls.refresh('inside a function: atomic')",
        "SELECT jwt_rls.rotate_refresh_token('not a refresh token')",
        "SELECT jwt_rls.rotate_refresh_token(repeat('A', 43))",
        "SELECT jwt_rls.start_session('u', '[1]')",
    ]
    for q in admin:
        out.append(f"SELECT * FROM pg_temp.err({quote(q)});")
    out += [
        "-- Key states (after the table is changed):",
        "SELECT jwt_rls.disable_key('hs256-5e7da2e2');",
        f"SELECT * FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(good) + ')')});",
        "SELECT jwt_rls.enable_key('hs256-5e7da2e2');",
        "UPDATE jwt_rls.keys SET not_after = '2000-01-01' WHERE kid = 'hs256-5e7da2e2';",
        f"SELECT * FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(good) + ')')});",
        "UPDATE jwt_rls.keys SET not_after = NULL WHERE kid = 'hs256-5e7da2e2';",
        "SET jwt_rls.max_lifetime = 60;",
        f"SELECT * FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(good) + ')')});",
        "RESET jwt_rls.max_lifetime;",
        "SET jwt_rls.required_claims = 'tenant_id';",
        f"SELECT * FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(good) + ')')});",
        "RESET jwt_rls.required_claims;",
        "SELECT jwt_rls.revoke_subject('user-1');",
        f"SELECT * FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(good) + ')')});",
        "TRUNCATE jwt_rls.revoked_subjects;",
        "SET jwt_rls.role_claim = 'role';",
        f"SELECT * FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(good) + ')')});",
        "RESET jwt_rls.role_claim;",
        "SET jwt_rls.audience = '';",
        f"SELECT * FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(good) + ')')});",
        f"SET jwt_rls.audience = {quote(AUD)};",
        "-- Encrypted tokens (JWE), with a dir key for A256GCM:",
        f"SELECT jwt_rls.add_decryption_secret('jwe-dir', 'dir', decode('{JWE_SECRET.hex()}', 'hex'), 'A256GCM');",
    ] + [f"SELECT {quote(n)} AS jwe, e.* FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(t) + ')')}) e;"
         for n, t in jwe_cases(good)] + [
        "SELECT jwt_rls.disable_decryption_key('jwe-dir');",
        f"SELECT * FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(jwe_cases(good)[0][1]) + ')')});",
        "DELETE FROM jwt_rls.decryption_keys;",
        "-- Decryption key administration:",
        "SELECT * FROM pg_temp.err('SELECT jwt_rls.add_decryption_secret(''k'', ''A256KW'', ''\\x0001''::bytea)');",
        "SELECT * FROM pg_temp.err('SELECT jwt_rls.add_decryption_secret(''k'', ''dir'', decode(repeat(''ab'', 32), ''hex''))');",
        "SELECT * FROM pg_temp.err('SELECT jwt_rls.add_decryption_secret(''k'', ''RSA1_5'', decode(repeat(''ab'', 32), ''hex''))');",
        "SELECT * FROM pg_temp.err('SELECT jwt_rls.add_decryption_key(''k'', ''RSA-OAEP-256'', ''{\"kty\": \"RSA\", \"n\": \"AQAB\", \"e\": \"AQAB\"}'')');",
        "SELECT * FROM pg_temp.err('SELECT jwt_rls.encrypt(''not.a.token.at.all'', ''{}'', ''dir'', ''A256GCM'')');",
        "-- No key, several keys without kid:",
        f"SELECT * FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(made('x', header={'alg': 'HS256'})[1]) + ')')});",
        "DELETE FROM jwt_rls.keys;",
        f"SELECT * FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(good) + ')')});",
        f"SELECT * FROM pg_temp.err({quote('SELECT jwt_rls.authenticate(' + quote(made('x', header={'alg': 'HS256'})[1]) + ')')});",
        "-- Privileges, as a role with USAGE only:",
        "DROP ROLE IF EXISTS regress_app;",
        "CREATE ROLE regress_app;",
        "GRANT USAGE ON SCHEMA jwt_rls TO regress_app;",
        "SET ROLE regress_app;",
    ]
    for q in ["SELECT jwt_rls.import_jwks('{\"keys\": []}')", "SELECT count(*) FROM jwt_rls.keys",
              "SELECT count(*) FROM jwt_rls.signing_keys", "SELECT count(*) FROM jwt_rls.sessions",
              "SELECT jwt_rls.sign('{}')", "SELECT jwt_rls.revoke_subject('x')", "SET jwt_rls.issuer = 'evil'",
              "SET jwt_rls.made_up = 'x'", "SELECT jwt_rls.rotate_refresh_token('x')"]:
        out.append(f"SELECT * FROM pg_temp.err({quote(q)});")
    out += ["RESET ROLE;", "REVOKE USAGE ON SCHEMA jwt_rls FROM regress_app;", "DROP ROLE regress_app;", ""]
    with open(os.path.join(HERE, "sql", "errors.sql"), "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
