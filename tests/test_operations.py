"""Operations end to end: a hot standby, key rotation under load, and a
crash and an immediate shutdown in the middle of writes. Each test starts
and removes its own servers, except rotation, which uses the shared one."""

import json
import os
import signal
import threading
import time

import psycopg
import pytest

from support import claim
from support.pgcluster import Cluster, wait_for
from support.schema import ROWS, SCHEMA, TENANT_A, TENANT_B, authenticate, insert_invoices
from support.tokens import AUDIENCE, ISSUER, Signer


def caught_up(primary, standby):
    target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    return wait_for(lambda: standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                            (target,)).fetchone()[0], 30)


def test_hot_standby_verifies_and_follows_key_changes():
    hs = Signer("hs-primary", "HS256")
    primary = Cluster(conf=["wal_level = replica", "max_wal_senders = 4"]).start()
    standby = None
    try:
        with psycopg.connect(primary.dsn(), autocommit=True) as admin:
            admin.execute(SCHEMA)
            with admin.cursor() as cur:
                hs.install(cur)
                insert_invoices(cur)
            standby = Cluster(init=False)
            standby.start_as_standby_of(primary)
            with psycopg.connect(standby.dsn(), autocommit=True) as sb_admin, \
                    psycopg.connect(standby.dsn(user="app"), autocommit=True) as app:
                assert sb_admin.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                assert caught_up(admin, sb_admin)
                assert authenticate(app, hs.token(TENANT_A)) == ROWS[TENANT_A]
                assert authenticate(app, hs.token(TENANT_B)) == ROWS[TENANT_B]
                assert app.execute("SELECT count(*) FROM invoices").fetchone()[0] == 0

                # A key imported on the primary works on the standby once
                # replayed, in a session that was already open.
                es = Signer("es-rotated", "ES256")
                assert authenticate(app, es.token(TENANT_A)) == "28000"
                with admin.cursor() as cur:
                    es.install(cur)
                assert caught_up(admin, sb_admin)
                assert authenticate(app, es.token(TENANT_A)) == ROWS[TENANT_A]
                admin.execute("SELECT jwt_rls.disable_key('es-rotated')")
                assert caught_up(admin, sb_admin)
                assert authenticate(app, es.token(TENANT_A)) == "28000"

                # A revocation committed on the primary reaches the standby's
                # open session once replayed.
                revoked = hs.token(TENANT_A, jti="standby-revoked")
                assert authenticate(app, revoked) == ROWS[TENANT_A]
                admin.execute("SELECT jwt_rls.revoke_jti('standby-revoked', now() + interval '1 hour')")
                assert caught_up(admin, sb_admin)
                assert authenticate(app, revoked) == "28000"

                # Tokens the primary issues verify on the standby; refreshing
                # needs the primary: the standby refuses it as read-only.
                admin.execute("SELECT jwt_rls.generate_signing_key('primary-issuer', 'ES256')")
                access, refresh_token, _ = admin.execute(
                    "SELECT * FROM jwt_rls.start_session('u', %s::jsonb)",
                    (json.dumps({"tenant_id": str(TENANT_A), "aud": AUDIENCE, "iss": ISSUER}),)).fetchone()
                assert caught_up(admin, sb_admin)
                assert authenticate(app, access) == ROWS[TENANT_A]
                with pytest.raises(psycopg.Error) as e:
                    sb_admin.execute("CALL jwt_rls.refresh(%s)", (refresh_token,))
                assert e.value.sqlstate == "25006", e.value

            # Verification assigns no transaction id on the primary either.
            with psycopg.connect(primary.dsn(user="app")) as app:
                app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),))
                app.execute("SELECT jwt_rls.jwt_claims(), count(*) FROM invoices")
                assert app.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] is None
                app.rollback()
    finally:
        if standby:
            standby.remove()
        primary.remove()


def test_key_rotation_under_load(cluster, db):
    """Tokens of live keys are never refused; tokens of the disabled key are
    refused from the first transaction after the disabling commit, in every
    backend, without reconnecting."""
    old, new = Signer("rotation-old", "RS256"), Signer("rotation-new", "ES256")
    backends = 8
    with db.cursor() as cur:
        old.install(cur)
    tokens = {old.kid: old.token(TENANT_A, ttl=3600), new.kid: new.token(TENANT_A, ttl=3600)}
    events = {}
    stop = threading.Event()
    records = []
    lock = threading.Lock()

    def client(n):
        with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as conn:
            i = 0
            while not stop.is_set():
                kid = old.kid if ("added" not in events or i % 2 == 0) else new.kid
                started = time.monotonic()
                result = authenticate(conn, tokens[kid])
                with lock:
                    records.append((n, kid, started, time.monotonic(), result))
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(backends)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    with db.cursor() as cur:
        new.install(cur)
    events["added"] = time.monotonic()
    time.sleep(1.5)
    events["disabling"] = time.monotonic()
    db.execute("SELECT jwt_rls.disable_key(%s)", (old.kid,))
    events["disabled"] = time.monotonic()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()

    wrong, refused_after = [], set()
    for n, kid, started, ended, result in records:
        if kid == new.kid and started > events["added"] and result != ROWS[TENANT_A]:
            wrong.append(f"client {n}: live new key refused: {result}")
        if kid == old.kid and ended < events["disabling"] and result != ROWS[TENANT_A]:
            wrong.append(f"client {n}: live old key refused: {result}")
        if kid == old.kid and started > events["disabled"]:
            if result != "28000":
                wrong.append(f"client {n}: disabled key accepted after the commit")
            refused_after.add(n)
    print(f"\nkey rotation: {len(records)} transactions by {backends} backends; old-key tokens refused after "
          f"the disabling commit in {len(refused_after)} of {backends} backends")
    assert not wrong, wrong[:10]
    assert refused_after == set(range(backends))
    db.execute("SELECT jwt_rls.remove_key(%s)", (old.kid,))
    db.execute("SELECT jwt_rls.remove_key(%s)", (new.kid,))


def test_crash_and_immediate_shutdown_lose_nothing():
    hs = Signer("hs-crash", "HS256")
    c = Cluster().start()
    try:
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute(SCHEMA)
            with admin.cursor() as cur:
                hs.install(cur)
        tokens = {TENANT_A: hs.token(TENANT_A, ttl=3600), TENANT_B: hs.token(TENANT_B, ttl=3600)}
        committed = {TENANT_A: set(), TENANT_B: set()}
        stop = threading.Event()
        failures = {"leaked_claims": 0, "reconnects": 0}

        def writer(n):
            tenant = TENANT_A if n % 2 == 0 else TENANT_B
            while not stop.is_set():
                try:
                    with psycopg.connect(c.dsn(user="app"), connect_timeout=2) as conn:
                        while not stop.is_set():
                            if claim(conn) is not None:
                                failures["leaked_claims"] += 1
                            conn.execute("SELECT jwt_rls.authenticate(%s)", (tokens[tenant],))
                            row = conn.execute("INSERT INTO invoices (tenant_id, amount, note) VALUES (%s, %s, %s) "
                                               "RETURNING id", (tenant, n, f"writer {n}")).fetchone()
                            conn.commit()
                            committed[tenant].add(row[0])
                except psycopg.Error:
                    failures["reconnects"] += 1
                    time.sleep(0.2)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            victim = admin.execute("SELECT pid FROM pg_stat_activity WHERE usename = 'app' LIMIT 1").fetchone()[0]
        os.kill(victim, signal.SIGKILL)  # the postmaster restarts every backend
        time.sleep(3)
        c.stop("immediate")
        time.sleep(0.5)
        c.start()
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()

        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute("SET jwt_rls.token = ''")
            rows = dict(admin.execute("SELECT id, tenant_id FROM invoices").fetchall())
            assert admin.execute("SELECT count(*) FROM jwt_rls.keys").fetchone()[0] == 1
        for tenant, ids in committed.items():
            missing = [i for i in ids if i not in rows]
            assert not missing, f"{len(missing)} committed rows lost"
            assert all(rows[i] == tenant for i in ids), "a committed row changed tenant"
        with psycopg.connect(c.dsn(user="app"), autocommit=True) as app:
            assert app.execute("SHOW jwt_rls.issuer").fetchone()[0] == "https://login.example"
            assert authenticate(app, hs.token(TENANT_A)) == sum(1 for t in rows.values() if t == TENANT_A)
        print(f"\ncrash and restart: {len(committed[TENANT_A]) + len(committed[TENANT_B])} committed rows kept, "
              f"{failures['reconnects']} reconnects, {failures['leaked_claims']} leaked claims")
        assert failures["leaked_claims"] == 0
        assert failures["reconnects"] >= 4
        assert min(len(ids) for ids in committed.values()) > 10
    finally:
        c.remove()
