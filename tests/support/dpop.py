"""DPoP proofs (RFC 9449) made by an independent library (jwcrypto), for
tests/test_dpop.py.

A `ProofKey` is one client's key pair: its public JWK and RFC 7638
thumbprint (`jkt`, the `cnf.jkt` an access token bound to it carries, as
jwcrypto computes it), and `proof(...)`, which signs a proof for a request
with jwcrypto, with any header member or claim changed or removed so that a
test can make the proofs a careless or hostile client would send.

`unsecured(...)` and `hmac_proof(...)` assemble by hand the two kinds no
library signs for a DPoP proof: alg "none" and an HMAC under an oct JWK.
"""

import hashlib
import hmac
import json
import time
import uuid

import psycopg
from jwcrypto import jwk, jws

from support import b64url

# key generation per algorithm of the proof
_KEYS = {
    "ES256": dict(kty="EC", crv="P-256"),
    "ES384": dict(kty="EC", crv="P-384"),
    "RS256": dict(kty="RSA", size=2048),
    "PS256": dict(kty="RSA", size=2048),
    "EdDSA": dict(kty="OKP", crv="Ed25519"),
}

DROP = object()  # a header member or claim set to DROP is left out


def ath(token: str) -> str:
    """base64url(SHA-256(access token)): the `ath` claim for `token`."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def new_jti() -> str:
    return str(uuid.uuid4())


def _without_dropped(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not DROP}


def assemble(header, payload, signature: bytes = b"") -> str:
    """A compact JWS from a header and payload (dicts, or bytes as they
    are) and raw signature bytes, signed by nobody."""
    def part(v):
        return v if isinstance(v, bytes) else json.dumps(v).encode()
    return f"{b64url(part(header))}.{b64url(part(payload))}.{b64url(signature)}"


class ProofKey:
    """A client's DPoP key of one algorithm, made by jwcrypto."""

    def __init__(self, alg="ES256"):
        self.alg = alg
        self.key = jwk.JWK.generate(**_KEYS[alg])

    @property
    def public_jwk(self) -> dict:
        """Only the public members (kty and the key's own), as jwcrypto exports them."""
        return json.loads(self.key.export_public())

    @property
    def private_jwk(self) -> dict:
        """The whole key, private members (`d`, ...) included."""
        return json.loads(self.key.export_private())

    @property
    def jkt(self) -> str:
        """RFC 7638 SHA-256 thumbprint, by jwcrypto."""
        return self.key.thumbprint()  # SHA-256 by default

    def claims(self, method, url, token=None, **changes) -> dict:
        """A fresh proof's claims: new jti, iat now, ath of `token` when
        given; `changes` override any (DROP removes one)."""
        c = {"jti": new_jti(), "htm": method, "htu": url, "iat": int(time.time())}
        if token is not None:
            c["ath"] = ath(token)
        c.update(changes)
        return _without_dropped(c)

    def header(self, **changes) -> dict:
        h = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_jwk}
        h.update(changes)
        return _without_dropped(h)

    def proof(self, method, url, token=None, header=None, signed_by=None, payload=None, **claims) -> str:
        """A proof for `method url` carrying ath of `token`, signed by this
        key (or by `signed_by`, another ProofKey, while the header's jwk
        stays this key's). `header`: members to change (DROP removes one).
        `payload`: raw payload bytes instead of the claims."""
        head = self.header(**(header or {}))
        body = payload if payload is not None else json.dumps(self.claims(method, url, token, **claims)).encode()
        signer = signed_by or self
        # JWSCore signs the header as given: jws.JWS would refuse to sign
        # one with an unknown crit, which a test sends on purpose.
        signed = jws.JWSCore(head.get("alg", signer.alg), signer.key, json.dumps(head), body).sign()
        return f"{signed['protected']}.{signed['payload'].decode()}.{signed['signature']}"

    def unsecured(self, method, url, token=None, **claims) -> str:
        """alg "none" with this key's jwk in the header and no signature."""
        return assemble(self.header(alg="none"), self.claims(method, url, token, **claims))

    def hmac_proof(self, method, url, token=None, **claims) -> str:
        """HS256 under a fresh oct key that the header carries as its jwk
        (so anyone can verify, and forge, it)."""
        secret = uuid.uuid4().bytes + uuid.uuid4().bytes
        head = self.header(alg="HS256", jwk={"kty": "oct", "k": b64url(secret)})
        unsigned = assemble(head, self.claims(method, url, token, **claims)).rsplit(".", 1)[0]
        mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
        return f"{unsigned}.{b64url(mac)}"



# Seconds a proof's iat may lie ahead of the server's clock (MAX_AHEAD in
# src/dpop/mod.rs): a server accepts proofs made from this long after its
# replay table began recording (server start, crash restart, promotion).
MAX_AHEAD = 10


def recording_since(conn) -> int:
    """Unix seconds since which the server's replay table records
    (stats()' dpop_replay_recording_since)."""
    return conn.execute("SELECT value FROM jwt_rls.stats() WHERE name = 'dpop_replay_recording_since'"
                        ).fetchone()[0]


def wait_until_proofs_accepted(dsn: str, age: int = 0):
    """Sleeps until proofs made now (iat = the current second), or `age`
    seconds ago, are accepted: from MAX_AHEAD seconds after the replay
    table began recording (SECURITY.md: a restart refuses DPoP proofs for
    that long)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        accepted_from = recording_since(admin) + MAX_AHEAD
    while int(time.time()) - age < accepted_from:
        time.sleep(0.2)
