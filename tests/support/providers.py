"""Provider-shaped keys and tokens, for the scenarios of the provider guides
(docs/guides/*.md, tests/test_providers.py).

For each identity provider, a class whose instance holds fresh local keys
and gives:

  jwks()              the JWKS document exactly as that provider publishes
                      it (members, key types, extra keys it lists), built
                      from the local keys
  token(tenant, ...)  an access token whose header and claims have the shape
                      of that provider's, signed by PyJWT
  settings            the ALTER DATABASE settings its guide tells you to use
  issuer, audience    the values those settings name

The claim names, the header members and the JWKS members follow each
provider's public documentation (URLs in the class docstrings and in the
guides); the values are realistic but made up. Nothing here talks to a
network: only the shapes are the providers'.

Every `token()` takes `**claims` to override or add claims (None removes
one), and `header=` to override header members, so a test can make the
same provider's token for another audience, issuer, client or tenant.
"""

import base64
import datetime
import hashlib
import json
import secrets
import string
import time
import uuid

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from support import b64url


# --- building blocks ---------------------------------------------------------


def _int_b64url(n: int, length: int | None = None) -> str:
    length = length or (n.bit_length() + 7) // 8
    return b64url(n.to_bytes(length, "big"))


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa_public_members(key) -> dict:
    """`n` and `e` of an RSA key, as RFC 7518 section 6.3.1 writes them."""
    numbers = key.public_key().public_numbers()
    return {"n": _int_b64url(numbers.n), "e": _int_b64url(numbers.e)}


def ec_public_members(key) -> dict:
    """`crv`, `x`, `y` of a P-256 key (coordinates 32 bytes each)."""
    numbers = key.public_key().public_numbers()
    return {"crv": "P-256", "x": _int_b64url(numbers.x, 32), "y": _int_b64url(numbers.y, 32)}


def self_signed_cert(key, common_name: str) -> bytes:
    """A real self-signed X.509 certificate (DER) for `key`, like the ones
    Entra ID, Auth0 and Keycloak put in `x5c`."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=5 * 365))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def x5c(der: bytes) -> list[str]:
    """`x5c`: standard base64 (not base64url) of the DER certificate."""
    return [base64.b64encode(der).decode()]


def x5t(der: bytes) -> str:
    """`x5t`: base64url of the certificate's SHA-1 thumbprint."""
    return b64url(hashlib.sha1(der).digest())


def x5t_s256(der: bytes) -> str:
    """`x5t#S256`: base64url of the certificate's SHA-256 thumbprint."""
    return b64url(hashlib.sha256(der).digest())


def _alnum(n: int, alphabet=string.ascii_lowercase + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _sign(payload: dict, key, alg: str, header: dict) -> str:
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=alg, headers=header)


def _merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    out.update(overrides)
    return out


class Provider:
    """What every provider class has; see the module docstring."""

    name = "provider"
    issuer = ""
    audience = ""
    alg = "RS256"

    @property
    def settings(self) -> dict:
        """`jwt_rls.<key>` = value, as the guide sets them per database."""
        return {"issuer": self.issuer, "audience": self.audience}

    def jwks(self) -> dict:
        raise NotImplementedError

    def token(self, tenant, ttl=600, header=None, **claims) -> str:
        raise NotImplementedError

    def verify_with_jwks(self, token: str, audience=None, issuer=None) -> dict:
        """Verifies `token` with PyJWT against the key of `jwks()` its kid
        names (a check of the fixtures themselves, not of jwt_rls)."""
        head = jwt.get_unverified_header(token)
        keys = [k for k in self.jwks()["keys"] if k.get("use", "sig") == "sig"]
        match = [k for k in keys if k["kid"] == head["kid"]]
        if len(match) != 1:
            raise ValueError(f"{self.name}: kid {head['kid']!r} matches {len(match)} keys")
        jwk = dict(match[0])
        jwk.setdefault("alg", head["alg"])  # Entra publishes no alg
        key = jwt.PyJWK.from_dict(jwk)
        return jwt.decode(token, key, algorithms=[head["alg"]],
                          audience=audience, issuer=issuer,
                          options={"verify_aud": audience is not None})


# --- Keycloak ------------------------------------------------------------------


class Keycloak(Provider):
    """A Keycloak realm (Keycloak 17 and later: no /auth in the path).

    JWKS at {issuer}/protocol/openid-connect/certs: the realm's RS256
    signing key (with x5c, x5t, x5t#S256) and, by default, an RSA-OAEP key
    with "use": "enc" for encrypting to the realm. Access tokens: header
    typ JWT; payload typ "Bearer", azp the client that asked, realm roles
    in realm_access.roles, client roles in resource_access, aud from
    audience mappers ("account" by default). A user attribute mapper adds
    tenant_id.
    """

    name = "keycloak"

    def __init__(self, realm="acme", host="https://sso.example.com", api="invoices-api",
                 client="invoices-web"):
        self.realm, self.host, self.api, self.client = realm, host, api, client
        self.issuer = f"{host}/realms/{realm}"
        self.audience = api
        self.jwks_uri = f"{self.issuer}/protocol/openid-connect/certs"
        self.sig_key, self.enc_key = rsa_key(), rsa_key()
        self.sig_kid, self.enc_kid = b64url(secrets.token_bytes(32)), b64url(secrets.token_bytes(32))
        self._sig_cert = self_signed_cert(self.sig_key, realm)
        self._enc_cert = self_signed_cert(self.enc_key, realm)

    def jwks(self):
        def entry(kid, alg, use, key, der):
            return {"kid": kid, "kty": "RSA", "alg": alg, "use": use, **rsa_public_members(key),
                    "x5c": x5c(der), "x5t": x5t(der), "x5t#S256": x5t_s256(der)}
        return {"keys": [entry(self.sig_kid, "RS256", "sig", self.sig_key, self._sig_cert),
                         entry(self.enc_kid, "RSA-OAEP", "enc", self.enc_key, self._enc_cert)]}

    def token(self, tenant, ttl=300, header=None, roles=("invoice-reader",), **claims):
        now = int(time.time())
        sub = str(uuid.uuid4())
        payload = {
            "exp": now + ttl, "iat": now, "auth_time": now - 5,
            "jti": f"onrtac:{uuid.uuid4()}",
            "iss": self.issuer,
            "aud": [self.api, "account"],
            "sub": sub, "typ": "Bearer", "azp": self.client,
            "sid": str(uuid.uuid4()), "acr": "1",
            "allowed-origins": ["https://app.example.com"],
            "realm_access": {"roles": [f"default-roles-{self.realm}", "offline_access",
                                       "uma_authorization", *roles]},
            "resource_access": {"account": {"roles": ["manage-account", "manage-account-links",
                                                      "view-profile"]}},
            "scope": "openid profile email",
            "email_verified": True, "name": "Ada Lovelace", "preferred_username": "ada",
            "given_name": "Ada", "family_name": "Lovelace", "email": "ada@acme.example",
            "tenant_id": str(tenant),
        }
        head = _merge({"alg": "RS256", "typ": "JWT", "kid": self.sig_kid}, header or {})
        return _sign(_merge(payload, claims), self.sig_key, "RS256", head)


# --- Auth0 -----------------------------------------------------------------------


class Auth0(Provider):
    """An Auth0 tenant (default "Auth0" access token profile).

    JWKS at https://{domain}/.well-known/jwks.json: RS256 keys with alg,
    kty, use, n, e, kid, x5t, x5c; during a signing key rotation the next
    key is listed too. iss is https://{domain}/ (trailing slash). Access
    tokens for an API: aud the API identifier, plus the /userinfo audience
    when openid was asked for; azp the application's client id; org_id with
    Organizations; permissions with RBAC; custom claims namespaced by an
    Action (https://acme.example/tenant_id).
    """

    name = "auth0"
    claim_ns = "https://acme.example/"

    def __init__(self, domain="acme.eu.auth0.com", api="https://api.acme.example/invoices"):
        self.domain, self.api = domain, api
        self.issuer = f"https://{domain}/"
        self.audience = api
        self.jwks_uri = f"https://{domain}/.well-known/jwks.json"
        self.client_id = _alnum(32, string.ascii_letters + string.digits)
        self.keys = [rsa_key(), rsa_key()]          # current, next
        self.kids = [_alnum(22, string.ascii_letters + string.digits + "-_") for _ in self.keys]
        self._certs = [self_signed_cert(k, domain) for k in self.keys]
        self.tenant_claim = self.claim_ns + "tenant_id"

    @property
    def settings(self):
        return {**super().settings, "tenant_id_claim": self.tenant_claim}

    def jwk(self, i):
        der = self._certs[i]
        return {"alg": "RS256", "kty": "RSA", "use": "sig", **rsa_public_members(self.keys[i]),
                "kid": self.kids[i], "x5t": x5t(der), "x5c": x5c(der)}

    def jwks(self, which=(0, 1)):
        return {"keys": [self.jwk(i) for i in which]}

    def token(self, tenant, ttl=86400, header=None, key=0, org_id="org_9ybsU1dN2dKfDkBi",
              **claims):
        now = int(time.time())
        payload = {
            self.tenant_claim: str(tenant),
            "iss": self.issuer,
            "sub": "auth0|" + secrets.token_hex(12),
            "aud": [self.api, f"https://{self.domain}/userinfo"],
            "iat": now, "exp": now + ttl,
            "scope": "openid profile email read:invoices",
            "org_id": org_id,
            "azp": self.client_id,
            "permissions": ["read:invoices"],
        }
        head = _merge({"alg": "RS256", "typ": "JWT", "kid": self.kids[key]}, header or {})
        return _sign(_merge(payload, claims), self.keys[key], "RS256", head)


# --- Amazon Cognito -----------------------------------------------------------------


class Cognito(Provider):
    """An Amazon Cognito user pool.

    JWKS at https://cognito-idp.{region}.amazonaws.com/{poolId}/.well-known/jwks.json:
    two RS256 keys (one signs ID tokens, the other access tokens), each with
    alg, e, kid, kty, n, use; kids are standard base64 ("...=").
    Headers carry only kid and alg. Access tokens have token_use "access",
    client_id and no aud; ID tokens have token_use "id" and aud = the app
    client id. cognito:groups lists the user's groups. A pre token
    generation trigger (V2 event) adds tenant_id to access tokens.
    """

    name = "cognito"

    def __init__(self, region="eu-west-1", pool="eu-west-1_Xk3pQ9aZb",
                 client_id="4vd1ex4mpl3jt6gq7cbnd2v9ld"):
        self.region, self.pool = region, pool
        self.issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool}"
        self.audience = ""          # access tokens carry no aud
        self.jwks_uri = f"{self.issuer}/.well-known/jwks.json"
        self.client_id = client_id
        self.id_key, self.access_key = rsa_key(), rsa_key()
        self.id_kid = base64.b64encode(secrets.token_bytes(32)).decode()
        self.access_kid = base64.b64encode(secrets.token_bytes(32)).decode()

    @property
    def settings(self):
        return {"issuer": self.issuer, "required_claims": "token_use,client_id,tenant_id"}

    def jwks(self):
        def entry(kid, key):
            m = rsa_public_members(key)
            return {"alg": "RS256", "e": m["e"], "kid": kid, "kty": "RSA", "n": m["n"], "use": "sig"}
        return {"keys": [entry(self.id_kid, self.id_key), entry(self.access_kid, self.access_key)]}

    def token(self, tenant, ttl=3600, header=None, groups=("readers",), **claims):
        """An access token."""
        now = int(time.time())
        payload = {
            "sub": str(uuid.uuid4()),
            "cognito:groups": list(groups),
            "iss": self.issuer,
            "version": 2,
            "client_id": self.client_id,
            "origin_jti": str(uuid.uuid4()),
            "event_id": str(uuid.uuid4()),
            "token_use": "access",
            "scope": "aws.cognito.signin.user.admin openid email",
            "auth_time": now - 5, "exp": now + ttl, "iat": now,
            "jti": str(uuid.uuid4()),
            "username": "ada",
            "tenant_id": str(tenant),
        }
        head = _merge({"kid": self.access_kid, "alg": "RS256", "typ": None}, header or {})
        return _sign(_merge(payload, claims), self.access_key, "RS256", head)

    def id_token(self, tenant, ttl=3600, **claims):
        """An ID token of the same sign-in: aud is the app client id."""
        now = int(time.time())
        payload = {
            "sub": str(uuid.uuid4()),
            "cognito:groups": ["readers"],
            "email_verified": True,
            "iss": self.issuer,
            "cognito:username": "ada",
            "origin_jti": str(uuid.uuid4()),
            "aud": self.client_id,
            "event_id": str(uuid.uuid4()),
            "token_use": "id",
            "auth_time": now - 5, "exp": now + ttl, "iat": now,
            "jti": str(uuid.uuid4()),
            "email": "ada@acme.example",
            "custom:tenant_id": str(tenant),
        }
        head = {"kid": self.id_kid, "alg": "RS256", "typ": None}
        return _sign(_merge(payload, claims), self.id_key, "RS256", head)


# --- Microsoft Entra ID ---------------------------------------------------------------


class EntraID(Provider):
    """Microsoft Entra ID (v2.0 access tokens for a registered API with
    accessTokenAcceptedVersion 2; v1.0 when `version=1`).

    JWKS at https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys:
    RSA keys with kty, use, kid, x5t (kid == x5t, the certificate's SHA-1
    thumbprint), n, e, x5c and issuer, and no alg. Each customer
    organisation signs in from its own tenant: tid is that tenant's id, iss
    https://login.microsoftonline.com/{tid}/v2.0 (v1.0:
    https://sts.windows.net/{tid}/). v2.0 aud is the API's client id; oid
    is the user's id across apps in the tenant; roles the app roles.
    """

    name = "entra-id"

    def __init__(self, tenants, api_client_id="6e74172b-be56-4843-9ff4-e66a39bb12e3"):
        self.tenants = [str(t) for t in tenants]        # onboarded customer tenants
        self.api_client_id = api_client_id
        self.audience = api_client_id
        self.issuer = ",".join(self.issuer_for(t) for t in self.tenants)
        self.jwks_uri = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
        self.keys = [rsa_key(), rsa_key()]
        self._certs = [self_signed_cert(k, "accounts.accesscontrol.windows.net") for k in self.keys]
        self.kids = [x5t(der) for der in self._certs]
        self.client_app = str(uuid.uuid4())

    @staticmethod
    def issuer_for(tid, version=2):
        return (f"https://login.microsoftonline.com/{tid}/v2.0" if version == 2
                else f"https://sts.windows.net/{tid}/")

    @property
    def settings(self):
        return {**super().settings, "tenant_id_claim": "tid", "user_id_claim": "oid"}

    def jwks(self):
        return {"keys": [{"kty": "RSA", "use": "sig", "kid": kid, "x5t": kid,
                          **rsa_public_members(key), "x5c": x5c(der),
                          "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"}
                         for key, kid, der in zip(self.keys, self.kids, self._certs)]}

    def token(self, tenant, ttl=4500, header=None, version=2, roles=("Invoices.Read",), **claims):
        now = int(time.time())
        tid = str(tenant)
        payload = {
            "aud": self.api_client_id if version == 2 else "api://invoices",
            "iss": self.issuer_for(tid, version),
            "iat": now, "nbf": now, "exp": now + ttl,
            "aio": b64url(secrets.token_bytes(60)),
            "name": "Ada Lovelace",
            "oid": str(uuid.uuid4()),
            "rh": "0.A" + b64url(secrets.token_bytes(40)),
            "roles": list(roles),
            "scp": "access_as_user",
            "sub": b64url(secrets.token_bytes(32)),
            "tid": tid,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0" if version == 2 else "1.0",
        }
        if version == 2:
            payload.update({"azp": self.client_app, "azpacr": "0",
                            "preferred_username": "ada@acme.example"})
        else:
            payload.update({"appid": self.client_app, "appidacr": "0", "acr": "1",
                            "amr": ["pwd"], "unique_name": "ada@acme.example"})
        head = {"typ": "JWT", "alg": "RS256", "kid": self.kids[0]}
        if version == 1:
            head["x5t"] = self.kids[0]
        head = _merge(head, header or {})
        return _sign(_merge(payload, claims), self.keys[0], "RS256", head)


# --- Supabase Auth -------------------------------------------------------------------


class Supabase(Provider):
    """Supabase Auth (GoTrue) with asymmetric JWT signing keys, and the
    legacy JWT secret.

    JWKS at https://{ref}.supabase.co/auth/v1/.well-known/jwks.json: ES256
    keys as the dashboard shows them (alg, crv, ext, key_ops ["verify"],
    kid a UUID, kty EC, x, y). The legacy HS256 JWT secret is never in the
    JWKS. iss https://{ref}.supabase.co/auth/v1, aud "authenticated",
    role "authenticated" (or "anon"), aal, amr, session_id, is_anonymous,
    app_metadata (set by the server; the place for a tenant) and
    user_metadata (editable by the user: never for authorization).
    """

    name = "supabase"
    alg = "ES256"

    def __init__(self, ref="abcdefghijklmnopqrst"):
        self.ref = ref
        self.issuer = f"https://{ref}.supabase.co/auth/v1"
        self.audience = "authenticated"
        self.jwks_uri = f"{self.issuer}/.well-known/jwks.json"
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = str(uuid.uuid4())
        self.legacy_secret = secrets.token_urlsafe(48).encode()  # 64 characters, like the dashboard's

    def jwks(self):
        m = ec_public_members(self.key)
        return {"keys": [{"alg": "ES256", "crv": m["crv"], "ext": True, "key_ops": ["verify"],
                          "kid": self.kid, "kty": "EC", "x": m["x"], "y": m["y"]}]}

    def claims(self, tenant, ttl=3600, user_id=None, **claims):
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "sub": str(user_id or uuid.uuid4()),
            "aud": "authenticated",
            "exp": now + ttl, "iat": now,
            "email": "ada@acme.example", "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"], "tenant_id": str(tenant)},
            "user_metadata": {"email_verified": True},
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now - 5}],
            "session_id": str(uuid.uuid4()),
            "is_anonymous": False,
        }
        return _merge(payload, claims)

    def token(self, tenant, ttl=3600, header=None, **claims):
        head = _merge({"alg": "ES256", "kid": self.kid, "typ": "JWT"}, header or {})
        return _sign(self.claims(tenant, ttl, **claims), self.key, "ES256", head)

    def legacy_token(self, tenant, ttl=3600, **claims):
        """Signed with the legacy JWT secret: HS256, header without kid."""
        return _sign(self.claims(tenant, ttl, **claims), self.legacy_secret, "HS256", {})


def all_providers(tenants):
    """One instance of each, for tests that walk every provider."""
    return [Keycloak(), Auth0(), Cognito(), EntraID(tenants), Supabase()]


def decode_segments(token: str) -> tuple[dict, dict]:
    """(header, payload) of a token, unverified (for shape checks)."""
    head, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (json.loads(base64.urlsafe_b64decode(pad(head))),
            json.loads(base64.urlsafe_b64decode(pad(payload))))
