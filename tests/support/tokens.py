"""Keys and tokens made by an independent library (PyJWT + cryptography)."""

import hashlib
import hmac
import json
import secrets
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from support import b64url

ISSUER = "https://login.example"
AUDIENCE = "invoices-api"
ALGS = ["HS256", "RS256", "ES256", "EdDSA"]  # one key of each family in the fixtures


def public_pem(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class Signer:
    """One key: its kid, algorithm, signing key and what jwt_rls stores."""

    def __init__(self, kid, alg):
        self.kid, self.alg = kid, alg
        if alg.startswith("HS"):
            self.key = secrets.token_bytes(64)
            self.public = None
        elif alg.startswith(("RS", "PS")):
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.public = public_pem(self.key)
        elif alg == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
            self.public = public_pem(self.key)
        elif alg == "ES384":
            self.key = ec.generate_private_key(ec.SECP384R1())
            self.public = public_pem(self.key)
        elif alg == "EdDSA":
            self.key = ed25519.Ed25519PrivateKey.generate()
            self.public = public_pem(self.key)
        else:
            raise ValueError(alg)

    def install(self, cur):
        """Adds this key to jwt_rls (cur must be an admin's cursor)."""
        if self.public is None:
            cur.execute("SELECT jwt_rls.add_hmac_key(%s, %s, %s)", (self.kid, self.alg, self.key))
        else:
            cur.execute("SELECT jwt_rls.add_pem_key(%s, %s, %s)", (self.kid, self.alg, self.public))

    def token(self, tenant, sub=None, ttl=600, kid=True, **claims):
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub or str(uuid.uuid4()),
                   "tenant_id": str(tenant), "iat": now, "nbf": now, "exp": now + ttl}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        headers = {"kid": self.kid} if kid else {}
        return jwt.encode(payload, self.key, algorithm=self.alg, headers=headers)


def handmade_hs256(header: dict, payload: dict, key: bytes) -> str:
    """HS256 with any key bytes, for attacks PyJWT refuses to sign (such as
    an RSA public key used as the HMAC secret)."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)
