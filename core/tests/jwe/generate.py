#!/usr/bin/env python3
"""JWE test vectors for jwt_rls_core, made by independent libraries.

Every nested token here is encrypted by jwcrypto or joserfc (never by the
code under test), around an inner JWS taken from the signed vector set
(../vectors/tokens.json, signed by PyJWT). The keys are generated once and
then kept: rerunning this script reuses keys.json and rewrites vectors.json
(fresh IVs and CEKs, same keys, same cases).

    /work/main/.venv/bin/pip install jwcrypto joserfc
    /work/main/.venv/bin/python core/tests/jwe/generate.py

and the other way round (tokens made by the core, decrypted here):

    cargo test -p jwt_rls_core --test jwe -- --ignored write_tokens_for_the_libraries
    /work/main/.venv/bin/python core/tests/jwe/generate.py --check target/jwe-encrypted-by-core.json

Files:
  keys.json     decryption keys: kid, alg, enc (dir only), private JWK,
                public JWK (what a sender encrypts to), PKCS#8 PEM for RSA/EC
  vectors.json  [{"name", "kid", "alg", "enc", "lib", "token", "inner"}]:
                valid nested tokens; "inner" is the name of the inner
                vector in ../vectors/tokens.json
  hostile.json  [{"name", "token", "expect"}]: tokens made by the libraries
                (or by hand where they refuse) that must be refused; expect
                names the Error variant
"""

import base64
import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk
from joserfc import jwe as jf_jwe
from joserfc.jwe import JWERegistry
from joserfc.jwk import ECKey, OctKey, RSAKey

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENS = os.path.join(HERE, "..", "vectors", "tokens.json")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_of(private_key) -> dict:
    return json.loads(jc_jwk.JWK.from_pyca(private_key).export(private_key=True))


def make_keys() -> list:
    specs = [
        ("rsa-oaep-1", "RSA-OAEP-256", None, lambda: rsa.generate_private_key(65537, 2048)),
        ("rsa-oaep-other", "RSA-OAEP-256", None, lambda: rsa.generate_private_key(65537, 2048)),
        ("ecdh-p256", "ECDH-ES", None, lambda: ec.generate_private_key(ec.SECP256R1())),
        ("ecdh-p384", "ECDH-ES", None, lambda: ec.generate_private_key(ec.SECP384R1())),
        ("ecdh-p521", "ECDH-ES", None, lambda: ec.generate_private_key(ec.SECP521R1())),
        ("ecdh-other-p256", "ECDH-ES", None, lambda: ec.generate_private_key(ec.SECP256R1())),
        ("ecdhkw-p256", "ECDH-ES+A256KW", None, lambda: ec.generate_private_key(ec.SECP256R1())),
        ("ecdhkw-p521", "ECDH-ES+A256KW", None, lambda: ec.generate_private_key(ec.SECP521R1())),
        ("a256kw-1", "A256KW", None, lambda: os.urandom(32)),
        ("a256kw-other", "A256KW", None, lambda: os.urandom(32)),
        ("dir-gcm", "dir", "A256GCM", lambda: os.urandom(32)),
        ("dir-cbc", "dir", "A128CBC-HS256", lambda: os.urandom(32)),
    ]
    keys = []
    for kid, alg, enc, make in specs:
        material = make()
        entry = {"kid": kid, "alg": alg, "enc": enc}
        if isinstance(material, bytes):
            private = {"kty": "oct", "k": b64(material)}
            public = dict(private)
        else:
            private = jwk_of(material)
            public = {k: v for k, v in private.items() if k in ("kty", "crv", "x", "y", "n", "e")}
            entry["pem"] = material.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
        private.pop("kid", None)
        public["kid"] = kid
        entry["private_jwk"] = private
        entry["public_jwk"] = public
        keys.append(entry)
    return keys


def load_keys() -> list:
    path = os.path.join(HERE, "keys.json")
    if not os.path.exists(path):
        with open(path, "w") as f:
            json.dump({"keys": make_keys()}, f, indent=1)
            f.write("\n")
    with open(path) as f:
        return json.load(f)["keys"]


def inner_tokens() -> list:
    with open(TOKENS) as f:
        cases = json.load(f)
    return [(c["name"], c["token"]) for c in cases if c["name"].endswith("/valid/pyjwt")]


def jwcrypto_encrypt(plaintext: str, public: dict, header: dict, algs=None) -> str:
    t = jc_jwe.JWE(plaintext.encode(), protected=json.dumps(header), algs=algs)
    t.add_recipient(jc_jwk.JWK(**public))
    return t.serialize(compact=True)


def joserfc_encrypt(plaintext: str, public: dict, header: dict) -> str:
    kty = public["kty"]
    key = {"RSA": RSAKey, "EC": ECKey, "oct": OctKey}[kty].import_key(public)
    algs = [header["alg"], header["enc"]]
    return jf_jwe.encrypt_compact(header, plaintext, key, algorithms=algs)


def valid_vectors(keys: list) -> list:
    inners = inner_tokens()
    vectors = []
    i = 0
    for key in keys:
        if key["kid"].endswith("other") or "-other-" in key["kid"]:
            continue
        encs = [key["enc"]] if key["enc"] else ["A256GCM", "A128CBC-HS256"]
        for enc in encs:
            for lib, fn in (("jwcrypto", jwcrypto_encrypt), ("joserfc", joserfc_encrypt)):
                inner_name, inner = inners[i % len(inners)]
                i += 1
                header = {"alg": key["alg"], "enc": enc, "cty": "JWT", "kid": key["kid"]}
                vectors.append({
                    "name": f"{key['kid']}/{enc}/{lib}",
                    "kid": key["kid"], "alg": key["alg"], "enc": enc, "lib": lib,
                    "token": fn(inner, key["public_jwk"], header), "inner": inner_name,
                })
    # Variants of the header a verifier must still accept.
    rsa_key = next(k for k in keys if k["kid"] == "rsa-oaep-1")
    ec_key = next(k for k in keys if k["kid"] == "ecdh-p256")
    inner_name, inner = inners[0]
    extra = [
        ("rsa-oaep-1/A256GCM/jwcrypto/cty-lowercase-typ", rsa_key,
         {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "jwt", "typ": "JWT", "kid": "rsa-oaep-1"}),
        ("rsa-oaep-1/A256GCM/jwcrypto/no-kid", rsa_key,
         {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT"}),
        ("ecdh-p256/A256GCM/jwcrypto/apu-apv", ec_key,
         {"alg": "ECDH-ES", "enc": "A256GCM", "cty": "JWT", "kid": "ecdh-p256",
          "apu": b64(b"Alice"), "apv": b64(b"Bob")}),
    ]
    for name, key, header in extra:
        vectors.append({
            "name": name, "kid": key["kid"], "alg": header["alg"], "enc": header["enc"],
            "lib": "jwcrypto", "token": jwcrypto_encrypt(inner, key["public_jwk"], header),
            "inner": inner_name,
        })
    return vectors


def hostile_vectors(keys: list) -> list:
    by_kid = {k["kid"]: k for k in keys}
    rsa_pub = by_kid["rsa-oaep-1"]["public_jwk"]
    dir_pub = by_kid["dir-gcm"]["public_jwk"]
    kw_pub = by_kid["a256kw-1"]["public_jwk"]
    _, inner = inner_tokens()[0]
    claims = json.dumps({"sub": "u1", "iss": "https://issuer.example", "aud": "jwt-rls-tests",
                         "exp": 4102444800})
    out = []

    def add(name, token, expect):
        out.append({"name": name, "token": token, "expect": expect})

    all_algs = ["RSA1_5", "RSA-OAEP", "RSA-OAEP-256", "A256KW", "dir", "A128GCM",
                "A256GCM", "A128CBC-HS256"]
    add("RSA1_5 (jwcrypto)", jwcrypto_encrypt(
        inner, rsa_pub, {"alg": "RSA1_5", "enc": "A256GCM", "cty": "JWT", "kid": "rsa-oaep-1"},
        algs=all_algs), "UnsupportedKeyAlg")
    add("RSA-OAEP with SHA-1 (jwcrypto)", jwcrypto_encrypt(
        inner, rsa_pub, {"alg": "RSA-OAEP", "enc": "A256GCM", "cty": "JWT", "kid": "rsa-oaep-1"},
        algs=all_algs), "UnsupportedKeyAlg")
    add("zip DEF (jwcrypto)", jwcrypto_encrypt(
        inner, dir_pub, {"alg": "dir", "enc": "A256GCM", "zip": "DEF", "cty": "JWT",
                         "kid": "dir-gcm"}), "UnsupportedHeader")
    add("enc A128GCM (jwcrypto)", jwcrypto_encrypt(
        inner, kw_pub, {"alg": "A256KW", "enc": "A128GCM", "cty": "JWT", "kid": "a256kw-1"},
        algs=all_algs), "UnsupportedEnc")
    add("bare JWE: claims, no cty (jwcrypto)", jwcrypto_encrypt(
        claims, dir_pub, {"alg": "dir", "enc": "A256GCM", "kid": "dir-gcm"}), "NotNested")
    add("bare JWE: claims, cty json (joserfc)", joserfc_encrypt(
        claims, dir_pub, {"alg": "dir", "enc": "A256GCM", "cty": "json", "kid": "dir-gcm"}),
        "NotNested")
    add("claims under a lying cty JWT (jwcrypto)", jwcrypto_encrypt(
        claims, dir_pub, {"alg": "dir", "enc": "A256GCM", "cty": "JWT", "kid": "dir-gcm"}),
        "BadCharacter")
    nested = jwcrypto_encrypt(inner, dir_pub, {"alg": "dir", "enc": "A256GCM", "cty": "JWT",
                                               "kid": "dir-gcm"})
    add("JWE inside JWE (jwcrypto)", jwcrypto_encrypt(
        nested, dir_pub, {"alg": "dir", "enc": "A256GCM", "cty": "JWT", "kid": "dir-gcm"}),
        "NestedJwe")
    # PBES2 with a huge iteration count: no library will spend 2^31
    # iterations making it, and it must be refused before any are spent, so
    # the header is written by hand around random segments.
    pbes2 = {"alg": "PBES2-HS512+A256KW", "enc": "A256GCM", "cty": "JWT",
             "p2s": b64(os.urandom(16)), "p2c": 2147483647}
    add("PBES2 with p2c 2^31-1 (by hand)", ".".join([
        b64(json.dumps(pbes2).encode()), b64(os.urandom(40)), b64(os.urandom(12)),
        b64(os.urandom(64)), b64(os.urandom(16))]), "UnsupportedKeyAlg")
    return out


def check(path: str) -> int:
    """Decrypts tokens made by the core's `encrypt` with both libraries."""
    keys = {k["kid"]: k for k in load_keys()}
    with open(path) as f:
        cases = json.load(f)
    for case in cases:
        key = keys[case["kid"]]
        t = jc_jwe.JWE()
        t.deserialize(case["token"], key=jc_jwk.JWK(**key["private_jwk"]))
        assert t.payload.decode() == case["inner"], case["kid"]
        priv = key["private_jwk"]
        jkey = {"RSA": RSAKey, "EC": ECKey, "oct": OctKey}[priv["kty"]].import_key(priv)
        hdr = json.loads(base64.urlsafe_b64decode(case["token"].split(".")[0] + "=="))
        obj = jf_jwe.decrypt_compact(case["token"], jkey, algorithms=[hdr["alg"], hdr["enc"]])
        assert obj.plaintext.decode() == case["inner"], case["kid"]
        print("ok", case["kid"], case["enc"], hdr)
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--check"]:
        return check(sys.argv[2])
    keys = load_keys()
    with open(os.path.join(HERE, "vectors.json"), "w") as f:
        json.dump(valid_vectors(keys), f, indent=1)
        f.write("\n")
    with open(os.path.join(HERE, "hostile.json"), "w") as f:
        json.dump(hostile_vectors(keys), f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
