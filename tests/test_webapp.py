"""The reference web application (examples/webapp, issue #34) in a real
browser: Debian's headless Chromium driven by playwright-core
(tests/browser/driver.mjs), against the app behind PgBouncer in
transaction mode, with the whole stack of examples/webapp/stack.py (a
cluster with jwt_rls preloaded, real tokens, real DPoP proofs made by the
page's WebCrypto key). One test per scenario; each asserts on what the
browser saw and on what the database holds. Screenshots go to
target/webapp-screenshots/.

Access tokens live LIFETIME seconds here, so that the silent refresh
happens within the test; every other scenario finishes each step well
inside that.

Runs on PostgreSQL 15 only, and skips with its reason where node, the two
npm folders (bash scripts/setup.sh runs npm ci in both) or
/usr/bin/chromium are missing."""

import http.client
import importlib.util
import http.server
import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest
from jwcrypto import jwk

from support import b64url_decode
from support.dpop import ProofKey, ath
from support.pg import MAJOR
from support.schema import TENANT_A, TENANT_B

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEBAPP = os.path.join(ROOT, "examples", "webapp")
BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
CHROMIUM = "/usr/bin/chromium"
SHOTS = os.path.join(ROOT, "target", "webapp-screenshots")
LIFETIME = 8  # seconds an access token lives (short: the silent refresh happens within a test)
COOKIE = "__Secure-refresh_token"

# examples/webapp/stack.py, the stack `start.sh` runs, loaded by its path.
_spec = importlib.util.spec_from_file_location("webapp_stack", os.path.join(WEBAPP, "stack.py"))
webapp_stack = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(webapp_stack)

# Made up at each run, like the demo's: no password is written down anywhere.
USERS = {"alice": (TENANT_A, secrets.token_urlsafe(12)), "bob": (TENANT_B, secrets.token_urlsafe(12)),
         "heidi": (TENANT_A, secrets.token_urlsafe(12))}


def missing():
    """Why this file cannot run here, or None."""
    if MAJOR != 15:
        return "runs on PostgreSQL 15 only: the app's stack does not depend on the major, and CI's time is counted"
    if shutil.which("node") is None:
        return "node is not installed (bash scripts/setup.sh installs it)"
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (apt-get install chromium; bash scripts/setup.sh installs it)"
    for folder, package in [(WEBAPP, "pg"), (BROWSER_DIR, "playwright-core")]:
        if not os.path.isdir(os.path.join(folder, "node_modules", package)):
            return f"{os.path.relpath(folder, ROOT)}/node_modules/{package} is missing (npm ci there; setup.sh does)"
    return None


class Driver:
    """tests/browser/driver.mjs: one command a line each way."""

    def __init__(self):
        self.errors = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(["node", "driver.mjs"], cwd=BROWSER_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.errors, text=True,
                                     env={**os.environ, "CHROMIUM": CHROMIUM})
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.version = self._answer(60)["version"]

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _answer(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the browser driver gave no answer in {timeout} s") from None
        if line is None:
            self.errors.seek(0)
            raise AssertionError(f"the browser driver ended: {self.errors.read()[-2000:]}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise AssertionError(f"browser: {answer['error']}")
        return answer["result"]

    def __call__(self, cmd, **args):
        self.proc.stdin.write(json.dumps({"cmd": cmd, "args": args}) + "\n")
        self.proc.stdin.flush()
        return self._answer(60)

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Tab:
    """One page of a browser context, at the app."""

    def __init__(self, browser, site, name):
        self.b, self.site, self.name, self.context = browser.driver, site, name, browser.name
        self.b("page", context=self.context, page=name)

    def open(self, path="/"):
        self.b("goto", page=self.name, url=self.site.origin + path)
        self.wait_for_page()

    def wait_for_page(self):
        """Waits until the app is done (not aria-busy) and shows one of its
        pages; returns which."""
        self.idle()
        self.b("wait", page=self.name, selector="#login-page:not([hidden]), #invoices-page:not([hidden])")
        return self.page()

    def idle(self):
        """Waits until the app's action in this tab has finished: it is
        aria-busy from the click (or the page's start) to its end."""
        self.b("wait", page=self.name, selector="body:not([aria-busy])", state="attached")

    def page(self):
        """"login" or "invoices": which of the app's pages this tab shows."""
        login = self.b("visible", page=self.name, selector="#login-page")
        invoices = self.b("visible", page=self.name, selector="#invoices-page")
        assert login != invoices, "the app shows both pages or neither"
        return "login" if login else "invoices"

    def log_in(self, user, password=None):
        self.open()
        assert self.page() == "login"
        self.b("fill", page=self.name, selector="input[name=username]", value=user)
        self.b("fill", page=self.name, selector="input[name=password]", value=password or USERS[user][1])
        self.click("#login-form button")
        assert self.page() == "invoices", self.text("#login-message")

    def click(self, selector):
        """Clicks, and waits until the app has done what the click asked."""
        self.b("click", page=self.name, selector=selector)
        self.idle()

    def fill(self, selector, value):
        self.b("fill", page=self.name, selector=selector, value=value)

    def wait(self, selector, state="visible"):
        self.b("wait", page=self.name, selector=selector, state=state)

    def text(self, selector):
        return self.b("text", page=self.name, selector=selector)

    def rows(self):
        """The invoices table as the page shows it: (id, amount, note) each."""
        return [tuple(row) for row in self.b("rows", page=self.name, selector="#invoices")]

    def evaluate(self, script, arg=None):
        return self.b("evaluate", page=self.name, script=script, arg=arg)

    def reload(self):
        self.b("reload", page=self.name)
        return self.wait_for_page()

    def screenshot(self, name):
        self.b("screenshot", page=self.name, path=os.path.join(SHOTS, f"{name}.png"))


class Browser:
    """A browser context: its own cookies and IndexedDB, as another
    browser (or person) would have."""

    def __init__(self, driver, site, name):
        self.driver, self.site, self.name = driver, site, name
        driver("context", context=name)
        self.tabs = 0

    def tab(self):
        self.tabs += 1
        return Tab(self, self.site, f"{self.name}-{self.tabs}")

    def requests(self):
        """The responses this context's pages got since the last call."""
        return self.driver("requests", context=self.name)

    def cookie(self):
        """The refresh cookie as the browser holds it, or None."""
        found = [c for c in self.driver("cookies", context=self.name) if c["name"] == COOKIE]
        return found[0] if found else None

    def init_script(self, script):
        """Runs `script` (a function's source) in every page of this context
        before the page's own scripts."""
        self.driver("initScript", context=self.name, script=script)


@pytest.fixture(scope="module")
def site():
    if reason := missing():
        pytest.skip(reason)
    os.makedirs(SHOTS, exist_ok=True)
    logs = tempfile.mkdtemp(prefix="jwt_rls_webapp_")
    stack = webapp_stack.Stack(USERS, access_token_lifetime=LIFETIME, log_path=os.path.join(logs, "app.log")).start()
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(logs, ignore_errors=True)


@pytest.fixture(scope="module")
def driver(site):
    d = Driver()
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def browsers(driver, site):
    """`browsers(name)`: a new browser context; all closed after the test."""
    opened = []

    def open_browser(name):
        opened.append(Browser(driver, site, name))
        return opened[-1]
    try:
        yield open_browser
    finally:
        for b in opened:
            driver("close", context=b.name)


@pytest.fixture
def admin(site):
    """A superuser connection straight to the cluster: sees every row."""
    with psycopg.connect(site.cluster.dsn(), autocommit=True) as conn:
        yield conn


# --- reading what went over the wire ------------------------------------------------

def payload(jwt):
    return json.loads(b64url_decode(jwt.split(".")[1]))


def header(jwt):
    return json.loads(b64url_decode(jwt.split(".")[0]))


def access_token(request):
    auth = request["headers"].get("authorization", "")
    assert auth.startswith("DPoP "), request
    return auth[len("DPoP "):]


def api_calls(requests, method=None):
    return [r for r in requests if r["path"].startswith("/api/") and method in (None, r["method"])]


def session_id(request):
    return payload(access_token(request))["sid"]


def session(admin, sid):
    """(revoked_at is set, revoked_reason, dpop_jkt, refresh tokens issued) of a session."""
    return admin.execute("""SELECT s.revoked_at IS NOT NULL, s.revoked_reason, s.dpop_jkt,
                                   (SELECT count(*) FROM jwt_rls.refresh_tokens r WHERE r.session_id = s.id)
                              FROM jwt_rls.sessions s WHERE s.id = %s""", (sid,)).fetchone()


def tenant_rows(admin, tenant):
    return [(str(i), str(a), n or "") for i, a, n in admin.execute(
        "SELECT id, amount, note FROM invoices WHERE tenant_id = %s ORDER BY id", (tenant,))]


def outside(site, method, path, headers=None, body=None):
    """A request from outside the browser: (status, headers, JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode()
        return response.status, response.headers, json.loads(text) if text else None
    finally:
        conn.close()


# --- the scenarios -------------------------------------------------------------------


def logged_in(browsers, user, name=None):
    """A new browser context with one tab, logged in as `user`."""
    browser = browsers(name or user)
    tab = browser.tab()
    tab.log_in(user)
    return browser, tab


def test_two_tenants_in_two_browser_contexts_see_only_their_own_invoices(site, browsers, admin):
    alice_browser, bob_browser = browsers("alice"), browsers("bob")
    alice, bob = alice_browser.tab(), bob_browser.tab()
    alice.open()
    alice.screenshot("login-page")
    alice.log_in("alice")
    bob.log_in("bob")
    assert (alice.text("#user"), alice.text("#tenant")) == ("alice", str(TENANT_A))
    assert (bob.text("#user"), bob.text("#tenant")) == ("bob", str(TENANT_B))
    # Exactly its tenant's rows, as the database holds them (the seeded
    # ones and any a test before added), none of the other tenant's.
    seen_a, seen_b = alice.rows(), bob.rows()
    assert seen_a == tenant_rows(admin, TENANT_A) and len(seen_a) >= 3
    assert seen_b == tenant_rows(admin, TENANT_B) and len(seen_b) >= 5

    note = f"alice's new invoice {secrets.token_hex(4)}"
    alice.fill("#add-form input[name=amount]", "4242")
    alice.fill("#add-form input[name=note]", note)
    alice.click("#add-form button")
    alice.wait("text=Invoice added.")
    assert ("4242", note) in [(a, n) for _, a, n in alice.rows()]
    assert admin.execute("SELECT tenant_id FROM invoices WHERE note = %s", (note,)).fetchall() == [(TENANT_A,)]
    bob.click("#reload")
    assert bob.page() == "invoices"
    assert note not in [n for *_, n in bob.rows()] and bob.rows() == tenant_rows(admin, TENANT_B)
    alice.screenshot("invoices-page")
    bob.screenshot("invoices-page-other-tenant")

    # Every API request carried Authorization: DPoP and a proof of its
    # own: by the key the token is bound to, for its method and URL, with
    # the token's hash and a jti never used before.
    jtis = []
    requests = {"alice": alice_browser.requests(), "bob": bob_browser.requests()}
    for who, seen in requests.items():
        calls = api_calls(seen)
        assert ("GET", "/api/invoices", 200) in [(r["method"], r["path"], r["status"]) for r in calls], who
        for r in calls:
            token, proof = access_token(r), r["headers"]["dpop"]
            claims, head = payload(proof), header(proof)
            assert (head["typ"], head["alg"]) == ("dpop+jwt", "ES256") and "d" not in head["jwk"]
            assert (claims["htm"], claims["htu"], claims["ath"]) == (r["method"], site.origin + r["path"], ath(token))
            assert jwk.JWK(**head["jwk"]).thumbprint() == payload(token)["cnf"]["jkt"]
            jtis.append(claims["jti"])
        # The session is bound to that key in the database.
        revoked, _, jkt, _ = session(admin, session_id(calls[0]))
        assert not revoked and jkt == payload(access_token(calls[0]))["cnf"]["jkt"], who
    assert ("POST", "/api/invoices", 201) in [(r["method"], r["path"], r["status"]) for r in requests["alice"]]
    assert len(jtis) == len(set(jtis)) >= 5, "a proof was sent twice"

    # A reload keeps the session: the stored key and the cookie bring a new
    # access token, and no login page.
    before = access_token(api_calls(requests["alice"])[-1])
    assert alice.reload() == "invoices"
    after = alice_browser.requests()
    assert [(r["path"], r["status"]) for r in after if r["path"] == "/auth/refresh"] == [("/auth/refresh", 200)]
    assert access_token(api_calls(after)[-1]) != before and alice.rows() == tenant_rows(admin, TENANT_A)


# An injected script standing in for an XSS: it looks everywhere a page
# script can for the refresh token and the access token, takes the DPoP key
# from IndexedDB (through the app's own module, as any script of the
# origin could) and tries to export it, and calls the refresh endpoint.
XSS_SNOOP = """async () => {
  const strings = [];
  for (const name of Object.getOwnPropertyNames(window)) {
    try { if (typeof window[name] === 'string') strings.push(window[name]); } catch { /* a getter that throws */ }
  }
  // document.cookie shows the cookies of the document's path: a window of
  // the origin at the refresh path would show the refresh cookie, were it
  // readable by scripts at all.
  const there = window.open('/auth/refresh');
  await new Promise((resolve) => there.addEventListener('load', resolve));
  const found = { cookie: document.cookie + ' ' + there.document.cookie, html: document.documentElement.outerHTML,
                  globals: strings.join(' '), storage: JSON.stringify([{ ...localStorage }, { ...sessionStorage }]) };
  there.close();
  const { loadKey } = await import('/dpop.js');
  const pair = await loadKey();
  found.extractable = pair.privateKey.extractable;
  found.exports = {};
  for (const format of ['jwk', 'pkcs8']) {
    try { await crypto.subtle.exportKey(format, pair.privateKey); found.exports[format] = 'exported'; }
    catch (e) { found.exports[format] = e.name; }
  }
  const response = await fetch('/auth/refresh', { method: 'POST' });
  found.refresh = { status: response.status, body: await response.text() };
  return found;
}"""


def test_page_script_cannot_read_the_refresh_token_or_export_the_dpop_key(site, browsers, admin):
    browser, tab = logged_in(browsers, "alice", "xss")
    cookie = browser.cookie()
    assert cookie is not None and len(cookie["value"]) == 43
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"], cookie["path"]) == (
        True, True, "Strict", "/auth/refresh")
    token = access_token(api_calls(browser.requests())[-1])

    found = tab.evaluate(XSS_SNOOP)
    for where in ("cookie", "html", "globals", "storage"):
        # (booleans, so that a failure does not print the tokens)
        refresh_readable, access_readable = cookie["value"] in found[where], token in found[where]
        assert not refresh_readable, f"the refresh token is readable in {where}"
        assert not access_readable, f"the access token is readable in {where}"
    assert found["extractable"] is False
    assert found["exports"] == {"jwk": "InvalidAccessError", "pkcs8": "InvalidAccessError"}
    # The browser sent the cookie with the script's call, but a refresh
    # needs a proof, and the response carries no token.
    assert found["refresh"]["status"] == 400 and "access_token" not in found["refresh"]["body"]

    # Nothing of that touched the session: the user goes on.
    tab.click("#reload")
    assert tab.page() == "invoices"
    assert tab.rows() == tenant_rows(admin, TENANT_A)
    assert browser.cookie()["value"] == cookie["value"]
    assert not session(admin, payload(token)["sid"])[0]


def test_an_access_token_copied_out_of_the_page_is_refused_outside_the_browser(site, browsers, admin):
    browser, tab = logged_in(browsers, "bob", "replay")
    call = api_calls(browser.requests(), "GET")[-1]
    token, captured = access_token(call), call["headers"]["dpop"]
    assert payload(token)["exp"] - time.time() > 2, "the copied token is about to expire: the test is too slow"
    url = site.origin + "/api/invoices"
    thief = ProofKey("ES256")
    attempts = {
        "no proof": {"Authorization": f"DPoP {token}"},
        "as a bearer token": {"Authorization": f"Bearer {token}"},
        "the thief's own proof": {"Authorization": f"DPoP {token}", "DPoP": thief.proof("GET", url, token)},
        "the captured proof": {"Authorization": f"DPoP {token}", "DPoP": captured},
    }
    outcomes = {}
    for name, headers in attempts.items():
        status, response_headers, body = outside(site, "GET", "/api/invoices", headers)
        outcomes[name] = (status, body.get("error_description", ""))
        assert token not in json.dumps(body) and captured not in json.dumps(body)
        assert "invoices" not in body
    assert outcomes["no proof"][0] == 401 and "no DPoP header" in outcomes["no proof"][1]
    assert outcomes["as a bearer token"][0] == 401
    assert outcomes["the thief's own proof"][0] == 401 and "not the key" in outcomes["the thief's own proof"][1]
    assert outcomes["the captured proof"][0] == 401 and "used before" in outcomes["the captured proof"][1]
    # The database itself refuses the token without a proof, whatever an
    # app in front of it does.
    with psycopg.connect(site.cluster.dsn(user="app"), autocommit=True) as app:
        with pytest.raises(psycopg.Error) as e:
            app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
        assert e.value.sqlstate == "28000" and "needs a dpop proof" in str(e.value)

    # The owner's browser goes on with the same session.
    tab.click("#reload")
    assert tab.page() == "invoices"
    assert tab.rows() == tenant_rows(admin, TENANT_B)
    assert not session(admin, payload(token)["sid"])[0]


# The XSS again, now making a proof with the page's key for a request of
# its choosing: it cannot take the key away, but while the page is open it
# can use it, and hand the proof to a thief.
XSS_PROOF = """async ({ method, url }) => {
  const { loadKey, proof } = await import('/dpop.js');
  return proof(await loadKey(), method, url);
}"""


def test_a_stolen_refresh_token_used_after_the_victim_refreshed_revokes_the_family(site, browsers, admin):
    browser, tab = logged_in(browsers, "alice", "victim")
    stolen = browser.cookie()["value"]  # a copy of the browser's cookie store
    sid = session_id(api_calls(browser.requests())[-1])
    assert tab.reload() == "invoices"  # the victim's page refreshes: the stolen token is used up
    assert browser.cookie()["value"] != stolen
    refresh_url = site.origin + "/auth/refresh"

    def thief_refreshes(proof):
        return outside(site, "POST", "/auth/refresh",
                       {"Cookie": f"{COOKIE}={stolen}", "Origin": site.origin, "DPoP": proof})

    # Without the victim's key the stolen token is worth nothing, and the
    # thief cannot even end the victim's session with it.
    status, _, body = thief_refreshes(ProofKey("ES256").proof("POST", refresh_url))
    assert status == 401 and "not the key" in body["error_description"]
    assert session(admin, sid)[:2] == (False, None)

    # With a proof made by the victim's key (the XSS above), the used token
    # is presented again: reuse, and the whole family is revoked.
    status, headers, body = thief_refreshes(tab.evaluate(XSS_PROOF, {"method": "POST", "url": refresh_url}))
    assert status == 401 and "already used" in body["error_description"] and "access_token" not in body
    assert stolen not in json.dumps(body) and stolen not in str(headers)
    assert session(admin, sid)[:2] == (True, "refresh token reused")

    # The victim's next request: its access token is refused, so is the
    # refresh, and the login page shows.
    browser.requests()
    tab.click("#reload")
    assert tab.page() == "login"
    assert "session has ended" in tab.text("#login-message")
    seen = [(r["method"], r["path"], r["status"]) for r in browser.requests()]
    assert seen[:2] == [("GET", "/api/invoices", 401), ("POST", "/auth/refresh", 401)], seen
    tab.screenshot("session-ended")


LOGIN_PAGE_WATCH = """() => {
  window.loginPageShown = 0;
  new MutationObserver((changes) => {
    for (const c of changes) if (c.target.id === 'login-page' && !c.target.hidden) window.loginPageShown += 1;
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['hidden'] });
}"""


def test_an_expired_access_token_is_refreshed_silently(site, browsers, admin):
    browser = browsers("sleepy")
    browser.init_script(LOGIN_PAGE_WATCH)
    tab = browser.tab()
    tab.log_in("bob")
    tab.evaluate("() => { window.loginPageShown = 0; }")
    old = access_token(api_calls(browser.requests())[-1])
    time.sleep(max(0, payload(old)["exp"] - time.time()) + 1)  # the access token has expired

    note = f"after expiry {secrets.token_hex(4)}"
    tab.fill("#add-form input[name=amount]", "77")
    tab.fill("#add-form input[name=note]", note)
    tab.click("#add-form button")
    tab.wait("text=Invoice added.")
    assert ("77", note) in [(a, n) for _, a, n in tab.rows()]
    seen = browser.requests()
    assert [(r["method"], r["path"], r["status"]) for r in seen] == [
        ("POST", "/api/invoices", 401), ("POST", "/auth/refresh", 200),
        ("POST", "/api/invoices", 201), ("GET", "/api/invoices", 200)], seen
    # The database refused the old token as expired (the app's log line of that request).
    assert re.search(r"^POST /api/invoices 401 \d+ms 28000 token is expired", site.server_log(), re.M)
    new = access_token(seen[2])
    assert access_token(seen[0]) == old and new != old and payload(new)["sid"] == payload(old)["sid"]
    assert seen[0]["headers"]["dpop"] != seen[2]["headers"]["dpop"]
    assert tab.evaluate("() => window.loginPageShown") == 0, "the login page showed"
    assert admin.execute("SELECT tenant_id FROM invoices WHERE note = %s", (note,)).fetchall() == [(TENANT_B,)]
    assert session(admin, payload(old)["sid"])[::3] == (False, 2)  # one refresh: two refresh tokens


def test_two_tabs_refreshing_at_once_take_turns_and_keep_the_session(site, browsers, admin):
    browser, first = logged_in(browsers, "bob", "busy-tabs")
    second = browser.tab()
    second.open()
    assert second.page() == "invoices"
    calls = api_calls(browser.requests())
    sid = session_id(calls[-1])
    time.sleep(max(payload(access_token(r))["exp"] for r in calls) - time.time() + 1)  # both tokens expired

    # Both tabs find their token refused at the same moment and refresh:
    # the second waits for the first (a Web Lock) and presents the refresh
    # token the first got, instead of the same one again (which would be
    # reuse, and end the session).
    at = int(time.time() * 1000) + 500  # the same moment in both tabs, by their clock (this machine's)
    for tab in (first, second):
        tab.evaluate("(at) => { setTimeout(() => document.getElementById('reload').click(), at - Date.now()); }", at)
    time.sleep(max(0, at / 1000 - time.time()) + 0.2)
    first.idle()
    second.idle()
    assert (first.page(), second.page()) == ("invoices", "invoices")
    refreshes = [r["status"] for r in browser.requests() if r["path"] == "/auth/refresh"]
    assert refreshes == [200, 200], refreshes
    assert session(admin, sid)[:2] == (False, None) and session(admin, sid)[3] == 4  # login, 2nd tab, 2 refreshes


def test_a_wrong_password_or_an_unknown_user_is_refused_and_passwords_are_stored_as_scrypt_hashes(
        site, browsers, admin):
    tab = browsers("guesser").tab()
    sessions = "SELECT count(*) FROM jwt_rls.sessions WHERE sub = %s"
    alice_sessions = admin.execute(sessions, ("alice",)).fetchone()[0]
    for user, password in [("alice", "not-alice-s-password"), ("mallory", "no-such-user-here")]:
        tab.open()
        tab.fill("input[name=username]", user)
        tab.fill("input[name=password]", password)
        tab.click("#login-form button")
        assert tab.page() == "login" and tab.text("#login-message") == "Wrong user name or password."
    assert admin.execute(sessions, ("alice",)).fetchone()[0] == alice_sessions
    assert admin.execute(sessions, ("mallory",)).fetchone()[0] == 0
    for user, (_, password) in USERS.items():
        stored = admin.execute("SELECT password_hash FROM webapp.users WHERE username = %s", (user,)).fetchone()[0]
        assert stored.startswith("scrypt$17$8$1$") and password not in stored
    # The login service may read the hashes, the API role may not.
    with psycopg.connect(site.cluster.dsn(user="app"), autocommit=True) as app:
        with pytest.raises(psycopg.Error) as e:
            app.execute("SELECT password_hash FROM webapp.users")
        assert e.value.sqlstate == "42501"


def test_logout_ends_the_session_in_every_tab(site, browsers, admin):
    browser, first = logged_in(browsers, "alice", "tabs")
    second = browser.tab()
    second.open()  # a second tab of the same browser: the stored key and the cookie
    assert second.page() == "invoices"
    seen = browser.requests()
    sids = {session_id(r) for r in api_calls(seen)}
    assert len(sids) == 1, "the two tabs share one session"
    sid = sids.pop()

    first.click("#logout")
    assert first.page() == "login"
    assert "logged out" in first.text("#login-message")
    assert session(admin, sid)[0], "the session is ended in the database"
    assert browser.cookie() is None, "the refresh cookie is cleared"

    # The other tab still holds an access token in memory: the database
    # refuses it, the refresh fails, and it shows the login page.
    second.click("#reload")
    assert second.page() == "login"
    assert "session has ended" in second.text("#login-message")
    after = [(r["page"], r["method"], r["path"], r["status"]) for r in browser.requests()]
    assert (second.name, "GET", "/api/invoices", 401) in after and (second.name, "POST", "/auth/refresh", 401) in after
    # The key is gone from IndexedDB too: a new tab starts at the login page.
    assert second.evaluate("async () => (await (await import('/dpop.js')).loadKey()) === undefined") is True
    third = browser.tab()
    third.open()
    assert third.page() == "login"


def test_log_out_everywhere_ends_every_session_of_the_user(site, browsers, admin):
    laptop_browser, laptop = logged_in(browsers, "heidi", "laptop")
    phone_browser, phone = logged_in(browsers, "heidi", "phone")
    sids = {session_id(api_calls(b.requests())[-1]) for b in (laptop_browser, phone_browser)}
    assert len(sids) == 2
    laptop.click("#logout-everywhere")
    assert laptop.page() == "login"
    assert "every device" in laptop.text("#login-message")
    assert admin.execute("SELECT count(*) FROM jwt_rls.revoked_subjects WHERE sub = 'heidi'").fetchone()[0] == 1

    phone.click("#reload")
    assert phone.page() == "login"
    assert "session has ended" in phone.text("#login-message")
    assert [r["status"] for r in phone_browser.requests() if r["path"] in ("/api/invoices", "/auth/refresh")] == [401, 401]
    # A login after the cutoff (iat counts whole seconds) works again.
    time.sleep(1.1)
    phone.log_in("heidi")
    assert phone.rows() == tenant_rows(admin, TENANT_A)


class EvilSite(http.server.ThreadingHTTPServer):
    """Another site (http://localhost:<port>: another host than 127.0.0.1,
    so another site) with forms that post to the app."""

    def __init__(self, app_origin):
        forms = "".join(
            f'<form id="{name}" method="POST" action="{app_origin}{path}" enctype="{enctype}">{fields}'
            f'<button type="submit">{name}</button></form>'
            for name, path, enctype, fields in [
                ("refresh", "/auth/refresh", "application/x-www-form-urlencoded", ""),
                ("logout", "/auth/logout", "application/x-www-form-urlencoded", ""),
                ("invoice", "/api/invoices", "text/plain",
                 '<input name=\'{"amount": 666, "note": "csrf", "x": "\' value=\'"}\'>')])
        page = f"<!doctype html><title>win a prize</title>{forms}".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_a_cross_site_form_post_is_refused(site, browsers, admin):
    browser, tab = logged_in(browsers, "bob", "csrf")
    sid = session_id(api_calls(browser.requests())[-1])
    tokens_before = session(admin, sid)[3]
    evil = EvilSite(site.origin)
    try:
        attacker = browser.tab()  # the victim opens the other site in the same browser
        outcomes = {}
        for form in ("refresh", "logout", "invoice"):
            browser.driver("goto", page=attacker.name, url=evil.origin + "/")
            attacker.click(f"#{form} button")
            browser.driver("waitForUrl", page=attacker.name, url=f"{site.origin}/**")
            posted = [r for r in browser.requests() if r["method"] == "POST" and r["origin"] == site.origin]
            assert len(posted) == 1, posted
            outcomes[form] = (posted[0]["status"], posted[0]["headers"].get("origin"), "cookie" in posted[0]["headers"])
            if form == "refresh":
                attacker.screenshot("cross-site-post-refused")
    finally:
        evil.shutdown()
        evil.server_close()
    # Refused on Origin, and SameSite=Strict kept the cookie off them anyway.
    assert outcomes == {form: (403, evil.origin, False) for form in ("refresh", "logout", "invoice")}, outcomes
    assert admin.execute("SELECT count(*) FROM invoices WHERE note = 'csrf'").fetchone()[0] == 0
    assert session(admin, sid)[0] is False and session(admin, sid)[3] == tokens_before

    # The Origin check does not rest on SameSite: the victim's real cookie,
    # sent from outside the browser with another Origin or none, is refused
    # before anything else (403, not the 400 of a missing proof).
    cookie = {"Cookie": f"{COOKIE}={browser.cookie()['value']}"}
    for extra in ({"Origin": evil.origin}, {}, {"Origin": site.origin, "Sec-Fetch-Site": "cross-site"}):
        status, _, body = outside(site, "POST", "/auth/refresh", {**cookie, **extra})
        assert (status, body["error"]) == (403, "cross_origin"), extra
    assert session(admin, sid)[3] == tokens_before

    # And the victim is still logged in.
    tab.click("#reload")
    assert tab.page() == "invoices"
    assert tab.rows() == tenant_rows(admin, TENANT_B)


def test_no_token_proof_refresh_token_or_password_reaches_a_log(site, browsers, admin):
    browser, tab = logged_in(browsers, "alice", "logs")
    assert tab.reload() == "invoices"  # a refresh
    seen = browser.requests()
    replayed = api_calls(seen)[-1]
    outside(site, "GET", "/api/invoices", {"Authorization": replayed["headers"]["authorization"],
                                           "DPoP": replayed["headers"]["dpop"]})  # refused: a logged error
    secrets_seen = {USERS["alice"][1], browser.cookie()["value"]}
    for r in seen:
        h = r["headers"]
        secrets_seen.update(filter(None, [h.get("dpop"), h.get("authorization", "").removeprefix("DPoP ")]))
        secrets_seen.update(c.split("=", 1)[1] for c in h.get("cookie", "").split("; ") if "=" in c)
    assert len(secrets_seen) >= 6, secrets_seen.__len__()
    # Each whole, and each segment of a JWT of 20 characters or more.
    pieces = {p for s in secrets_seen for p in [s, *s.split(".")] if len(p) >= 20}
    logs = {"app": site.server_log(), "postgres": site.cluster.server_log(),
            "pgbouncer (app)": site.apps.read_log(), "pgbouncer (login)": site.logins.read_log()}
    assert "GET /api/invoices 401" in logs["app"] and "used before" in logs["app"]
    leaked = {name: [p[:12] for p in pieces if p in text] for name, text in logs.items()}
    assert leaked == {name: [] for name in logs}, leaked
