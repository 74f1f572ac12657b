"""The spoofing catalog: everything a non-superuser application role might
try, from inside a transaction bound to tenant A, to make jwt_claim() say
something else without presenting another validly signed token. After each
attempt the claims must still be tenant A's (or gone, for RESET)."""

import base64
import time

import psycopg
import pytest

from support import b64url, claim, error, pg
from support.schema import TENANT_A, TENANT_B, tenants
from support.tokens import Signer


ATTEMPTS = [
    # the token setting, with a token that does not verify
    ("SET", "SET jwt_rls.token = '{forged}'"),
    ("SET LOCAL", "SET LOCAL jwt_rls.token = '{forged}'"),
    ("set_config local", "SELECT set_config('jwt_rls.token', '{forged}', true)"),
    ("set_config session", "SELECT set_config('jwt_rls.token', '{forged}', false)"),
    ("SET unsigned claims", "SET LOCAL jwt_rls.token = '{unsigned}'"),
    ("ALTER ROLE SET token", "ALTER ROLE app SET jwt_rls.token = '{forged}'"),
    ("function SET clause", "CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql "
                            "SET jwt_rls.token = '{forged}' AS 'SELECT 1::text'"),
    # the settings that decide what verifies
    *[(f"SET {s}", f"SET jwt_rls.{s} = 'x'") for s in
      ["issuer", "audience", "required_claims", "user_id_claim", "tenant_id_claim"]],
    *[(f"SET {s}", f"SET jwt_rls.{s} = 300") for s in ["leeway", "max_lifetime", "max_token_bytes"]],
    ("set_config issuer", "SELECT set_config('jwt_rls.issuer', 'https://evil.example', true)"),
    ("ALTER ROLE SET issuer", "ALTER ROLE app SET jwt_rls.issuer = 'https://evil.example'"),
    ("ALTER ROLE SET leeway", "ALTER ROLE app SET jwt_rls.leeway = 300"),
    ("set the read-only claims setting", "SET jwt_rls.claims = '{{\"tenant_id\": \"x\"}}'"),
    ("invent a setting", "SET jwt_rls.tenant = 'x'"),
    # keys
    ("read the key table", "SELECT * FROM jwt_rls.keys"),
    ("read the key list", "SELECT * FROM jwt_rls.key_list"),
    ("write the key table", "INSERT INTO jwt_rls.keys (kid, alg, format, material) VALUES ('e', 'HS256', 'secret', 'x')"),
    ("add a key", "SELECT jwt_rls.add_hmac_key('evil', 'HS256', repeat('x', 64)::bytea)"),
    ("import keys", "SELECT jwt_rls.import_jwks('{{\"keys\": []}}')"),
    ("disable a key", "SELECT jwt_rls.disable_key('hs256-test')"),
    ("remove a key", "SELECT jwt_rls.remove_key('hs256-test')"),
    ("call the trigger function", "SELECT jwt_rls.keys_changed()"),
    ("drop the policy", "DROP POLICY tenant_isolation ON invoices"),
    ("disable RLS", "ALTER TABLE invoices DISABLE ROW LEVEL SECURITY"),
    ("become postgres", "SET ROLE postgres"),
    ("session authorization", "SET SESSION AUTHORIZATION postgres"),
    ("drop the extension", "DROP EXTENSION jwt_rls"),
    ("replace jwt_claim", "CREATE OR REPLACE FUNCTION jwt_rls.jwt_claim(text) RETURNS text "
                          "LANGUAGE sql AS $$SELECT '{tenant_b}'$$"),
]


@pytest.mark.parametrize("label,sql", ATTEMPTS, ids=[a[0] for a in ATTEMPTS])
def test_attempt_changes_nothing(app, hs, label, sql):
    forged = hs.token(TENANT_B)[:-4] + "AAAA"
    unsigned = hs.token(TENANT_B).rsplit(".", 1)[0] + "."
    statement = sql.format(forged=forged, unsigned=unsigned, tenant_b=TENANT_B)
    with app.transaction():
        app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),))
        app.execute("SAVEPOINT attempt")
        try:
            app.execute(statement)
            failed = None
        except psycopg.Error as e:
            failed = e.sqlstate
        if label == "invent a setting" and not pg.RESERVES_PREFIXES:
            # PostgreSQL 14 cannot refuse it: the placeholder is created and
            # changes nothing jwt_rls reads.
            assert failed is None, (label, failed)
            assert claim(app) == str(TENANT_A) and tenants(app) == {TENANT_A}, label
            failed = "42602"
        app.execute("ROLLBACK TO SAVEPOINT attempt")
        assert failed in {"28000", "22023", "42501", "42602", "0A000", "42883", "55P02"}, (label, failed)
        assert claim(app) == str(TENANT_A), label
        assert tenants(app) == {TENANT_A}, label


def test_reset_only_removes_claims(app, hs):
    with app.transaction():
        app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),))
        for statement in ["RESET jwt_rls.token", "SET LOCAL jwt_rls.token TO DEFAULT", "RESET ALL",
                          "SET LOCAL jwt_rls.token = ''"]:
            app.execute("SAVEPOINT s")
            app.execute(statement)
            assert claim(app) is None and tenants(app) == set(), statement
            app.execute("ROLLBACK TO SAVEPOINT s")
            assert claim(app) == str(TENANT_A)


def test_shadow_objects_change_nothing(app, hs):
    """Temp tables and functions named like the extension's objects, first in
    search_path: policies hold OIDs, and the extension reads only
    schema-qualified objects."""
    attacker = Signer("hs256-test", "HS256")
    with app.transaction():
        app.execute("SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),))
        app.execute("CREATE TEMP TABLE keys (kid text, alg text, format text, material text, enabled bool, "
                    "not_before timestamptz, not_after timestamptz)")
        app.execute("INSERT INTO pg_temp.keys VALUES ('hs256-test', 'HS256', 'secret', %s, true, NULL, NULL)",
                    (b64url(attacker.key),))
        app.execute(f"CREATE FUNCTION pg_temp.jwt_claim(text) RETURNS text LANGUAGE sql AS $$SELECT '{TENANT_B}'$$")
        app.execute("SET LOCAL search_path = pg_temp, public, jwt_rls")
        assert tenants(app) == {TENANT_A}
        assert app.execute("SELECT jwt_rls.jwt_claim('tenant_id')").fetchone()[0] == str(TENANT_A)
        app.execute("SAVEPOINT s")
        with pytest.raises(psycopg.Error) as refused:
            app.execute("SELECT jwt_rls.authenticate(%s)", (attacker.token(TENANT_B),))
        assert refused.value.sqlstate == "28000"
        app.execute("ROLLBACK TO SAVEPOINT s")
        assert tenants(app) == {TENANT_A}


def key_material(signers):
    """The text forms of the installed keys: each HMAC secret in hex,
    base64url and base64; each public key's PEM lines (but the armour and
    a short last line)."""
    material = []
    for s in signers.values():
        if s.public is None:
            forms = [s.key.hex(), b64url(s.key), base64.b64encode(s.key).decode()]
        else:
            forms = [line for line in s.public.splitlines() if "-----" not in line and len(line) >= 32]
        assert forms, s.kid
        material += forms
    return material


def settings_views(app, db):
    """Every place a setting can be read, each as the text of its rows: as
    the application role pg_settings, SHOW ALL, current_setting() of every
    jwt_rls.* setting and pg_db_role_setting; as a superuser the files."""
    def text(rows):
        return "\n".join(" | ".join(str(v) for v in row) for row in rows)

    names = [r[0] for r in app.execute("SELECT name FROM pg_settings WHERE name LIKE 'jwt_rls.%'")]
    assert {"jwt_rls.issuer", "jwt_rls.audience", "jwt_rls.leeway"} <= set(names), names
    names.append("jwt_rls.token")  # hidden from pg_settings and SHOW ALL, but readable
    return {
        "pg_settings": text(app.execute("SELECT * FROM pg_settings")),
        "SHOW ALL": text(app.execute("SHOW ALL")),
        "current_setting": text(app.execute("SELECT n, current_setting(n) FROM unnest(%s::text[]) n", (names,))),
        "pg_db_role_setting": text(app.execute("SELECT setdatabase, setrole, setconfig FROM pg_db_role_setting")),
        "pg_file_settings": text(db.execute("SELECT * FROM pg_file_settings")),
    }


def test_no_key_material_in_settings_views(app, db, signers, hs):
    material = key_material(signers)
    # Bound, in a transaction: the keys are loaded and the token is set.
    token = hs.token(TENANT_A)
    with app.transaction():
        app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
        views = settings_views(app, db)
    assert token in views["current_setting"]
    found = [f"{place}: {m[:16]}..." for place, text in views.items() for m in material if m in text]
    assert not found, found


def test_no_binding_during_security_restricted_operations(cluster, db, hs):
    """A materialized view refresh runs as a security-restricted operation:
    code there cannot bind a token on anyone's behalf."""
    token = hs.token(TENANT_A)
    db.execute("CREATE SCHEMA IF NOT EXISTS scratch AUTHORIZATION app")
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
        app.execute("DROP MATERIALIZED VIEW IF EXISTS scratch.mv")
        app.execute(f"CREATE MATERIALIZED VIEW scratch.mv AS SELECT jwt_rls.authenticate('{token}') AS c WITH NO DATA")
        with pytest.raises(psycopg.Error) as e:
            app.execute("REFRESH MATERIALIZED VIEW scratch.mv")
        assert e.value.sqlstate == "42501", e.value
        app.execute("DROP MATERIALIZED VIEW scratch.mv")
        app.execute("CREATE FUNCTION scratch.bind() RETURNS int LANGUAGE sql "
                    f"SET jwt_rls.token = '{token}' AS 'SELECT 1'")
        app.execute("CREATE MATERIALIZED VIEW scratch.mv2 AS SELECT scratch.bind() AS c WITH NO DATA")
        with pytest.raises(psycopg.Error) as e:
            app.execute("REFRESH MATERIALIZED VIEW scratch.mv2")
        assert e.value.sqlstate == "42501", e.value
        app.execute("DROP SCHEMA scratch CASCADE")


def test_disabled_key_and_replayed_expired_token(cluster, db, signers):
    es = Signer("es256-replay", "ES256")
    with db.cursor() as cur:
        es.install(cur)
    short = es.token(TENANT_A, ttl=2)
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
        with app.transaction():
            app.execute("SELECT jwt_rls.authenticate(%s)", (short,))
            assert tenants(app) == {TENANT_A}
        time.sleep(2.2)
        with pytest.raises(psycopg.Error) as e:
            app.execute("SELECT jwt_rls.authenticate(%s)", (short,))
        assert e.value.sqlstate == "28000" and "expired" in e.value.diag.message_primary
        fresh = es.token(TENANT_A)
        app.execute("SELECT jwt_rls.authenticate(%s)", (fresh,))
        db.execute("SELECT jwt_rls.disable_key('es256-replay')")
        with pytest.raises(psycopg.Error) as e:
            app.execute("SELECT jwt_rls.authenticate(%s)", (fresh,))
        assert e.value.sqlstate == "28000" and "disabled" in e.value.diag.message_primary


def test_a_token_set_before_the_library_loads_is_verified_at_load(cluster, db, hs):
    """Until a session first calls jwt_rls, jwt_rls.token is a mere
    placeholder that Postgres accepts unchecked. The first call loads the
    library, which verifies the placeholder's value and drops it (with a
    WARNING) when it does not verify: it never yields claims."""
    forged = hs.token(TENANT_B)[:-4] + "AAAA"
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
        warnings = []
        app.add_notice_handler(lambda d: warnings.append(d.message_primary))
        app.execute(f"SET jwt_rls.token = '{forged}'")
        assert claim(app) is None
        assert tenants(app) == set()
        assert "token signature is invalid" in warnings, warnings
    good = hs.token(TENANT_B)
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
        app.execute(f"SET jwt_rls.token = '{good}'")
        assert tenants(app) == {TENANT_B}


def test_a_token_set_before_the_library_loads_is_checked_against_the_configured_policy(cluster, db, hs):
    """The placeholder's value is checked when the library defines the
    setting, and by then the database's issuer and audience are in force
    (the token setting is defined last): a validly signed token from the
    wrong issuer is dropped with a WARNING, not accepted under default
    policy and refused later."""
    wrong_issuer = hs.token(TENANT_B, iss="https://evil.example")
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
        warnings = []
        app.add_notice_handler(lambda d: warnings.append((d.severity_nonlocalized, d.sqlstate, d.message_primary)))
        app.execute(f"SET jwt_rls.token = '{wrong_issuer}'")
        assert claim(app) is None
        assert tenants(app) == set()
        assert ("WARNING", "28000", "token issuer is not accepted") in warnings, warnings


def test_session_preload_makes_set_verify_at_once(cluster, db, hs):
    forged = hs.token(TENANT_B)[:-4] + "AAAA"
    db.execute("ALTER ROLE app SET session_preload_libraries = 'jwt_rls'")
    try:
        with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
            with pytest.raises(psycopg.Error) as e:
                app.execute(f"SET jwt_rls.token = '{forged}'")
            assert e.value.sqlstate == "28000"
    finally:
        db.execute("ALTER ROLE app RESET session_preload_libraries")


def test_claims_setting_reflects_the_bound_token_and_cannot_be_set(cluster, db, app, hs):
    """current_setting('jwt_rls.claims') is the bound token's claims, empty
    without one, scoped like the token, and no one can set it. (Like every
    jwt_rls setting it exists once the library is loaded: by a first call,
    or session_preload_libraries.)"""
    app.execute("SELECT jwt_rls.jwt_claim('sub')")
    assert app.execute("SELECT current_setting('jwt_rls.claims')").fetchone()[0] == ""
    token = hs.token(TENANT_A)
    with app.transaction():
        app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
        shown = app.execute("SELECT current_setting('jwt_rls.claims')::jsonb").fetchone()[0]
        assert shown == app.execute("SELECT jwt_rls.jwt_claims()").fetchone()[0]
        assert shown["tenant_id"] == str(TENANT_A)
        for attempt in ["SET jwt_rls.claims = '{\"tenant_id\": \"x\"}'",
                        "SELECT set_config('jwt_rls.claims', '{}', true)",
                        "SET LOCAL jwt_rls.claims = '{}'"]:
            e = error(app, attempt)
            assert e is not None and e.sqlstate == "55P02", (attempt, e)
        assert app.execute("SELECT current_setting('jwt_rls.claims')::jsonb").fetchone()[0] == shown
    assert app.execute("SELECT current_setting('jwt_rls.claims')").fetchone()[0] == ""
    for attempt in ["ALTER ROLE app SET jwt_rls.claims = '{}'", "ALTER DATABASE postgres SET jwt_rls.claims = '{}'"]:
        assert error(db, attempt) is not None, attempt


@pytest.mark.parametrize("how", ["connection option, session_preload_libraries", "connection option, lazy load"])
def test_policy_settings_given_as_connection_options_stop_the_session(cluster, db, hs, how):
    """A role that may not set jwt_rls.issuer gives it as a connection
    option. Before jwt_rls loads, that value becomes the session's default
    in place of the administrator's (here ALTER DATABASE); Postgres drops it
    when the setting is defined, and the setting would fall back to "any
    issuer" (security review). Such a session verifies nothing; other
    sessions are unaffected."""
    evil = hs.token(TENANT_B, iss="https://evil.example")
    good = hs.token(TENANT_A)
    if how.endswith("session_preload_libraries"):
        db.execute("ALTER ROLE app SET session_preload_libraries = 'jwt_rls'")
    try:
        with psycopg.connect(cluster.dsn(user="app"), autocommit=True,
                             options="-c jwt_rls.issuer=https://evil.example") as app:
            for token in (evil, good):
                e = error(app, "SELECT jwt_rls.authenticate(%s)", (token,))
                assert e is not None and e.sqlstate == "42501", (how, e)
                assert "jwt_rls.issuer" in e.diag.message_detail
        with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as clean:
            assert error(clean, "SELECT jwt_rls.authenticate(%s)", (good,)) is None
            assert error(clean, "SELECT jwt_rls.authenticate(%s)", (evil,)).sqlstate == "28000"
    finally:
        db.execute("ALTER ROLE app RESET session_preload_libraries")


def test_a_set_before_the_library_loads_keeps_the_configured_policy(cluster, db, hs):
    """SET before the first jwt_rls call only changes the current value; the
    configured one survives, is restored when Postgres refuses the SET, and
    the session is not stopped, so one pooled client cannot stop the
    connection for the next (security review)."""
    evil = hs.token(TENANT_B, iss="https://evil.example")
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
        app.execute("SET jwt_rls.issuer = 'https://evil.example'")
        app.execute("SET jwt_rls.made_up = 'x'")
        assert error(app, "SELECT jwt_rls.authenticate(%s)", (evil,)).sqlstate == "28000"
        assert error(app, "SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A),)) is None
