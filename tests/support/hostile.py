"""The hostile-token catalog: tokens an attacker could send, each with the
SQLSTATE and the words of the message jwt_rls must answer with.

Tokens are assembled by hand from raw primitives (hmac, cryptography), since
JWT libraries refuse to produce most of them.
"""

import hashlib
import hmac
import json
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from support import b64url, b64url_decode
from support.tokens import AUDIENCE, ISSUER, Signer

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_L = 2**252 + 27742317777372353535851937790883648493
MALFORMED, REJECTED = "22023", "28000"
# kids no message may echo (the catalog sends each in a token header)
ODD_KIDS = {"quotes": "a\"b'c", "SQL": "x' OR '1'='1'; --", "path": "../../../etc/passwd",
            "percent": "%00%27", "newline": "k\nid", "10 KB": "k" * 10_000}


def part(value) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def sign(signer: Signer, signing_input: bytes, alg=None) -> bytes:
    alg = alg or signer.alg
    key = signer.key
    if alg.startswith("HS"):
        return hmac.new(key, signing_input, getattr(hashlib, "sha" + alg[2:])).digest()
    if alg == "RS256":
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        return key.sign(signing_input, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "EdDSA":
        return key.sign(signing_input)
    raise ValueError(alg)


def jws(header, payload, signer=None, alg=None, signature=None) -> str:
    signing_input = b64url(part(header)) + "." + b64url(part(payload))
    if signature is None:
        signature = sign(signer, signing_input.encode(), alg)
    return signing_input + "." + b64url(signature)


def canonical_b64(segment: str) -> bool:
    try:
        raw = b64url_decode(segment)
    except ValueError:
        return False
    return b64url(raw) == segment


class Catalog:
    def __init__(self, keys: dict):
        self.keys = keys  # alg -> Signer installed in the database
        self.cases = []
        self.now = int(time.time())

    def claims(self, **changes):
        c = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "tenant_id": "tenant-1",
             "iat": self.now, "nbf": self.now, "exp": self.now + 600}
        c.update(changes)
        return {k: v for k, v in c.items() if v is not Ellipsis}

    def header(self, key_alg="HS256", **changes):
        """A header naming the key of `key_alg`; `changes` may override alg."""
        h = {"alg": key_alg, "kid": self.keys[key_alg].kid, "typ": "JWT"}
        h.update(changes)
        return {k: v for k, v in h.items() if v is not Ellipsis}

    def add(self, name, token, sqlstate, words):
        self.cases.append((name, token, sqlstate, words))

    def signed(self, name, sqlstate, words, alg="HS256", header=None, payload=None, **claim_changes):
        header = self.header(alg) if header is None else header
        payload = self.claims(**claim_changes) if payload is None else payload
        self.add(name, jws(header, payload, self.keys[alg], alg), sqlstate, words)

    def build(self):
        hs, rs, es, ed = (self.keys[a] for a in ["HS256", "RS256", "ES256", "EdDSA"])
        good = jws(self.header(), self.claims(), hs)
        head, body, sig = good.split(".")

        # alg none and algorithm names
        for spelling in ["none", "None", "NONE", "nOnE"]:
            self.add(f"alg {spelling}", jws({"alg": spelling}, self.claims(), signature=b""), REJECTED, "unsecured")
        self.add("alg none with a signature", jws({"alg": "none", "kid": hs.kid}, self.claims(), hs, "HS256"),
                 REJECTED, "unsecured")
        for alg in ["hs256", "HS256 ", "ES512", "RS1", "", "HMAC"]:
            self.add(f"alg {alg!r}", jws(self.header(alg=alg, kid=hs.kid), self.claims(), hs, "HS256"),
                     REJECTED, "not supported")
        self.add("alg is a number", jws({"alg": 256, "kid": hs.kid}, self.claims(), hs, "HS256"), MALFORMED, "wrong type")

        # key confusion: the RSA / EC public key as an HMAC secret
        for label, key_owner in [("RSA", rs), ("EC", es), ("Ed25519", ed)]:
            pem = key_owner.public.encode()
            h = b64url(part({"alg": "HS256", "kid": key_owner.kid}))
            p = b64url(part(self.claims()))
            confused = f"{h}.{p}." + b64url(hmac.new(pem, f"{h}.{p}".encode(), hashlib.sha256).digest())
            self.add(f"HS256 keyed with the {label} public key, kid of that key", confused, REJECTED, "does not match")
        pem = rs.public.encode()
        h, p = b64url(part(self.header())), b64url(part(self.claims()))
        self.add("HS256 keyed with the RSA public key, kid of the HMAC key",
                 f"{h}.{p}." + b64url(hmac.new(pem, f"{h}.{p}".encode(), hashlib.sha256).digest()), REJECTED, "signature")
        self.signed("PS256 token naming the RS256 key", REJECTED, "does not match", alg="RS256",
                    header=self.header("RS256", alg="PS256"))
        self.add("PS256 signature under the RS256 key's kid",
                 jws(self.header("RS256", alg="PS256"), self.claims(), rs, "PS256"), REJECTED, "does not match")

        # ECDSA: psychic signatures and other invalid encodings
        eh, ep = b64url(part(self.header("ES256"))), b64url(part(self.claims()))
        es_input = f"{eh}.{ep}".encode()
        n = P256_ORDER
        for label, (r, s) in {"r = s = 0": (0, 0), "r = 0": (0, 1), "s = 0": (1, 0), "r = s = n": (n, n),
                              "r = n, s = 1": (n, 1), "r = s = n - 1": (n - 1, n - 1)}.items():
            raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
            self.add(f"ES256 {label}", f"{eh}.{ep}.{b64url(raw)}", REJECTED, "signature")
        der = es.key.sign(es_input, ec.ECDSA(hashes.SHA256()))
        self.add("ES256 DER-encoded signature", f"{eh}.{ep}.{b64url(der)}", REJECTED, "signature")
        valid_es = sign(es, es_input)
        self.add("ES256 signature of 63 bytes", f"{eh}.{ep}.{b64url(valid_es[:-1])}", REJECTED, "signature")
        longer = b64url(valid_es + bytes(1))
        self.add("ES256 signature of 65 bytes", f"{eh}.{ep}.{longer}", REJECTED, "signature")

        # EdDSA with a non-canonical S (S + L)
        dh, dp = b64url(part(self.header("EdDSA"))), b64url(part(self.claims()))
        ed_sig = sign(ed, f"{dh}.{dp}".encode())
        s_plus_l = (int.from_bytes(ed_sig[32:], "little") + ED25519_L).to_bytes(32, "little")
        self.add("EdDSA S + L", f"{dh}.{dp}.{b64url(ed_sig[:32] + s_plus_l)}", REJECTED, "signature")

        # signatures: wrong key, stripped, truncated, extended
        other = Signer(hs.kid, "HS256")
        self.add("HS256 signed with another secret", jws(self.header(), self.claims(), other), REJECTED, "signature")
        self.add("RS256 signed by another RSA key", jws(self.header("RS256"), self.claims(), Signer(rs.kid, "RS256")),
                 REJECTED, "signature")
        self.add("signature stripped", f"{head}.{body}.", MALFORMED, "base64url")
        for cut in [1, 3, 4]:
            truncated = sig[:-cut]
            state = REJECTED if canonical_b64(truncated) else MALFORMED
            self.add(f"signature truncated by {cut}", f"{head}.{body}.{truncated}", state,
                     "signature" if state == REJECTED else "base64url")
        self.add("signature extended", f"{head}.{body}.{sig}AAAA", REJECTED, "signature")
        self.add("payload tampered", f"{head}.{b64url(part(self.claims(tenant_id='tenant-2')))}.{sig}", REJECTED, "signature")

        # structure
        self.add("2 segments", f"{head}.{body}", MALFORMED, "not a JWS")
        self.add("4 segments", f"{good}.{sig}", MALFORMED, "not a JWS")
        self.add("5 segments", f"{good}.{sig}.{sig}", MALFORMED, "JWE")
        jwe_header = b64url(part({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": rs.kid}))
        self.add("JWE compact", f"{jwe_header}.{b64url(b'k' * 256)}.{b64url(b'i' * 12)}.{b64url(b'c' * 40)}.{b64url(b't' * 16)}",
                 MALFORMED, "JWE")
        self.signed("JWS with an enc header", REJECTED, "unsupported extension", header=self.header(enc="A256GCM"))
        self.add("empty token", "", MALFORMED, "empty")
        self.add("only dots", "..", MALFORMED, "base64url")

        # kid
        self.signed("unknown kid", REJECTED, "no known key", header=self.header(kid="no-such-key"))
        self.signed("kid of the ES256 key on an HS256 token", REJECTED, "does not match", header=self.header(kid=es.kid))
        for label, kid in ODD_KIDS.items():
            self.signed(f"kid with {label}", REJECTED, "no known key", header=self.header(kid=kid))
        self.signed("kid is a number", MALFORMED, "wrong type", header=self.header(kid=7))

        # keys carried by the token itself
        attacker = Signer("attacker", "RS256")
        jwk = {"kty": "RSA", "n": b64url(attacker.key.public_key().public_numbers().n.to_bytes(256, "big")), "e": "AQAB"}
        for label, extra in {"jwk": {"jwk": jwk}, "jku": {"jku": "https://evil.example/jwks.json"},
                             "x5u": {"x5u": "https://evil.example/cert.pem"}, "x5c": {"x5c": ["MIIBfake"]}}.items():
            self.add(f"embedded {label}, attacker key, kid of ours",
                     jws(self.header("RS256", **extra), self.claims(), attacker), REJECTED, "signature")
        self.add("embedded jwk, no kid", jws({"alg": "RS256", "jwk": jwk}, self.claims(), attacker), REJECTED,
                 "more than one key")

        # header extensions and type
        self.signed("crit unknown", REJECTED, "unsupported extension", header=self.header(crit=["urn:x"], **{"urn:x": 1}))
        self.signed("crit empty", REJECTED, "unsupported extension", header=self.header(crit=[]))
        self.signed("crit exp", REJECTED, "unsupported extension", header=self.header(crit=["exp"]))
        self.signed("b64 false", REJECTED, "unsupported extension", header=self.header(b64=False, crit=["b64"]))
        self.signed("b64 false without crit", REJECTED, "unsupported extension", header=self.header(b64=False))
        self.signed("zip DEF", REJECTED, "unsupported extension", header=self.header(zip="DEF"))
        for typ in ["JWE", "dpop+jwt", "secevent+jwt", ""]:
            self.signed(f"typ {typ!r}", REJECTED, "type", header=self.header(typ=typ))
        self.signed("typ is a number", MALFORMED, "wrong type", header=self.header(typ=1))

        # JSON shape
        for label, payload in {"array": [self.claims()], "string": "claims", "number": 42, "null": b"null",
                               "true": True}.items():
            self.signed(f"payload is {label}", MALFORMED, "not a JSON object", payload=payload)
        self.add("header is an array", jws([self.header()], self.claims(), hs), MALFORMED, "not a JSON object")
        dup_header = ('{"alg":"HS256","kid":"%s","alg":"none"}' % hs.kid).encode()
        self.add("duplicate alg in header", jws(dup_header, self.claims(), hs, "HS256"), MALFORMED, "duplicate")
        body_json = json.dumps(self.claims())[:-1]
        self.signed("duplicate tenant_id", MALFORMED, "duplicate", payload=(body_json + ', "tenant_id": "tenant-2"}').encode())
        self.signed("duplicate inside an object", MALFORMED, "duplicate",
                    payload=(body_json + ', "org": {"id": 1, "id": 2}}').encode())
        self.signed("NUL in a claim", MALFORMED, "NUL", payload=(body_json + ', "x": "a\\u0000b"}').encode())
        self.signed("NUL in a claim name", MALFORMED, "NUL", payload=(body_json + ', "x\\u0000": 1}').encode())
        self.signed("lone surrogate", MALFORMED, "not valid JSON", payload=(body_json + ', "x": "\\ud800"}').encode())
        self.signed("non-UTF-8 byte in payload", MALFORMED, "not valid JSON",
                    payload=body_json.encode() + b', "x": "\xff"}')
        self.add("non-UTF-8 byte in header", jws(b'{"alg":"HS256","x":"\xfe"}', self.claims(), hs), MALFORMED,
                 "not valid JSON")
        self.add("header not JSON", jws(b'{"alg":"HS256"', self.claims(), hs), MALFORMED, "not valid JSON")
        self.signed("payload not JSON", MALFORMED, "not valid JSON", payload=b"{claims}")
        self.signed("payload nested 10,000 deep", MALFORMED, "nested too deeply",
                    payload=(body_json + ', "x": ' + "[" * 10_000 + "]" * 10_000 + "}").encode())
        self.add("header nested 40 deep",
                 jws(('{"alg":"HS256","x":' + "[" * 40 + "]" * 40 + "}").encode(), self.claims(), hs),
                 MALFORMED, "nested too deeply")

        # spelling of the compact form
        for label, token in {"padding": good + "=", "padding on payload": f"{head}.{body}==.{sig}",
                             "plus": good.replace("-", "+") if "-" in good else "+" + good,
                             "slash": good.replace("_", "/") if "_" in good else "/" + good,
                             "space inside": f"{head}. {body}.{sig}", "newline at end": good + "\n",
                             "tab": "\t" + good, "Bearer prefix": "Bearer " + good, "trailing space": good + " ",
                             "non-ASCII": good + "é", "exclamation mark": f"{head}.{body}!.{sig}"}.items():
            self.add(label, token, MALFORMED, "characters outside")
        self.add("16 MiB token", good + "A" * (16 * 1024 * 1024), MALFORMED, "too large")
        self.add("just over the size limit", head + "." + "A" * 70_000 + "." + sig, MALFORMED, "too large")

        # time claims
        self.signed("exp missing", REJECTED, "lacks a required claim", exp=...)
        self.signed("exp equal to now", REJECTED, "expired", exp=self.now)
        self.signed("exp an hour ago", REJECTED, "expired", exp=self.now - 3600)
        for label, value in {"a string": str(self.now + 600), "a float": self.now + 600.5, "negative": -1,
                             "true": True, "null": None, "an array": [self.now + 600]}.items():
            self.signed(f"exp {label}", REJECTED, "wrong JSON type", exp=value)
        body_no_exp = json.dumps(self.claims(exp=...))[:-1]
        for label, literal in {"1e19": "1e19", "1e10": "1e10", "above u64": "99999999999999999999999"}.items():
            self.signed(f"exp {label}", REJECTED, "wrong JSON type", payload=(body_no_exp + f', "exp": {literal}}}').encode())
        self.signed("nbf in the future", REJECTED, "not valid yet", nbf=self.now + 3600)
        self.signed("nbf a string", REJECTED, "wrong JSON type", nbf=str(self.now))
        self.signed("iat in the future", REJECTED, "issued in the future", iat=self.now + 3600)
        self.signed("iat a float", REJECTED, "wrong JSON type", iat=self.now + 0.5)
        self.signed("lifetime over the maximum", REJECTED, "lifetime", exp=self.now + 3 * 86400)

        # registered claims of the wrong type or value
        for label, value in {"a number": 42, "an array": [ISSUER], "an object": {"iss": ISSUER}}.items():
            self.signed(f"iss {label}", REJECTED, "wrong JSON type", iss=value)
        self.signed("iss with a trailing slash", REJECTED, "issuer", iss=ISSUER + "/")
        self.signed("iss missing", REJECTED, "lacks a required claim", iss=...)
        for label, value in {"an object": {"aud": AUDIENCE}, "a number": 1, "empty array": [],
                             "array with a number": [AUDIENCE, 42], "array with null": [AUDIENCE, None],
                             "array with an array": [AUDIENCE, [AUDIENCE]]}.items():
            self.signed(f"aud {label}", REJECTED, "wrong JSON type", aud=value)
        self.signed("aud of another service", REJECTED, "audience", aud="another-api")
        self.signed("aud missing", REJECTED, "lacks a required claim", aud=...)
        for label, value in {"a number": 7, "an object": {"id": "u"}, "true": True}.items():
            self.signed(f"sub {label}", REJECTED, "wrong JSON type", sub=value)
        self.signed("jti a number", REJECTED, "wrong JSON type", jti=5)
        return self.cases
