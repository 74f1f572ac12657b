"""Sessions with refresh tokens kept server-side: login, rotation, reuse
detection that revokes the whole family with its live access tokens,
logout, lifetime and idle timeout, hostile input, privileges, and the
whole flow through PgBouncer in transaction mode."""

import hashlib
import json
import re
import threading
import time

import jwt
import psycopg
import pytest

from support import sqlstate
from support.pgbouncer import PgBouncer
from support.schema import TENANT_A, tenants

REFRESH = "CALL jwt_rls.refresh(%s)"


@pytest.fixture(scope="module")
def login(cluster, db):
    """A login service: EXECUTE on the session functions and nothing else."""
    db.execute("DROP ROLE IF EXISTS login_svc")
    db.execute("CREATE ROLE login_svc LOGIN")
    db.execute("GRANT USAGE ON SCHEMA jwt_rls TO login_svc")
    db.execute("GRANT EXECUTE ON FUNCTION jwt_rls.start_session(text, jsonb), jwt_rls.rotate_refresh_token(text), "
               "jwt_rls.end_session(uuid), jwt_rls.end_sessions(text) TO login_svc")
    db.execute("GRANT EXECUTE ON PROCEDURE jwt_rls.refresh(text, text, text, uuid) TO login_svc")
    with psycopg.connect(cluster.dsn()) as admin:
        if not admin.execute("SELECT count(*) FROM jwt_rls.signing_keys").fetchone()[0]:
            admin.execute("SELECT jwt_rls.generate_signing_key('session-es256', 'ES256')")
        admin.commit()
    with psycopg.connect(cluster.dsn(user="login_svc"), autocommit=True) as conn:
        yield conn


def start(login, sub="user-1", claims=None):
    claims = {"tenant_id": str(TENANT_A), "aud": "invoices-api", **(claims or {})}
    return login.execute("SELECT * FROM jwt_rls.start_session(%s, %s::jsonb)", (sub, json.dumps(claims))).fetchone()


def refresh(login, token):
    return login.execute(REFRESH, (token,)).fetchone()


def refusal(login, token):
    """The SQLSTATE refreshing `token` fails with (called as its own
    transaction, as refresh must be), or None."""
    try:
        refresh(login, token)
    except psycopg.Error as e:
        return e.sqlstate
    return None


def works(conn, access):
    """Whether `access` binds and shows its tenant's rows, in one transaction."""
    try:
        with conn.transaction():
            conn.execute("SELECT jwt_rls.authenticate(%s)", (access,))
            return tenants(conn) == {TENANT_A}
    except psycopg.Error as e:
        assert e.sqlstate == "28000", e
        return False


def test_login_issues_an_access_token_and_a_refresh_token_stored_only_as_a_hash(db, app, login):
    access, refresh_token, sid = start(login, claims={"role": "member"})
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", refresh_token)
    claims = jwt.decode(access, options={"verify_signature": False})
    assert (claims["sub"], claims["sid"], claims["role"]) == ("user-1", str(sid), "member")
    assert works(app, access)
    stored = db.execute("SELECT hash FROM jwt_rls.refresh_tokens WHERE session_id = %s", (sid,)).fetchall()
    assert stored == [(hashlib.sha256(refresh_token.encode()).digest(),)]
    dump = db.execute("SELECT (SELECT json_agg(r)::text FROM jwt_rls.refresh_tokens r) || "
                      "(SELECT json_agg(s)::text FROM jwt_rls.sessions s)").fetchone()[0]
    assert refresh_token not in dump


def test_refresh_rotates_and_reuse_revokes_the_whole_family(cluster, app, login):
    access1, r1, sid = start(login)
    access2, r2, sid2 = refresh(login, r1)
    assert sid2 == sid and r2 != r1 and access2 != access1
    access3, r3, _ = refresh(login, r2)
    assert works(app, access1) and works(app, access3)
    # A thief replays r1: the call fails, and the session is revoked (committed).
    with pytest.raises(psycopg.Error) as e:
        refresh(login, r1)
    assert e.value.sqlstate == "28000" and "already used" in e.value.diag.message_primary
    assert r1 not in str(e.value) and r1 not in (e.value.diag.message_detail or "")
    # Every access token of the family is refused, in this backend and a new one.
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as other:
        for conn in (app, other):
            assert not works(conn, access1) and not works(conn, access3)
    # The newest refresh token is dead too.
    assert refusal(login, r3) == "28000"
    # Another session of the same user is unaffected.
    access4, r4, _ = start(login)
    assert works(app, access4)
    assert refresh(login, r4)[0]


def race(cluster, token, n):
    """n clients refresh `token` at the same moment: (outcome, row) each,
    outcome "ok" or the SQLSTATE."""
    barrier = threading.Barrier(n)
    outcomes = []

    def racer():
        with psycopg.connect(cluster.dsn(user="login_svc"), autocommit=True) as conn:
            barrier.wait()
            try:
                outcomes.append(("ok", conn.execute(REFRESH, (token,)).fetchone()))
            except psycopg.Error as e:
                outcomes.append((e.sqlstate, None))

    threads = [threading.Thread(target=racer) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_two_concurrent_refreshes_of_one_token_exactly_one_wins(cluster, login):
    _, token, _ = start(login)
    outcomes = race(cluster, token, 2)
    assert sorted(o for o, _ in outcomes) == ["28000", "ok"], outcomes


def test_logout_of_one_session_and_of_every_session(app, login):
    a1, r1, s1 = start(login, sub="user-logout")
    a2, r2, s2 = start(login, sub="user-logout")
    a3, _, _ = start(login, sub="bystander")
    assert login.execute("SELECT jwt_rls.end_session(%s)", (s1,)).fetchone()[0] is True
    assert not works(app, a1) and works(app, a2)
    assert refusal(login, r1) == "28000"
    assert login.execute("SELECT jwt_rls.end_sessions('user-logout')").fetchone()[0] == 1
    assert not works(app, a2) and refusal(login, r2) == "28000"
    assert works(app, a3)


def test_absolute_lifetime_and_idle_timeout(db, login):
    _, r1, s1 = start(login)
    db.execute("UPDATE jwt_rls.sessions SET expires_at = now() - interval '1 second' WHERE id = %s", (s1,))
    with pytest.raises(psycopg.Error) as e:
        refresh(login, r1)
    assert e.value.sqlstate == "28000" and "session_lifetime" in e.value.diag.message_detail
    _, r2, s2 = start(login)
    db.execute("UPDATE jwt_rls.sessions SET last_used_at = now() - interval '8 days' WHERE id = %s", (s2,))
    with pytest.raises(psycopg.Error) as e:
        refresh(login, r2)
    assert e.value.sqlstate == "28000" and "idle" in e.value.diag.message_detail
    assert login.execute("SHOW jwt_rls.session_idle_timeout").fetchone()[0] == "7d"


def test_hostile_refresh_tokens(cluster, app, login):
    access, token, _ = start(login)
    for bad, state in [("", "22023"), ("x" * 42, "22023"), ("x" * 44, "22023"), (token[:-1] + "+", "22023"),
                       (access, "22023"), ("A" * 43, "28000"), (token.upper() if token.upper() != token else "B" * 43,
                                                              "28000")]:
        with pytest.raises(psycopg.Error) as e:
            refresh(login, bad)
        assert e.value.sqlstate == state, (bad, e.value)
        text = str(e.value) + (e.value.diag.message_detail or "") + (e.value.diag.message_hint or "")
        assert not bad or bad not in text
    # A refresh token presented as an access token is malformed there.
    assert sqlstate(app, "SELECT jwt_rls.authenticate(%s)", (token,)) == "22023"
    # None of that used the real token up.
    new_access, new_token, _ = refresh(login, token)
    # Reuse, then a look at the server log: no refresh token ever reaches it
    # (they are bind parameters; the errors never quote them).
    assert refusal(login, token) == "28000"
    log = cluster.server_log()
    assert "refresh token was already used" in log
    for secret in (token, new_token):
        assert secret not in log


def test_refresh_inside_a_transaction_block_does_nothing_and_fails(cluster, login):
    _, token, _ = start(login)
    with psycopg.connect(cluster.dsn(user="login_svc")) as conn:  # not autocommit: BEGIN first
        with pytest.raises(psycopg.Error) as e:
            conn.execute(REFRESH, (token,))
        assert e.value.sqlstate == "2D000"
        conn.rollback()
    assert refresh(login, token)[0], "the token was not used up"


def test_application_role_can_neither_issue_nor_refresh_nor_read(app):
    for sql in ["SELECT jwt_rls.start_session('x')", "CALL jwt_rls.refresh('x')",
                "SELECT jwt_rls.rotate_refresh_token('x')", "SELECT jwt_rls.end_sessions('x')",
                "SELECT jwt_rls.random_token()", "SELECT count(*) FROM jwt_rls.sessions",
                "SELECT count(*) FROM jwt_rls.refresh_tokens", "UPDATE jwt_rls.sessions SET revoked_at = NULL"]:
        assert sqlstate(app, sql) == "42501", sql


def test_login_service_cannot_read_or_unrevoke(login):
    for sql in ["SELECT count(*) FROM jwt_rls.sessions", "SELECT hash FROM jwt_rls.refresh_tokens",
                "UPDATE jwt_rls.sessions SET revoked_at = NULL", "SELECT count(*) FROM jwt_rls.signing_keys"]:
        assert sqlstate(login, sql) == "42501", sql


def test_the_whole_flow_through_pgbouncer(cluster, db, login):
    """Login, requests, access token expiry, refresh, the stolen refresh
    token replayed: the family is revoked and the thief's and the user's
    access tokens are refused on every pooled server connection."""
    db.execute("ALTER ROLE login_svc SET jwt_rls.sign_lifetime = 2")  # short-lived access tokens
    try:
        with PgBouncer(cluster, "transaction", pool_size=4) as apps, \
                PgBouncer(cluster, "transaction", pool_size=2, user="login_svc") as logins:
            clients = [psycopg.connect(apps.dsn(), autocommit=True, prepare_threshold=None) for _ in range(8)]
            with psycopg.connect(logins.dsn(), autocommit=True, prepare_threshold=None) as svc:
                access, stolen, _ = svc.execute("SELECT * FROM jwt_rls.start_session('user-e2e', %s::jsonb)",
                                                (json.dumps({"tenant_id": str(TENANT_A), "aud": "invoices-api"}),)).fetchone()
                assert all(works(c, access) for c in clients)
                import time
                time.sleep(3.5)  # the access token expires (leeway 0 in this database)
                assert not any(works(c, access) for c in clients)
                access2, fresh, _ = svc.execute(REFRESH, (stolen,)).fetchone()
                assert all(works(c, access2) for c in clients)
                # The thief replays the stolen (used) refresh token.
                with pytest.raises(psycopg.Error) as e:
                    svc.execute(REFRESH, (stolen,))
                assert e.value.sqlstate == "28000"
                assert not any(works(c, access2) for c in clients), "the user's live access token is refused"
                with pytest.raises(psycopg.Error):
                    svc.execute(REFRESH, (fresh,))
            for c in clients:
                c.close()
            server_pids = db.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'").fetchone()[0]
            assert server_pids >= 1
    finally:
        db.execute("ALTER ROLE login_svc RESET jwt_rls.sign_lifetime")


def test_a_refresh_storm_on_one_token_has_one_winner_and_revokes_the_family(cluster, db, app, login):
    access, token, sid = start(login)
    outcomes = race(cluster, token, 16)
    winners = [r for o, r in outcomes if o == "ok"]
    assert len(winners) == 1 and sorted(o for o, _ in outcomes).count("28000") == 15, outcomes
    # The losers were reuse: the session is revoked, the winner's tokens too.
    assert db.execute("SELECT revoked_reason FROM jwt_rls.sessions WHERE id = %s", (sid,)).fetchone()[0] \
        == "refresh token reused"
    assert not works(app, winners[0][0]) and not works(app, access)
    assert refusal(login, winners[0][1]) == "28000"
    # Nothing lost or duplicated: the presented token and the winner's successor.
    assert db.execute("SELECT count(*) FROM jwt_rls.refresh_tokens WHERE session_id = %s", (sid,)).fetchone()[0] == 2


def test_session_claims_cannot_set_what_the_session_decides(login):
    for claims in [{"exp": 4102444800}, {"iat": 1}, {"jti": "x"}, {"sid": "x"}, {"sub": "other"}, {"nbf": 1}]:
        with pytest.raises(psycopg.Error) as e:
            login.execute("SELECT * FROM jwt_rls.start_session('u', %s::jsonb)", (json.dumps(claims),))
        assert e.value.sqlstate == "22023", claims


def test_revoke_subject_also_stops_refreshing_earlier_sessions(db, app, login):
    access, token, _ = start(login, sub="user-revoked-subject")
    db.execute("SELECT jwt_rls.revoke_subject('user-revoked-subject')")
    assert not works(app, access)
    with pytest.raises(psycopg.Error) as e:
        refresh(login, token)
    assert e.value.sqlstate == "28000" and "revoke_subject" in e.value.diag.message_detail
    # A new login after the cutoff works.
    import time
    time.sleep(1.1)
    access2, token2, _ = start(login, sub="user-revoked-subject")
    assert works(app, access2) and refresh(login, token2)[0]


@pytest.fixture
def grace(db):
    """Sets jwt_rls.refresh_reuse_grace for the login service's new
    connections (as an administrator would, per role); reset after."""
    def set_grace(seconds):
        db.execute(f"ALTER ROLE login_svc SET jwt_rls.refresh_reuse_grace = {seconds}")
    try:
        yield set_grace
    finally:
        db.execute("ALTER ROLE login_svc RESET jwt_rls.refresh_reuse_grace")


def test_with_a_reuse_grace_a_refresh_storm_gives_every_racer_the_same_pair(cluster, db, app, login, grace):
    grace(30)
    _, token, sid = start(login)
    outcomes = race(cluster, token, 16)
    assert [o for o, _ in outcomes] == ["ok"] * 16, outcomes
    pairs = {r for _, r in outcomes}
    assert len(pairs) == 1, pairs  # the same access token, refresh token and session
    access, successor, same_sid = pairs.pop()
    assert same_sid == sid
    assert db.execute("SELECT revoked_at FROM jwt_rls.sessions WHERE id = %s", (sid,)).fetchone()[0] is None
    assert works(app, access)
    with psycopg.connect(cluster.dsn(user="login_svc"), autocommit=True) as conn:
        assert conn.execute(REFRESH, (successor,)).fetchone()[1]


def test_reuse_outside_the_grace_period_or_after_the_successor_was_used_revokes(cluster, db, login, grace):
    grace(1)
    with psycopg.connect(cluster.dsn(user="login_svc"), autocommit=True) as conn:
        _, t0, sid = start(conn)
        refresh(conn, t0)
        time.sleep(1.5)
        assert refusal(conn, t0) == "28000"
    assert db.execute("SELECT revoked_reason FROM jwt_rls.sessions WHERE id = %s", (sid,)).fetchone()[0] \
        == "refresh token reused"
    grace(30)
    with psycopg.connect(cluster.dsn(user="login_svc"), autocommit=True) as conn:
        _, t0, sid = start(conn)
        t1 = refresh(conn, t0)[1]
        assert refresh(conn, t0)[1] == t1  # within the grace period: the same successor
        refresh(conn, t1)  # the successor is used now
        assert refusal(conn, t0) == "28000"
    assert db.execute("SELECT revoked_reason FROM jwt_rls.sessions WHERE id = %s", (sid,)).fetchone()[0] \
        == "refresh token reused"


def test_successors_are_kept_only_with_a_grace_period_and_only_the_latest(cluster, db, login, grace):
    _, t, sid = start(login)
    t = refresh(login, t)[1]
    held = "SELECT count(*) FROM jwt_rls.refresh_tokens WHERE session_id = %s AND successor IS NOT NULL"
    assert db.execute(held, (sid,)).fetchone()[0] == 0  # grace 0: no plaintext kept
    grace(30)
    with psycopg.connect(cluster.dsn(user="login_svc"), autocommit=True) as conn:
        for _ in range(3):
            t = refresh(conn, t)[1]
    assert db.execute(held, (sid,)).fetchone()[0] == 1


def test_successors_are_forgotten_once_the_grace_period_passes_or_the_session_ends(cluster, db, login, grace):
    held = "SELECT count(*) FROM jwt_rls.refresh_tokens WHERE session_id = %s AND successor IS NOT NULL"
    grace(1)
    with psycopg.connect(cluster.dsn(user="login_svc"), autocommit=True) as conn:
        _, t, idle = start(conn)
        refresh(conn, t)
        assert db.execute(held, (idle,)).fetchone()[0] == 1
        time.sleep(1.5)
        start(conn, sub="someone-else")  # any later login or refresh clears expired ones
        assert db.execute(held, (idle,)).fetchone()[0] == 0
    grace(30)
    with psycopg.connect(cluster.dsn(user="login_svc"), autocommit=True) as conn:
        _, t, ended = start(conn)
        refresh(conn, t)
        assert db.execute(held, (ended,)).fetchone()[0] == 1
        db.execute("GRANT EXECUTE ON FUNCTION jwt_rls.end_session(uuid) TO login_svc")
        conn.execute("SELECT jwt_rls.end_session(%s)", (ended,))
        assert db.execute(held, (ended,)).fetchone()[0] == 0
        _, t, kept = start(conn)
        refresh(conn, t)
    grace(0)  # turned off: the next login or refresh forgets what was kept
    with psycopg.connect(cluster.dsn(user="login_svc"), autocommit=True) as conn:
        assert db.execute(held, (kept,)).fetchone()[0] == 1
        start(conn, sub="someone-else")
        assert db.execute(held, (kept,)).fetchone()[0] == 0
