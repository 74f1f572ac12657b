"""The browser-style DPoP flow end to end, through PgBouncer in transaction
mode (issue #24): every proof is made by a Node client with jose
(tests/node/dpop_client.mjs, a key pair whose private key cannot be
exported, as a browser would hold it), never by this file.

Login with the client's key (verify_dpop_proof, then start_session bound to
its thumbprint) through the login service's pooler; requests through the
application's pooler, each `BEGIN; authenticate(token, proof, 'GET', url);
SELECT ...; COMMIT` seeing only its tenant's rows; refresh with a proof
(refresh_with_proof), then requests with the new access token. Then a thief
holding the access token and the refresh tokens but not the key: the access
token alone, with the thief's own proof, with a captured proof of the owner
replayed, and the refresh tokens without a proof, with the thief's proof,
with the owner's captured token-request proof, are all refused with 28000
and no error carries a token or a proof; the owner, afterwards, still
refreshes and makes requests (the thief revoked nothing).

Skips when node or tests/node/node_modules/jose is missing (`bash
scripts/setup.sh` installs them), or when node is older than 20 (jose 6
needs the Web Crypto global)."""

import json
import os
import select
import shutil
import subprocess
import time
from types import SimpleNamespace

import psycopg
import pytest
from jwcrypto import jwk, jws

from support import b64url_decode
from support.dpop import ath, wait_until_proofs_accepted
from support.pgbouncer import PgBouncer
from support.pgcluster import Cluster
from support.schema import ROWS, SCHEMA, TENANT_A, TENANT_B, insert_invoices
from support.tokens import AUDIENCE

NODE_DIR = os.path.join(os.path.dirname(__file__), "node")
CLIENT = os.path.join(NODE_DIR, "dpop_client.mjs")
TOKEN_URL = "https://auth.example.com/token"
API = "https://api.example.com"
REQUESTS = 6  # per access token and user
LOGIN_ROLE = "e2e_login"


def node_missing():
    """Why the Node client cannot run here, or None."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (bash scripts/setup.sh installs it)"
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "jose")):
        return "tests/node/node_modules/jose is missing (bash scripts/setup.sh runs npm ci there)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        return f"node {version} is too old for jose 6 (needs 20 or later)"
    return None


class NodeClient:
    """One browser: a `node dpop_client.mjs` process holding one key pair.
    `proof(htm, htu, access_token)` asks it for a proof, one line each way."""

    def __init__(self, alg="ES256"):
        self.proc = subprocess.Popen(["node", CLIENT, "--alg", alg], cwd=NODE_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buffer = b""
        first = json.loads(self._line())
        self.alg, self.jwk, self.jkt, self.extractable = (first["alg"], first["jwk"], first["jkt"],
                                                          first["extractable"])

    def _line(self, timeout=30):
        """The client's next output line (read from the pipe directly, so
        that a hung or crashed client fails the test instead of blocking)."""
        deadline = time.time() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.time()
            ready = select.select([self.proc.stdout], [], [], max(left, 0))[0]
            chunk = os.read(self.proc.stdout.fileno(), 65536) if ready else b""
            if not chunk:
                self.close()
                raise AssertionError(f"the Node client gave no line (exit {self.proc.returncode}): "
                                     f"{self.proc.stderr.read().decode(errors='replace')}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def proof(self, htm, htu, access_token=None):
        request = {"htm": htm, "htu": htu}
        if access_token is not None:
            request["access_token"] = access_token
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        return self._line()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def browser():
    """Starts Node clients (`browser(alg)`); stops them after the test."""
    if reason := node_missing():
        pytest.skip(reason)
    started = []

    def start(alg="ES256"):
        started.append(NodeClient(alg))
        return started[-1]
    try:
        yield start
    finally:
        for client in started:
            client.close()


@pytest.fixture(scope="module")
def site():
    """A cluster with jwt_rls preloaded (the replay table is in shared
    memory), the two-tenant schema, a signing key, a login service's role,
    and two PgBouncers in transaction mode: `site.logins` logs in to the
    server as the login service, `site.apps` as the application role."""
    if reason := node_missing():
        pytest.skip(reason)
    c = Cluster(conf=["shared_preload_libraries = 'jwt_rls'"]).start()
    try:
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute(SCHEMA)
            with admin.cursor() as cur:
                insert_invoices(cur)
            admin.execute("SELECT jwt_rls.generate_signing_key('e2e-es256', 'ES256')")
            admin.execute(f"CREATE ROLE {LOGIN_ROLE} LOGIN")
            admin.execute(f"GRANT USAGE ON SCHEMA jwt_rls TO {LOGIN_ROLE}")
            admin.execute("GRANT EXECUTE ON FUNCTION jwt_rls.start_session(text, jsonb, text), "
                          "jwt_rls.verify_dpop_proof(text, text, text), "
                          f"jwt_rls.rotate_refresh_token(text, text, text, text) TO {LOGIN_ROLE}")
            admin.execute("GRANT EXECUTE ON PROCEDURE "
                          f"jwt_rls.refresh_with_proof(text, text, text, text, text, text, uuid) TO {LOGIN_ROLE}")
            # A login service that also serves sessions without a key has
            # plain refresh() too: so the thief's refresh without a proof
            # below meets the DPoP check, not a missing privilege.
            admin.execute("GRANT EXECUTE ON FUNCTION jwt_rls.rotate_refresh_token(text) TO "
                          f"{LOGIN_ROLE}")
            admin.execute(f"GRANT EXECUTE ON PROCEDURE jwt_rls.refresh(text, text, text, uuid) TO {LOGIN_ROLE}")
        wait_until_proofs_accepted(c.dsn())
        with PgBouncer(c, "transaction", pool_size=2) as apps, \
                PgBouncer(c, "transaction", pool_size=1, user=LOGIN_ROLE) as logins:
            yield SimpleNamespace(cluster=c, apps=apps, logins=logins)
    finally:
        c.remove()


def pooled(bouncer):
    """A client connection through a transaction pooler: no prepared
    statements (a server connection is not the client's past one COMMIT)."""
    return psycopg.connect(bouncer.dsn(), autocommit=True, prepare_threshold=None)


def payload(token):
    return json.loads(b64url_decode(token.split(".")[1]))


def header(token):
    return json.loads(b64url_decode(token.split(".")[0]))


def leaks(e, *secrets):
    """Pieces of `secrets` (whole, and each dot-separated segment of 8
    characters or more) in the error's text, message, detail, hint or
    context."""
    d = e.diag
    text = " ".join(filter(None, [str(e), d.message_primary, d.message_detail, d.message_hint, d.context]))
    return [piece[:16] for secret in secrets
            for piece in [secret] + secret.split(".") if len(piece) >= 8 and piece in text]


def said(e):
    d = e.diag
    return " ".join(filter(None, [d.message_primary, d.message_detail, d.message_hint])).lower()


def login(svc, client, sub, tenant):
    """The token request of a login: the client's proof names its key,
    start_session binds the session to it (the reference's one statement).
    Returns (access, refresh, session id)."""
    proof = client.proof("POST", TOKEN_URL)
    claims = json.dumps({"tenant_id": str(tenant), "aud": AUDIENCE})
    return svc.execute(
        "SELECT * FROM jwt_rls.start_session(%s, %s::jsonb, jwt_rls.verify_dpop_proof(%s, 'POST', %s))",
        (sub, claims, proof, TOKEN_URL)).fetchone()


def refresh(svc, refresh_token, proof):
    """CALL refresh_with_proof as the token request: (access, refresh, sid)."""
    return svc.execute("CALL jwt_rls.refresh_with_proof(%s, %s, 'POST', %s)",
                       (refresh_token, proof, TOKEN_URL)).fetchone()


def request(conn, access, proof, url):
    """One API request: its transaction binds the token with its proof and
    reads invoices. Returns (the claims authenticate returned, the tenants
    whose invoices it saw, how many); raises what the server raised."""
    with conn.transaction():  # BEGIN ... COMMIT
        claims = conn.execute("SELECT jwt_rls.authenticate(%s, %s, 'GET', %s)", (access, proof, url)).fetchone()[0]
        seen = {row[0] for row in conn.execute("SELECT DISTINCT tenant_id FROM invoices")}
        n = conn.execute("SELECT count(*) FROM invoices").fetchone()[0]
    return claims, seen, n


def bearer_request(conn, access):
    """A request with the access token alone, as a Bearer token."""
    with conn.transaction():
        conn.execute("SELECT jwt_rls.authenticate(%s)", (access,))
        return conn.execute("SELECT count(*) FROM invoices").fetchone()[0]


def requests(conns, user, access, wrong, label):
    """REQUESTS requests of `user` ({client, tenant, sub}) with `access`,
    spread over the client connections, each with a new proof; what differs
    from the expected goes to `wrong`. Returns the last (proof, url)."""
    for i in range(REQUESTS):
        conn = conns[i % len(conns)]
        url = f"{API}/invoices?page={i}"
        proof = user["client"].proof("GET", url, access)
        try:
            claims, seen, n = request(conn, access, proof, url)
        except psycopg.Error as e:
            wrong.append(f"{label} {user['sub']} request {i}: {e.sqlstate} {e.diag.message_primary}")
            continue
        if (claims["sub"], claims["cnf"]) != (user["sub"], {"jkt": user["client"].jkt}):
            wrong.append(f"{label} {user['sub']} request {i}: claims {claims}")
        if (seen, n) != ({user["tenant"]}, ROWS[user["tenant"]]):
            wrong.append(f"{label} {user['sub']} request {i}: saw {n} invoices of {seen}")
        # After COMMIT nothing stays bound on this connection's next server connection.
        left = conn.execute("SELECT count(*), jwt_rls.jwt_claim('sub') FROM invoices").fetchone()
        if left != (0, None):
            wrong.append(f"{label} {user['sub']} after request {i}: {left} outside a request")
    return proof, url


def refused(attempt, says, *secrets):
    """Runs `attempt()`: None when it is refused with 28000 for the reason
    `says` (words of its message or detail) and its error carries none of
    `secrets`, else what went wrong."""
    try:
        attempt()
    except psycopg.Error as e:
        if e.sqlstate != "28000" or says not in said(e):
            return f"{e.sqlstate} {said(e)}"
        if leaks(e, *secrets):
            return f"the error carries {leaks(e, *secrets)}"
        return None
    return "accepted"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_the_browser_flow_through_pgbouncer_and_a_thief_without_the_key(site, browser, alg):
    alice = {"client": browser(alg), "tenant": TENANT_A, "sub": f"alice-{alg}"}
    bob = {"client": browser("ES256"), "tenant": TENANT_B, "sub": f"bob-{alg}"}
    thief = browser("ES256")
    users = [alice, bob]
    wrong = []

    # The client is what it says: a private key that cannot be exported, a
    # public key whose thumbprint jwcrypto computes the same, and a proof of
    # the DPoP shape, signed by the key its header carries, with a new jti
    # and ath as RFC 9449 says.
    for client in [alice["client"], bob["client"], thief]:
        key = jwk.JWK(**client.jwk)
        assert client.extractable is False and not key.has_private
        assert key.thumbprint() == client.jkt
    sample = alice["client"].proof("GET", f"{API}/sample", "an.access.token")
    jws.JWS().deserialize(sample, key=jwk.JWK(**alice["client"].jwk))  # raises unless the signature verifies
    assert header(sample) == {"alg": alg, "typ": "dpop+jwt", "jwk": alice["client"].jwk}
    claims = payload(sample)
    assert (claims["htm"], claims["htu"], claims["ath"]) == ("GET", f"{API}/sample", ath("an.access.token"))
    assert abs(claims["iat"] - time.time()) < 30 and claims["jti"] != payload(alice["client"].proof("GET", API))["jti"]

    with pooled(site.logins) as svc:
        conns = [pooled(site.apps) for _ in range(4)]
        try:
            # Login: each session bound to its browser's key.
            for user in users:
                user["access"], user["refresh"], user["sid"] = login(
                    svc, user["client"], user["sub"], user["tenant"])
                assert payload(user["access"]).get("cnf") == {"jkt": user["client"].jkt}
                assert payload(user["access"])["sid"] == str(user["sid"])

            # Requests, alice's and bob's in turns over the pooled connections.
            for user in users:
                requests(conns, user, user["access"], wrong, "first token")

            # Refresh with a proof, then requests with the new access token.
            for user in users:
                user["refresh_proof"] = user["client"].proof("POST", TOKEN_URL)
                user["access2"], user["refresh2"], sid = refresh(svc, user["refresh"], user["refresh_proof"])
                assert sid == user["sid"] and user["access2"] != user["access"]
                assert payload(user["access2"]).get("cnf") == {"jkt": user["client"].jkt}
            for user in users:
                user["captured"] = requests(conns, user, user["access2"], wrong, "refreshed token")
            assert not wrong, "\n".join(wrong)

            # The thief holds alice's access token, her used and her current
            # refresh token, and proofs captured from her requests, but not
            # her key.
            stolen, app = alice["access2"], conns[0]
            captured_proof, captured_url = alice["captured"]
            mine = thief.proof("GET", captured_url, stolen)
            outcomes = {
                "access token alone": refused(
                    lambda: bearer_request(app, stolen), "needs a dpop proof", stolen),
                "access token with the thief's proof": refused(
                    lambda: request(app, stolen, mine, captured_url), "not the key", stolen, mine),
                "access token with alice's captured proof": refused(
                    lambda: request(app, stolen, captured_proof, captured_url), "used before",
                    stolen, captured_proof),
            }
            for name, token in [("current", alice["refresh2"]), ("used", alice["refresh"])]:
                proof = thief.proof("POST", TOKEN_URL)
                outcomes[f"{name} refresh token without a proof"] = refused(
                    lambda: svc.execute("CALL jwt_rls.refresh(%s)", (token,)), "needs a dpop proof", token)
                outcomes[f"{name} refresh token with the thief's proof"] = refused(
                    lambda: refresh(svc, token, proof), "not the key", token, proof)
                outcomes[f"{name} refresh token with alice's captured refresh proof"] = refused(
                    lambda: refresh(svc, token, alice["refresh_proof"]), "used before",
                    token, alice["refresh_proof"])
            assert outcomes == {name: None for name in outcomes}, outcomes

            # The owner goes on: her access token still binds with her new
            # proofs, she refreshes, and the new token works too.
            requests(conns, alice, stolen, wrong, "after the thief")
            access3, _, sid = refresh(svc, alice["refresh2"], alice["client"].proof("POST", TOKEN_URL))
            assert sid == alice["sid"]
            requests(conns, alice, access3, wrong, "refreshed after the thief")
            requests(conns, bob, bob["access2"], wrong, "bob after the thief")
            assert not wrong, "\n".join(wrong)
        finally:
            for conn in conns:
                conn.close()

    with psycopg.connect(site.cluster.dsn(), autocommit=True) as admin:
        revoked = admin.execute("SELECT count(*) FROM jwt_rls.sessions WHERE revoked_at IS NOT NULL").fetchone()[0]
        assert revoked == 0
        # The requests went through the poolers: the server saw only their
        # few connections, as the application role and the login service.
        by_role = dict(admin.execute("SELECT usename, count(*) FROM pg_stat_activity "
                                     "WHERE usename IN ('app', %s) GROUP BY 1", (LOGIN_ROLE,)).fetchall())
        assert 1 <= by_role.get("app", 0) <= 2 and by_role.get(LOGIN_ROLE) == 1, by_role
