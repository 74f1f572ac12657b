"""Faults, for real: servers killed in the middle of the token lifecycle's
writes, and what the database holds afterwards. A backend is killed with
SIGKILL by its pid (the postmaster then ends every other backend and
restarts them all: crash recovery), or the whole server is stopped with
`pg_ctl -m immediate`. A backend is made to stop in the middle of its
transaction by a test-only trigger on one of the extension's tables that
calls pg_sleep() for connections named `fault-victim` only.

- A refresh rotation killed between its steps changes nothing: the old
  refresh token still refreshes, once; the pair being issued never exists;
  killed right after its commit (the reply never read), the new pair is
  issued and the old token is spent.
- A reuse revocation killed in its middle revokes nothing (the reused token
  presented again then revokes the whole family); killed after its commit,
  all of it.
- Key and revocation changes committed before a backend crash, or before an
  immediate shutdown of a primary with a synchronous hot standby, are in
  force afterwards in every new backend and on the standby; those of a
  transaction still open at that moment are not.
- The JWKS worker killed while it waits for a slow server: the keys it had
  stay in force, and the restarted worker fetches again.

Every test starts and removes its own servers (the first two share one
cluster, on which the trigger is dropped after each test)."""

import contextlib
import hashlib
import json
import os
import signal
import threading
import time

import psycopg
import pytest

from support import b64url, error
from support.jwks_server import JwksServer
from support.pgcluster import Cluster, wait_for
from support.schema import ROWS, SCHEMA, TENANT_A, authenticate, insert_invoices
from support.tokens import AUDIENCE, ISSUER, Signer

VICTIM = "fault-victim"  # the application_name the pause trigger stops
READY = "database system is ready to accept connections"
REFRESH = "CALL jwt_rls.refresh(%s)"
REFUSED = "28000"

# Sleeps in any row trigger it is attached to, for the victim's connection
# only (the rotation runs as the extension owner, with search_path pinned
# to pg_catalog: everything here is found there).
PAUSE_FUNCTION = f"""
CREATE FUNCTION public.fault_pause() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('application_name') = '{VICTIM}' THEN
        PERFORM pg_sleep(60);
    END IF;
    RETURN NULL;
END
$$"""


def sha256(token):
    return hashlib.sha256(token.encode()).digest()


def admin(c):
    return psycopg.connect(c.dsn(), autocommit=True)


def crash(c, pid):
    """kill -9 of one server process; returns the seconds until the
    postmaster has restarted every backend and accepts connections again."""
    ready = c.server_log().count(READY)
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: c.server_log().count(READY) > ready, 60), "no restart after the kill"
    assert f"(PID {pid}) was terminated by signal 9" in c.server_log()
    with admin(c) as conn:  # accepting connections, not just logged so
        conn.execute("SELECT 1")
    return time.monotonic() - started


def paused(c, timeout=20):
    """The pid of the victim once it sleeps in the pause trigger."""
    found = []

    def look():
        with admin(c) as conn:
            found[:] = [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event = 'PgSleep'",
                (VICTIM,))]
        return bool(found)

    assert wait_for(look, timeout), "the victim never reached the pause trigger"
    return found[0]


@contextlib.contextmanager
def pause_trigger(c, table, event, when="true"):
    """A row trigger on `table` that stops the victim's connection (AFTER
    `event`, WHEN `when`); dropped on the way out, after any crash."""
    with admin(c) as conn:
        conn.execute(f"CREATE TRIGGER fault_pause AFTER {event} ON {table} FOR EACH ROW "
                     f"WHEN ({when}) EXECUTE FUNCTION public.fault_pause()")
    try:
        yield
    finally:
        with admin(c) as conn:
            conn.execute(f"DROP TRIGGER fault_pause ON {table}")


class Victim:
    """Runs `sql` as the login service in a connection named VICTIM, in a
    thread: afterwards `row` is what it returned, `error` what it raised."""

    def __init__(self, c, sql, params):
        self.row = self.error = None

        def run():
            try:
                with psycopg.connect(c.dsn(user="login_svc", application_name=VICTIM), autocommit=True) as conn:
                    self.row = conn.execute(sql, params).fetchone()
            except psycopg.Error as e:
                self.error = e

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def join(self):
        self.thread.join(30)
        assert not self.thread.is_alive()


def send_unread(c, sql, param):
    """Sends `sql` (one text parameter) as the login service and never
    reads the reply: the connection and its server pid."""
    conn = psycopg.connect(c.dsn(user="login_svc"), autocommit=True)
    conn.pgconn.send_query_params(sql.replace("%s", "$1").encode(), [param.encode()])  # libpq's own placeholder
    while conn.pgconn.flush():  # psycopg's libpq connection is non-blocking
        time.sleep(0.01)
    return conn, conn.info.backend_pid


@pytest.fixture(scope="module")
def faults():
    """A cluster of this module's own: the two-tenant schema, a login
    service as in test_sessions.py, a signing key and the pause function."""
    c = Cluster().start()
    try:
        with admin(c) as conn:
            conn.execute(SCHEMA)
            with conn.cursor() as cur:
                insert_invoices(cur)
            conn.execute("CREATE ROLE login_svc LOGIN")
            conn.execute("GRANT USAGE ON SCHEMA jwt_rls TO login_svc")
            conn.execute("GRANT EXECUTE ON FUNCTION jwt_rls.start_session(text, jsonb), "
                         "jwt_rls.rotate_refresh_token(text) TO login_svc")
            conn.execute("GRANT EXECUTE ON PROCEDURE jwt_rls.refresh(text, text, text, uuid) TO login_svc")
            conn.execute("SELECT jwt_rls.generate_signing_key('faults-es256', 'ES256')")
            conn.execute(PAUSE_FUNCTION)
        yield c
    finally:
        c.remove()


@contextlib.contextmanager
def reuse_grace(c, seconds):
    """jwt_rls.refresh_reuse_grace for the login service's new connections."""
    with admin(c) as conn:
        conn.execute(f"ALTER ROLE login_svc SET jwt_rls.refresh_reuse_grace = {seconds}")
    try:
        yield
    finally:
        with admin(c) as conn:
            conn.execute("ALTER ROLE login_svc RESET jwt_rls.refresh_reuse_grace")


def login(c, sub):
    with psycopg.connect(c.dsn(user="login_svc"), autocommit=True) as conn:
        return conn.execute("SELECT * FROM jwt_rls.start_session(%s, %s::jsonb)",
                            (sub, json.dumps({"tenant_id": str(TENANT_A), "aud": AUDIENCE, "iss": ISSUER}))
                            ).fetchone()


def refresh(c, token):
    """(access, refresh, sid) of a refresh, or the SQLSTATE and message."""
    with psycopg.connect(c.dsn(user="login_svc"), autocommit=True) as conn:
        try:
            return conn.execute(REFRESH, (token,)).fetchone()
        except psycopg.Error as e:
            return e.sqlstate, e.diag.message_primary


def family(c, sid):
    """What the database holds of session `sid`: its row, and its refresh
    tokens' rows (hash, issued_at, used_at, successor) in hash order."""
    with admin(c) as conn:
        session = conn.execute("SELECT sub, last_used_at, revoked_at, revoked_reason FROM jwt_rls.sessions "
                               "WHERE id = %s", (sid,)).fetchone()
        tokens = conn.execute("SELECT hash, issued_at, used_at, successor FROM jwt_rls.refresh_tokens "
                              "WHERE session_id = %s ORDER BY hash", (sid,)).fetchall()
        return session, tokens


def total_refresh_tokens(c):
    with admin(c) as conn:
        return conn.execute("SELECT count(*) FROM jwt_rls.refresh_tokens").fetchone()[0]


def binds_everywhere(c, access, n=3):
    """authenticate()'s outcome for `access` in n new backends: the set of
    answers (rows seen, or the SQLSTATE)."""
    outcomes = set()
    for _ in range(n):
        with psycopg.connect(c.dsn(user="app"), autocommit=True) as app:
            outcomes.add(authenticate(app, access))
    return outcomes


# 1. Refresh rotation ------------------------------------------------------

def test_a_rotation_killed_between_its_steps_changes_nothing(faults):
    c = faults
    a1, r1, sid = login(c, "rotation-killed")
    before = family(c, sid)
    assert [t[0] for t in before[1]] == [sha256(r1)] and before[1][0][2] is None
    count = total_refresh_tokens(c)
    # The victim stops right after inserting the successor's row: the old
    # token is marked used and the session touched, in its open transaction.
    with pause_trigger(c, "jwt_rls.refresh_tokens", "INSERT"):
        victim = Victim(c, REFRESH, (r1,))
        pid = paused(c)
        assert family(c, sid) == before, "another backend sees nothing of the rotation in progress"
        assert total_refresh_tokens(c) == count
        recovery = crash(c, pid)
        victim.join()
    assert victim.row is None and victim.error is not None, "the dying refresh returned no pair"

    # Nothing of it happened: the same rows, no successor anywhere.
    assert family(c, sid) == before
    assert total_refresh_tokens(c) == count, "the pair being issued when it died does not exist"
    assert binds_everywhere(c, a1) == {ROWS[TENANT_A]}
    # The old refresh token is still valid: it refreshes once...
    a2, r2, sid2 = refresh(c, r1)
    assert sid2 == sid and r2 != r1 and a2 != a1
    session, tokens = family(c, sid)
    assert session[2] is None
    assert {t[0]: t[2] is None for t in tokens} == {sha256(r1): False, sha256(r2): True}
    assert binds_everywhere(c, a2) == {ROWS[TENANT_A]}
    # ...and never again: old and new are never both usable.
    state, message = refresh(c, r1)
    assert state == REFUSED and "already used" in message
    assert refresh(c, r2)[0] == REFUSED, "the reuse revoked the family"
    print(f"\nrotation killed mid-transaction: backend killed in the successor's INSERT, back in {recovery:.1f} s; "
          f"same {len(before[1])} refresh-token row, old token refreshed once, then reuse")


@pytest.mark.parametrize("grace", [0, 30])
def test_a_rotation_killed_after_its_commit_issued_the_pair_and_spent_the_old_token(faults, grace):
    c = faults
    with reuse_grace(c, grace):
        a1, r1, sid = login(c, f"rotation-committed-{grace}")
        before = family(c, sid)
        conn, pid = send_unread(c, REFRESH, r1)
        try:
            # Killed once the rotation is committed, before the client reads the reply.
            assert wait_for(lambda: len(family(c, sid)[1]) == 2, 20), "the rotation never committed"
            recovery = crash(c, pid)
        finally:
            conn.close()
        session, tokens = family(c, sid)
        assert session[2] is None and session[1] > before[0][1], "the session was touched, not revoked"
        used = {t[0]: t[2] is not None for t in tokens}
        assert used.pop(sha256(r1)) is True, "the old refresh token is spent"
        assert list(used.values()) == [False], "one new refresh token, unused"
        (issued,) = used
        if grace:
            # The client's retry within the grace period (the documented
            # answer to a lost reply) gets the very pair that was committed.
            a2, r2, sid2 = refresh(c, r1)
            assert sid2 == sid and sha256(r2) == issued
            assert binds_everywhere(c, a2) == {ROWS[TENANT_A]}
            a3, r3, _ = refresh(c, r2)
            assert binds_everywhere(c, a3) == {ROWS[TENANT_A]}
        # Outside the grace period (or once its successor is used) the old
        # token presented again is reuse: the family is revoked.
        state, message = refresh(c, r1)
        assert state == REFUSED and "already used" in message
        assert family(c, sid)[0][3] == "refresh token reused"
        assert binds_everywhere(c, a1) == {REFUSED}
    print(f"\nrotation killed after its commit (reuse grace {grace} s): back in {recovery:.1f} s; the new pair was "
          f"stored, the old token spent" + ("; the retry returned the stored pair" if grace else "; reuse revoked"))


# 2. Reuse revocation ------------------------------------------------------

def spent_family(c, sub):
    """A session refreshed twice under a reuse grace period: r1 is spent
    and its successor used (presenting r1 is reuse), r2 keeps r3 as its
    successor (the row the revocation clears second)."""
    a1, r1, sid = login(c, sub)
    a2, r2, _ = refresh(c, r1)
    a3, r3, _ = refresh(c, r2)
    return sid, (a1, a2, a3), (r1, r2, r3)


def test_a_reuse_revocation_killed_in_its_middle_revokes_nothing(faults):
    c = faults
    with reuse_grace(c, 30):
        sid, access, (r1, r2, r3) = spent_family(c, "reuse-killed")
        before = family(c, sid)
        assert [t[3] is not None for t in before[1]].count(True) == 1, "r2 keeps its successor"
        # The victim stops after revoking the session row, while it clears
        # the kept successor (the revocation's second statement), uncommitted.
        with pause_trigger(c, "jwt_rls.refresh_tokens", "UPDATE",
                           "OLD.successor IS NOT NULL AND NEW.successor IS NULL"):
            victim = Victim(c, REFRESH, (r1,))
            pid = paused(c)
            assert family(c, sid) == before
            recovery = crash(c, pid)
            victim.join()
        assert victim.row is None and victim.error is not None

        # Nothing of the family was revoked: the same rows, every access
        # token binds in new backends, the current refresh token refreshes.
        assert family(c, sid) == before
        assert before[0][2] is None and before[0][3] is None
        for a in access:
            assert binds_everywhere(c, a) == {ROWS[TENANT_A]}
        a4, r4, _ = refresh(c, r3)
        assert binds_everywhere(c, a4) == {ROWS[TENANT_A]}
        # The reused token presented again revokes all of it.
        state, message = refresh(c, r1)
        assert state == REFUSED and "already used" in message
        session, tokens = family(c, sid)
        assert session[2] is not None and session[3] == "refresh token reused"
        assert all(t[3] is None for t in tokens), "no successor kept in clear"
        for a in (*access, a4):
            assert binds_everywhere(c, a) == {REFUSED}
        for r in (r3, r4):
            assert refresh(c, r)[0] == REFUSED
    print(f"\nreuse revocation killed between its statements: back in {recovery:.1f} s; nothing revoked "
          f"({len(before[1])} token rows unchanged, the current token refreshed); presented again, all revoked")


def test_a_reuse_revocation_killed_after_its_commit_revoked_all_of_it(faults):
    c = faults
    with reuse_grace(c, 30):
        sid, access, (r1, r2, r3) = spent_family(c, "reuse-committed")
        conn, pid = send_unread(c, REFRESH, r1)
        try:
            assert wait_for(lambda: family(c, sid)[0][2] is not None, 20), "the revocation never committed"
            recovery = crash(c, pid)
        finally:
            conn.close()
        session, tokens = family(c, sid)
        assert session[3] == "refresh token reused"
        assert len(tokens) == 3 and all(t[3] is None for t in tokens), "every kept successor cleared with it"
        for a in access:
            assert binds_everywhere(c, a) == {REFUSED}
        for r in (r1, r2, r3):
            assert refresh(c, r)[0] == REFUSED
    print(f"\nreuse revocation killed after its commit: back in {recovery:.1f} s; session revoked, "
          f"{len(tokens)} successors cleared, {len(access)} access tokens and every refresh token refused")


# 3. Key and revocation changes -------------------------------------------

class KeyChanges:
    """Keys and tokens for one run: committed changes (a key added, one
    disabled, one removed, a jti and a subject revoked) and the same kinds
    left in an open transaction; `expected` is what each token must get."""

    def __init__(self):
        self.keep, self.disabled, self.removed = Signer("keep", "HS256"), Signer("disabled", "ES256"), \
            Signer("removed", "EdDSA")
        self.added, self.spare, self.never = Signer("added", "RS256"), Signer("spare", "ES256"), \
            Signer("never", "ES256")
        past = int(time.time()) - 5  # issued before either subject cutoff
        k = self.keep
        self.tokens = {
            "keep": k.token(TENANT_A, ttl=3600),
            "added (committed)": self.added.token(TENANT_A, ttl=3600),
            "disabled (committed)": self.disabled.token(TENANT_A, ttl=3600),
            "removed (committed)": self.removed.token(TENANT_A, ttl=3600),
            "jti revoked (committed)": k.token(TENANT_A, ttl=3600, jti="gone-jti"),
            "subject revoked (committed)": k.token(TENANT_A, ttl=3600, sub="gone-sub", iat=past, nbf=past),
            "added (uncommitted)": self.never.token(TENANT_A, ttl=3600),
            "disabled (uncommitted)": self.spare.token(TENANT_A, ttl=3600),
            "jti revoked (uncommitted)": k.token(TENANT_A, ttl=3600, jti="kept-jti"),
            "subject revoked (uncommitted)": k.token(TENANT_A, ttl=3600, sub="kept-sub", iat=past, nbf=past),
        }
        # Refused: what a committed change takes away, and a key whose
        # adding never committed. Everything else binds.
        refused = {"disabled (committed)", "removed (committed)", "jti revoked (committed)",
                   "subject revoked (committed)", "added (uncommitted)"}
        self.expected = {name: REFUSED if name in refused else ROWS[TENANT_A] for name in self.tokens}

    def install(self, conn):
        with conn.cursor() as cur:
            for s in (self.keep, self.disabled, self.removed, self.spare):
                s.install(cur)

    def commit_changes(self, conn):
        """Each change in a transaction of its own (autocommit)."""
        with conn.cursor() as cur:
            self.added.install(cur)
        conn.execute("SELECT jwt_rls.disable_key('disabled')")
        conn.execute("SELECT jwt_rls.remove_key('removed')")
        conn.execute("SELECT jwt_rls.revoke_jti('gone-jti', now() + interval '2 hours')")
        conn.execute("SELECT jwt_rls.revoke_subject('gone-sub')")

    def open_changes(self, conn):
        """The same kinds of change in one transaction left open."""
        conn.execute("BEGIN")
        with conn.cursor() as cur:
            self.never.install(cur)
        conn.execute("SELECT jwt_rls.disable_key('spare')")
        conn.execute("SELECT jwt_rls.revoke_jti('kept-jti', now() + interval '2 hours')")
        conn.execute("SELECT jwt_rls.revoke_subject('kept-sub')")

    def outcomes(self, conn):
        return {name: authenticate(conn, token) for name, token in self.tokens.items()}

    def check(self, c, where, n=4):
        """The expected outcome for every token in n new backends."""
        for _ in range(n):
            with psycopg.connect(c.dsn(user="app"), autocommit=True) as app:
                assert self.outcomes(app) == self.expected, where


def test_key_and_revocation_changes_committed_before_a_backend_crash_hold_after_it(faults):
    c = faults
    changes = KeyChanges()
    with admin(c) as conn:
        changes.install(conn)
        changes.commit_changes(conn)
    # closing(): leaving `with` on a connection would commit (never here).
    with contextlib.closing(psycopg.connect(c.dsn(application_name=VICTIM), autocommit=True)) as victim:
        changes.open_changes(victim)
        pid = victim.info.backend_pid
        changes.check(c, "before the crash", n=1)
        recovery = crash(c, pid)
    changes.check(c, "after crash recovery")
    with admin(c) as conn:
        keys = dict(conn.execute("SELECT kid, enabled FROM jwt_rls.keys WHERE kid IN "
                                 "('keep', 'disabled', 'removed', 'added', 'spare', 'never')").fetchall())
        jtis = {r[0] for r in conn.execute("SELECT jti FROM jwt_rls.revoked_tokens")}
        subs = {r[0] for r in conn.execute("SELECT sub FROM jwt_rls.revoked_subjects")}
    assert keys == {"keep": True, "disabled": False, "added": True, "spare": True}
    assert {"gone-jti"} <= jtis and "kept-jti" not in jtis
    assert "gone-sub" in subs and "kept-sub" not in subs
    print(f"\nkey changes and a backend crash: back in {recovery:.1f} s; {len(changes.tokens)} tokens as expected "
          "in 4 new backends (5 committed changes in force, 4 uncommitted ones not)")


def test_key_and_revocation_changes_committed_before_an_immediate_shutdown_hold_on_primary_and_standby():
    """The standby is synchronous (synchronous_commit = remote_apply): a
    commit the client saw is applied there, so it holds on the standby
    while the primary is down, and on the restarted primary."""
    changes = KeyChanges()
    primary = Cluster(conf=["wal_level = replica", "max_wal_senders = 4"]).start()
    standby = None
    try:
        with admin(primary) as conn:
            conn.execute(SCHEMA)
            with conn.cursor() as cur:
                insert_invoices(cur)
            changes.install(conn)
        standby = Cluster(init=False)
        standby.start_as_standby_of(primary, ["wal_retrieve_retry_interval = 200ms"], fast_checkpoint=True)
        with admin(primary) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
            conn.execute("SELECT pg_reload_conf()")
            assert wait_for(lambda: conn.execute("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
                                                 ).fetchone()[0] == 1, 30)
        with psycopg.connect(standby.dsn(user="app"), autocommit=True) as opened_before:
            assert authenticate(opened_before, changes.tokens["disabled (committed)"]) == ROWS[TENANT_A]
            with admin(primary) as conn, contextlib.closing(psycopg.connect(primary.dsn(), autocommit=True)) as open_tx:
                changes.commit_changes(conn)
                changes.open_changes(open_tx)
                primary.stop("immediate")
            # The primary is down: the standby holds every committed change,
            # in a connection opened before them and in new ones.
            assert changes.outcomes(opened_before) == changes.expected
            changes.check(standby, "on the standby, primary down")
        primary.start()
        changes.check(primary, "on the restarted primary")
        with admin(primary) as conn, admin(standby) as sb:
            target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            assert wait_for(lambda: sb.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                               (target,)).fetchone()[0], 30), "the standby follows again"
        changes.check(standby, "on the standby, following the restarted primary")
        log = primary.server_log()
        assert "received immediate shutdown request" in log and "not properly shut down" in log
    finally:
        if standby:
            standby.remove()
        primary.remove()
    print(f"\nkey changes and an immediate shutdown: {len(changes.tokens)} tokens as expected on the standby "
          "(primary down: one connection opened before, 4 new) and the restarted primary (4 new); "
          "uncommitted changes in force nowhere")


# 4. The JWKS worker -------------------------------------------------------

def jwk_of(signer):
    """The public JWK of an RS256 Signer, as a provider publishes it."""
    n = signer.key.public_key().public_numbers()
    size = lambda v: (v.bit_length() + 7) // 8  # noqa: E731
    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": signer.kid,
            "n": b64url(n.n.to_bytes(size(n.n), "big")), "e": b64url(n.e.to_bytes(size(n.e), "big"))}


def test_the_jwks_worker_killed_mid_fetch_keeps_the_keys_and_fetches_again():
    server = JwksServer()
    old, new = Signer("provider-old", "RS256"), Signer("provider-new", "RS256")
    server.keys = [jwk_of(old)]
    server.slow_seconds = 3
    c = Cluster(conf=["shared_preload_libraries = 'jwt_rls'", "jwt_rls.jwks_database = 'postgres'",
                      f"jwt_rls.jwks_ca_file = '{server.ca_file}'", "jwt_rls.jwks_refresh_interval = 1",
                      "jwt_rls.jwks_timeout = 20"]).start()
    try:
        with admin(c) as conn:
            conn.execute("CREATE EXTENSION jwt_rls")
            conn.execute(f"ALTER DATABASE postgres SET jwt_rls.issuer = '{server.issuer}'")
            conn.execute(f"ALTER DATABASE postgres SET jwt_rls.audience = '{AUDIENCE}'")
            conn.execute("CREATE ROLE app LOGIN")
            conn.execute("GRANT USAGE ON SCHEMA jwt_rls TO app")
            conn.execute("INSERT INTO jwt_rls.jwks_sources (issuer) VALUES (%s)", (server.issuer,))

        def keys():
            with admin(c) as conn:
                return {kid: (enabled, state) for kid, enabled, state in
                        conn.execute("SELECT kid, enabled, source_state FROM jwt_rls.keys")}

        def worker():
            with admin(c) as conn:
                return [r[0] for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'jwt_rls JWKS refresh'")]

        def binds(signer):
            with psycopg.connect(c.dsn(user="app"), autocommit=True) as app:
                e = error(app, "SELECT jwt_rls.authenticate(%s)", (signer.token(TENANT_A, iss=server.issuer),))
                return None if e is None else e.sqlstate

        assert wait_for(lambda: keys() == {old.kid: (True, "listed")}, 20), keys()
        assert binds(old) is None
        # Slow: every request from here on sleeps 3 s before its answer.
        # Once the worker waits in one, its answer will list a new key.
        server.mode = "slow"
        asked = server.requests
        assert wait_for(lambda: server.requests > asked, 10, step=0.02), "the worker never fetched again"
        waiting = time.monotonic()
        server.keys = [jwk_of(old), jwk_of(new)]
        with admin(c) as conn:
            status = conn.execute("SELECT last_success, failures FROM jwt_rls.jwks_sources").fetchone()
        (pid,) = worker()
        assert time.monotonic() - waiting < server.slow_seconds - 1, "killed while the answer is still due"
        recovery = crash(c, pid)
        at_kill = server.requests

        # The keys it had stay in force; nothing of the fetch it died in.
        assert keys() == {old.kid: (True, "listed")}
        assert binds(old) is None
        assert binds(new) == REFUSED
        with admin(c) as conn:
            assert conn.execute("SELECT last_success, failures FROM jwt_rls.jwks_sources").fetchone() == status
        # A new worker fetches again; once the server answers, the new key arrives.
        assert wait_for(lambda: server.requests > at_kill, 30), "no fetch after the restart"
        restarted = worker()
        assert len(restarted) == 1 and restarted != [pid]
        server.mode = "ok"
        assert wait_for(lambda: keys().get(new.kid) == (True, "listed"), 20), keys()
        assert keys()[old.kid] == (True, "listed")
        assert binds(new) is None and binds(old) is None
    finally:
        c.remove()
        server.stop()
    print(f"\nJWKS worker killed mid-fetch: back in {recovery:.1f} s; the old key kept and verifying, "
          f"{server.requests - at_kill} requests by the restarted worker, the new key fetched")
