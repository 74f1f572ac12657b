"""Revocation of access tokens: by jti, by token, by subject ("log out
everywhere"), checked at bind and at every read in every backend, by roles
that can revoke but never read or undo the lists."""

import datetime
import threading
import time
import uuid

import psycopg
import pytest

from support.schema import TENANT_A, TENANT_B


def sqlstate_of(conn, sql, params=()):
    try:
        conn.execute(sql, params)
    except psycopg.Error as e:
        return e.sqlstate
    return None


def claim(conn, name="sub"):
    return conn.execute("SELECT jwt_rls.jwt_claim(%s)", (name,)).fetchone()[0]


def bind(conn, token):
    return sqlstate_of(conn, "SELECT jwt_rls.authenticate(%s)", (token,))


@pytest.fixture(autouse=True)
def empty_lists(db):
    db.execute("TRUNCATE jwt_rls.revoked_tokens, jwt_rls.revoked_subjects")
    yield
    db.execute("TRUNCATE jwt_rls.revoked_tokens, jwt_rls.revoked_subjects")


def test_revoked_jti_is_refused_at_bind_and_at_the_next_read_of_an_open_session(cluster, db, app, hs):
    jti = str(uuid.uuid4())
    token, other = hs.token(TENANT_A, jti=jti), hs.token(TENANT_A, jti=str(uuid.uuid4()))
    app.execute("SELECT set_config('jwt_rls.token', %s, false)", (token,))
    assert claim(app, "jti") == jti
    exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10)
    assert db.execute("SELECT jwt_rls.revoke_jti(%s, %s)", (jti, exp)).fetchone()[0] is True
    # The open session's next statement refuses the bound token: no claims.
    assert sqlstate_of(app, "SELECT jwt_rls.jwt_claim('sub')") == "28000"
    assert sqlstate_of(app, "SELECT count(*) FROM invoices") == "28000"
    app.execute("RESET jwt_rls.token")
    assert bind(app, token) == "28000"
    assert sqlstate_of(app, "SELECT set_config('jwt_rls.token', %s, true)", (token,)) == "28000"
    # Another token of the same subject and a new connection are unaffected / refused alike.
    assert bind(app, other) is None
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as fresh:
        assert bind(fresh, token) == "28000"
        assert bind(fresh, other) is None


def test_revocation_takes_effect_at_commit_not_before(cluster, db, app, hs):
    jti = str(uuid.uuid4())
    token = hs.token(TENANT_A, jti=jti)
    exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10)
    with psycopg.connect(cluster.dsn()) as admin:  # not autocommit
        admin.execute("SELECT jwt_rls.revoke_jti(%s, %s)", (jti, exp))
        assert bind(app, token) is None, "an uncommitted revocation must not refuse"
        admin.rollback()
    assert bind(app, token) is None, "a rolled-back revocation must not refuse"
    with psycopg.connect(cluster.dsn()) as admin:
        admin.execute("SELECT jwt_rls.revoke_jti(%s, %s)", (jti, exp))
        admin.commit()
    assert bind(app, token) == "28000"


def test_revoke_token_takes_a_whole_token(db, app, hs):
    jti = str(uuid.uuid4())
    token = hs.token(TENANT_B, jti=jti)
    assert bind(app, token) is None
    assert db.execute("SELECT jwt_rls.revoke_token(%s, 'leaked in a log')", (token,)).fetchone()[0] is True
    assert bind(app, token) == "28000"
    row = db.execute("SELECT expires_at, reason FROM jwt_rls.revoked_tokens WHERE jti = %s", (jti,)).fetchone()
    assert row[1] == "leaked in a log"
    assert abs(row[0].timestamp() - (time.time() + 600)) < 30, "kept until the token's exp"
    # A token without jti cannot be revoked by jti: 22023, and nothing stored.
    assert sqlstate_of(db, "SELECT jwt_rls.revoke_token(%s)", (hs.token(TENANT_B),)) == "22023"
    # An expired token needs no revocation.
    expired = hs.token(TENANT_B, jti=str(uuid.uuid4()), iat=int(time.time()) - 100, nbf=None, exp=int(time.time()) - 50)
    assert db.execute("SELECT jwt_rls.revoke_token(%s)", (expired,)).fetchone()[0] is False
    assert db.execute("SELECT count(*) FROM jwt_rls.revoked_tokens").fetchone()[0] == 1


def test_revoke_subject_refuses_tokens_issued_before_the_cutoff_only(db, app, hs):
    sub, bystander = str(uuid.uuid4()), str(uuid.uuid4())
    now = int(time.time())
    old = hs.token(TENANT_A, sub=sub, iat=now - 60, nbf=now - 60)
    no_iat = hs.token(TENANT_A, sub=sub, iat=None)
    theirs = hs.token(TENANT_A, sub=bystander, iat=now - 60, nbf=now - 60)
    for t in (old, no_iat, theirs):
        assert bind(app, t) is None
    db.execute("SELECT jwt_rls.revoke_subject(%s, to_timestamp(%s), 'password changed')", (sub, now - 30))
    assert bind(app, old) == "28000"
    assert bind(app, no_iat) == "28000", "no iat cannot prove it was issued after the cutoff: fail closed"
    assert bind(app, theirs) is None
    newer = hs.token(TENANT_A, sub=sub, iat=now - 10, nbf=now - 10)
    assert bind(app, newer) is None
    # Log out everywhere, now: the newer token goes too; a later login works.
    db.execute("SELECT jwt_rls.revoke_subject(%s)", (sub,))
    assert bind(app, newer) == "28000"
    # A cutoff never moves back.
    db.execute("SELECT jwt_rls.revoke_subject(%s, to_timestamp(0))", (sub,))
    assert bind(app, newer) == "28000"
    time.sleep(1.1)
    assert bind(app, hs.token(TENANT_A, sub=sub)) is None


def test_expired_entries_are_pruned_by_the_next_revocation(db):
    db.execute("INSERT INTO jwt_rls.revoked_tokens (jti, expires_at) VALUES ('old', now() - interval '1 hour')")
    db.execute("INSERT INTO jwt_rls.revoked_tokens (jti, expires_at) VALUES ('live', now() + interval '1 hour')")
    assert db.execute("SELECT jwt_rls.revoke_jti('gone', now() - interval '1 hour')").fetchone()[0] is False
    db.execute("SELECT jwt_rls.revoke_jti('new', now() + interval '5 minutes')")
    jtis = {r[0] for r in db.execute("SELECT jti FROM jwt_rls.revoked_tokens")}
    assert jtis == {"live", "new"}


def test_application_role_can_neither_revoke_nor_read_nor_undo(cluster, db, app, hs):
    for sql in ["SELECT jwt_rls.revoke_jti('x', now() + interval '1 hour')",
                "SELECT jwt_rls.revoke_subject('x')",
                "SELECT jwt_rls.revoke_token('x')",
                "SELECT count(*) FROM jwt_rls.revoked_tokens",
                "SELECT count(*) FROM jwt_rls.revoked_subjects",
                "DELETE FROM jwt_rls.revoked_tokens",
                "TRUNCATE jwt_rls.revoked_subjects"]:
        assert sqlstate_of(app, sql) == "42501", sql


def test_a_login_service_granted_execute_revokes_without_reading_the_lists(cluster, db, hs):
    db.execute("DROP ROLE IF EXISTS login_service")
    db.execute("CREATE ROLE login_service LOGIN")
    db.execute("GRANT USAGE ON SCHEMA jwt_rls TO login_service")
    db.execute("GRANT EXECUTE ON FUNCTION jwt_rls.revoke_jti(text, timestamptz, text), "
               "jwt_rls.revoke_subject(text, timestamptz, text) TO login_service")
    jti = str(uuid.uuid4())
    with psycopg.connect(cluster.dsn(user="login_service"), autocommit=True) as svc:
        assert svc.execute("SELECT jwt_rls.revoke_jti(%s, now() + interval '1 hour')", (jti,)).fetchone()[0]
        svc.execute("SELECT jwt_rls.revoke_subject('someone')")
        assert sqlstate_of(svc, "SELECT count(*) FROM jwt_rls.revoked_tokens") == "42501"
        assert sqlstate_of(svc, "DELETE FROM jwt_rls.revoked_tokens") == "42501"
    assert db.execute("SELECT count(*) FROM jwt_rls.revoked_tokens WHERE jti = %s", (jti,)).fetchone()[0] == 1


def test_revocation_under_load_reaches_every_busy_backend(cluster, db, signers):
    """8 backends bind a live token and the victim token in a loop; after
    the revoking commit each refuses the victim from its next transaction,
    and no live token is ever refused."""
    rs = signers["RS256"]
    victim_jti = str(uuid.uuid4())
    victim = rs.token(TENANT_A, jti=victim_jti)
    live = [rs.token(TENANT_B, jti=str(uuid.uuid4())) for _ in range(8)]
    committed = threading.Event()
    stop = threading.Event()
    results = [dict(live_refused=0, victim_ok_after=0, victim_refused_after=0, tx=0) for _ in range(8)]

    def worker(i):
        with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as conn:
            while not stop.is_set():
                seen_commit = committed.is_set()
                try:
                    with conn.transaction():
                        conn.execute("SELECT jwt_rls.authenticate(%s)", (live[i],))
                        conn.execute("SELECT count(*) FROM invoices").fetchone()
                except psycopg.Error:
                    results[i]["live_refused"] += 1
                try:
                    with conn.transaction():
                        conn.execute("SELECT jwt_rls.authenticate(%s)", (victim,))
                        conn.execute("SELECT count(*) FROM invoices").fetchone()
                    if seen_commit:
                        results[i]["victim_ok_after"] += 1
                except psycopg.Error as e:
                    assert e.sqlstate == "28000", e
                    if seen_commit:
                        results[i]["victim_refused_after"] += 1
                results[i]["tx"] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    db.execute("SELECT jwt_rls.revoke_jti(%s, now() + interval '1 hour')", (victim_jti,))
    committed.set()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    print(f"\nrevocation under load: {sum(r['tx'] for r in results)} transactions, {results}")
    assert all(r["live_refused"] == 0 for r in results)
    assert all(r["victim_ok_after"] == 0 for r in results), "a transaction after the commit used a revoked token"
    assert all(r["victim_refused_after"] > 0 for r in results)


def test_a_temp_type_named_like_a_catalog_type_never_runs_as_the_owner(cluster, db, hs):
    """The revocation lookups run as the table owner: a temp domain the
    application role names `bool` (or `text`, `uuid`) must not be used
    there, or its CHECK would run the role's code as the owner."""
    db.execute("SELECT jwt_rls.revoke_jti('someone-else', now() + interval '1 hour')")
    token = hs.token(TENANT_A, jti=str(uuid.uuid4()), sid=str(uuid.uuid4()))
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
        app.execute("CREATE TEMP TABLE loot (who text)")
        app.execute("""CREATE FUNCTION pg_temp.steal(v anyelement) RETURNS boolean LANGUAGE plpgsql AS $$
                       BEGIN INSERT INTO pg_temp.loot VALUES (current_user); RETURN true; END $$""")
        for name, base in [("bool", "bool"), ("text", "text"), ("uuid", "uuid"), ("int8", "int8")]:
            app.execute(f"CREATE DOMAIN pg_temp.{name} AS pg_catalog.{base} CHECK (pg_temp.steal(VALUE))")
        with app.transaction():
            app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
            assert app.execute("SELECT count(*) FROM invoices").fetchone()[0] > 0
        assert app.execute("SELECT who FROM pg_temp.loot").fetchall() == []


def test_a_repeatable_read_transaction_sees_a_revocation_committed_after_its_snapshot(cluster, db, hs):
    """Revocation lookups use the latest snapshot, not the transaction's:
    otherwise a REPEATABLE READ transaction would stamp a token revoked
    after its snapshot as checked, and keep accepting it afterwards."""
    jti = str(uuid.uuid4())
    token = hs.token(TENANT_A, jti=jti)
    db.execute("SELECT jwt_rls.revoke_jti('someone-else', now() + interval '1 hour')")
    with psycopg.connect(cluster.dsn(user="app")) as app:
        app.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        app.execute("SELECT count(*) FROM invoices").fetchone()  # the snapshot is taken
        db.execute("SELECT jwt_rls.revoke_jti(%s, now() + interval '1 hour')", (jti,))
        with pytest.raises(psycopg.Error) as e:
            app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
        assert e.value.sqlstate == "28000"
        app.rollback()
        assert bind(app, token) == "28000"
