#!/usr/bin/env python3
"""DPoP proofs (RFC 9449) made by independent libraries, for core/tests/dpop_vectors.rs.

What it makes: proofs.json, a list of valid DPoP proofs, one per algorithm
(ES256, ES384, RS256, PS256, EdDSA), each signed by PyJWT with a fresh key
whose public JWK (from jwcrypto) is in the proof's header, with:
  - the request it was made for (method, url) and the access token it binds
    (ath = base64url(SHA-256(token)));
  - the key's RFC 7638 thumbprint as computed by jwcrypto (the cnf.jkt the
    access token would carry), never by the code under test;
  - a fixed iat (IAT below), so the Rust test verifies at a fixed time.
One proof's htu differs from its request URL only by RFC 3986 normalisation
and by a query and a fragment, which RFC 9449 section 4.3 says to ignore.

And refused.json: proofs as a careless client might make them, each valid
but for one thing, with the DpopError variant it must be refused with
("expect"): an RSA key of 1024 bits, a private JWK in the header (jwcrypto's
export_private), typ "JWT", and an iat that is not an integer.

Keys are random: rerunning changes every proof, key and thumbprint (the
Rust test reads whatever this wrote). The private keys are not kept.

Rerun (from the repository root, with the project's venv, which has PyJWT,
cryptography and jwcrypto):
    .venv/bin/python core/tests/vectors/dpop/generate.py
"""

import base64
import hashlib
import json
import os
import warnings

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwcrypto import jwk

IAT = 1_800_000_000
ACCESS_TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImNuZiI6e319.c2ln"
HERE = os.path.dirname(os.path.abspath(__file__))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(private_key) -> dict:
    """The public JWK of a key, by jwcrypto: only the members of the key."""
    return json.loads(jwk.JWK.from_pyca(private_key.public_key()).export_public())


def thumbprint(public: dict) -> str:
    """RFC 7638 SHA-256 thumbprint, by jwcrypto."""
    return jwk.JWK(**public).thumbprint()


CASES = [
    # name, alg, key, method, request URL, htu in the proof
    ("es256", "ES256", ec.generate_private_key(ec.SECP256R1()), "POST",
     "https://server.example.com/token", "https://server.example.com/token"),
    ("es384", "ES384", ec.generate_private_key(ec.SECP384R1()), "GET",
     "https://api.example.com/v1/accounts", "https://api.example.com/v1/accounts"),
    ("rs256", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048), "GET",
     "https://resource.example.org/protectedresource",
     "https://resource.example.org/protectedresource"),
    ("ps256", "PS256", rsa.generate_private_key(public_exponent=65537, key_size=2048), "PUT",
     "http://db.example.net:8080/rows/42", "http://db.example.net:8080/rows/42"),
    # The htu spells the same resource differently: upper-case scheme and
    # host, the default port, a dot segment, a percent-encoded unreserved
    # character and lower-case hex, plus a query and a fragment.
    ("eddsa_normalised", "EdDSA", ed25519.Ed25519PrivateKey.generate(), "DELETE",
     "https://rp.example.com/a/~alice/%2Fx?ignored=1",
     "HTTPS://RP.Example.COM:443/a/./b/../%7ealice/%2fx?q=1#frag"),
]


def proof_case(name, alg, key, method, url, htu, header=None, iat=IAT) -> dict:
    """One proof, and what it was made for."""
    public = public_jwk(key)
    jti = b64url(hashlib.sha256(("jti-" + name).encode()).digest()[:16])
    claims = {
        "jti": jti,
        "htm": method,
        "htu": htu,
        "iat": iat,
        "ath": b64url(hashlib.sha256(ACCESS_TOKEN.encode("ascii")).digest()),
    }
    headers = {"typ": "dpop+jwt", "jwk": public}
    headers.update(header or {})
    proof = jwt.encode(claims, key, algorithm=alg, headers=headers)
    return {
        "name": name,
        "alg": alg,
        "proof": proof,
        "method": method,
        "url": url,
        "access_token": ACCESS_TOKEN,
        "jkt": thumbprint(public),
        "jti": jti,
        "iat": IAT,
    }


def refused() -> list:
    """Proofs that must be refused, each with the variant expected."""
    url = "https://server.example.com/token"
    # Too small on purpose: PyJWT's warning about it is expected.
    warnings.filterwarnings("ignore", message="The RSA key is 1024 bits")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    es256 = ec.generate_private_key(ec.SECP256R1())
    private = json.loads(jwk.JWK.from_pyca(es256).export_private())
    cases = [
        (proof_case("rsa_1024_bits", "RS256", small, "POST", url, url), "BadJwk(RsaTooSmall"),
        (proof_case("private_jwk", "ES256", es256, "POST", url, url, header={"jwk": private}),
         'PrivateJwk("d")'),
        (proof_case("typ_jwt", "ES256", es256, "POST", url, url, header={"typ": "JWT"}),
         'BadTyp(Some("JWT"))'),
        (proof_case("iat_float", "ES256", es256, "POST", url, url, iat=IAT + 0.5),
         'ClaimType { claim: "iat"'),
    ]
    return [dict(case, expect=expect) for case, expect in cases]


def write(name: str, data: list) -> None:
    with open(os.path.join(HERE, name), "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def main() -> None:
    write("proofs.json", [proof_case(*case) for case in CASES])
    write("refused.json", refused())


if __name__ == "__main__":
    main()
