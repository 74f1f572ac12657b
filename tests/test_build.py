"""The installed build and the upgrade path.

- After the test command (scripts/test.sh), the library PostgreSQL loads is
  the release build of this tree: `cargo pgrx test` installs a debug build,
  which must never be left in place silently.
- `ALTER EXTENSION jwt_rls UPDATE` from each released schema (0.1.0, 0.2.0)
  gives the same catalog as a fresh install of this version, and keeps the
  keys.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess

import psycopg
import pytest
from jwcrypto import jwe, jwk

from support import claim, error, pg
from support.pgcluster import Cluster
from support.schema import ROWS, SCHEMA, TENANT_A, TENANT_B, authenticate, count, insert_invoices
from support.tokens import AUDIENCE, ISSUER

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_CONFIG = pg.PG_CONFIG
# The released library (0.1.0) reads config_generic.reset_srole, which
# PostgreSQL 14 does not have: it never built there, so nobody upgrades from
# it on 14. On 15-18 it builds, and its upgrade is tested.
RELEASE_BUILDS_ON = {15, 16, 17, 18}


def cargo_version():
    text = open(os.path.join(ROOT, "Cargo.toml")).read()
    return re.search(r'^version = "(.+)"$', text, re.M).group(1)


def pg_config(flag):
    return subprocess.run([PG_CONFIG, flag], check=True, capture_output=True, text=True).stdout.strip()


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_installed_library_is_this_trees_release_build(db):
    version, commit, debug, _ = db.execute("SELECT * FROM jwt_rls.build_info()").fetchone()
    assert debug is False, "the installed jwt_rls is a debug build: run cargo pgrx install --release"
    assert version == cargo_version()
    assert commit and commit != "unknown"
    installed = os.path.join(pg_config("--pkglibdir"), "jwt_rls.so")
    built = os.path.join(ROOT, "target", "release", "libjwt_rls.so")
    assert os.path.exists(built), "no release build in target/release"
    assert sha256(installed) == sha256(built), "the installed jwt_rls.so is not target/release/libjwt_rls.so"


CATALOG = """
SELECT 'function', p.oid::regprocedure::text,
       concat_ws(' ', pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), p.prokind,
                 (SELECT lanname FROM pg_language WHERE oid = p.prolang),
                 p.provolatile, p.proparallel, p.proisstrict, p.prosecdef, p.proconfig::text, p.proacl::text,
                 obj_description(p.oid, 'pg_proc'), p.probin, p.prosrc)
  FROM pg_proc p WHERE p.pronamespace = 'jwt_rls'::regnamespace
UNION ALL
SELECT 'relation', c.relname, concat_ws(' ', c.relkind, c.relacl::text, c.relrowsecurity, c.relforcerowsecurity,
       obj_description(c.oid, 'pg_class'),
       CASE c.relkind WHEN 'i' THEN pg_get_indexdef(c.oid) END,
       (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull
                          || ' ' || a.attidentity::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
                          || ' ' || coalesce(col_description(c.oid, a.attnum), ''), ', ' ORDER BY a.attnum)
          FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       CASE c.relkind WHEN 'v' THEN pg_get_viewdef(c.oid) END)
  FROM pg_class c WHERE c.relnamespace = 'jwt_rls'::regnamespace
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'jwt_rls'::regnamespace
UNION ALL
SELECT 'trigger', tgrelid::regclass::text || ' ' || tgname, pg_get_triggerdef(oid)
  FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'jwt_rls'::regnamespace)
UNION ALL
SELECT 'policy', polrelid::regclass::text || ' ' || polname,
       concat_ws(' ', polcmd, polpermissive, polroles::text, pg_get_expr(polqual, polrelid),
                 pg_get_expr(polwithcheck, polrelid))
  FROM pg_policy WHERE polrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'jwt_rls'::regnamespace)
UNION ALL
SELECT 'config', c.tab::regclass::text, c.cond
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS c(tab, cond) WHERE e.extname = 'jwt_rls'
ORDER BY 1, 2
"""


def catalog(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(CATALOG).fetchall()


@pytest.mark.parametrize("released", ["0.1.0", "0.2.0"])
def test_update_from_a_released_schema_equals_a_fresh_install_and_keeps_keys(cluster, db, hs, released):
    # The released schema, as a package of that version shipped it.
    extdir = os.path.join(pg_config("--sharedir"), "extension")
    shutil.copy(os.path.join(ROOT, "sql", "generated", f"jwt_rls--{released}.sql"), extdir)
    for name in ["upgraded", "fresh"]:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    token = hs.token("aaaaaaaa-0000-4000-8000-000000000001")
    with psycopg.connect(cluster.dsn(dbname="upgraded"), autocommit=True) as conn:
        conn.execute(f"CREATE EXTENSION jwt_rls VERSION '{released}'")
        # 0.2.0 refuses a token with aud when no audience is configured.
        conn.execute(f"SET jwt_rls.audience = '{AUDIENCE}'")
        with conn.cursor() as cur:
            hs.install(cur)
        before = conn.execute("SELECT jwt_rls.authenticate(%s) ->> 'tenant_id'", (token,)).fetchone()[0]
        conn.execute("ALTER EXTENSION jwt_rls UPDATE")
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'jwt_rls'").fetchone()[0] \
            == cargo_version()
        after = conn.execute("SELECT jwt_rls.authenticate(%s) ->> 'tenant_id'", (token,)).fetchone()[0]
        assert before == after == "aaaaaaaa-0000-4000-8000-000000000001"
        assert conn.execute("SELECT count(*) FROM jwt_rls.keys").fetchone()[0] == 1
    with psycopg.connect(cluster.dsn(dbname="fresh"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION jwt_rls")
    upgraded, fresh = catalog(cluster.dsn(dbname="upgraded")), catalog(cluster.dsn(dbname="fresh"))
    assert len(fresh) > 10
    assert upgraded == fresh


RELEASED = ("0.1.0", "8b6843c")  # version and commit of the last release


def install_tree(package_dir):
    """Installs a `cargo pgrx package` tree (usr/...) over the system paths
    as a package manager does: each file written beside its target, then
    renamed over it, so that a backend that has the old library mapped
    keeps reading the old file."""
    for dirpath, _, files in os.walk(package_dir):
        for name in files:
            source = os.path.join(dirpath, name)
            target = "/" + os.path.relpath(source, package_dir)
            shutil.copy2(source, target + ".new")
            os.replace(target + ".new", target)


def current_package():
    subprocess.run(["cargo", "pgrx", "package", *pg.PGRX_BUILD_ARGS], cwd=ROOT, check=True,
                   capture_output=True)
    return os.path.join(ROOT, "target", "release", f"jwt_rls-pg{pg.MAJOR}")


def released_package():
    """The last release's `cargo pgrx package` tree, built from its commit
    (cached); skips on a shallow clone that lacks the commit."""
    version, commit = RELEASED
    if pg.MAJOR not in RELEASE_BUILDS_ON:
        pytest.skip(f"jwt_rls {version} does not build for PostgreSQL {pg.MAJOR} (it reads "
                    "config_generic.reset_srole, new in 15): no server runs it to upgrade from")
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip() == "true"
    if shallow and subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT).returncode:
        pytest.skip(f"shallow clone without the {version} release commit {commit}: fetch full history to run this")
    return subprocess.run(["bash", "scripts/build-old.sh", version, commit], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()


def start_released(cluster, old, hs, es):
    """The last release installed and in use in `cluster`: schema, both
    keys and the invoices."""
    install_tree(old)
    cluster.start()
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(SCHEMA)
        assert admin.execute("SELECT extversion FROM pg_extension WHERE extname = 'jwt_rls'").fetchone()[0] \
            == RELEASED[0]
        with admin.cursor() as cur:
            hs.install(cur)
            es.install(cur)
            insert_invoices(cur)


def test_update_from_the_released_library_keeps_keys_settings_and_open_sessions(signers):
    """The 0.1.0 release built from its commit, in use (keys, per-database
    settings, a policy, a session with a bound token), then this version's
    files installed and ALTER EXTENSION UPDATE run: keys and settings
    survive, tokens verify after, the schema is this version's, and the
    session open across the update keeps its claims or fails cleanly."""
    old, new = released_package(), current_package()
    hs, es = signers["HS256"], signers["ES256"]
    cluster = Cluster()
    try:
        start_released(cluster, old, hs, es)
        token = es.token(TENANT_A)
        with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as open_session:
            open_session.execute("SELECT set_config('jwt_rls.token', %s, false)", (token,))
            assert claim(open_session) == str(TENANT_A)
            before = count(open_session)

            install_tree(new)
            with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
                admin.execute("ALTER EXTENSION jwt_rls UPDATE")
                assert admin.execute("SELECT extversion FROM pg_extension WHERE extname = 'jwt_rls'").fetchone()[0] \
                    == cargo_version()
                assert admin.execute("SELECT count(*) FROM jwt_rls.keys").fetchone()[0] == 2
                started = admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0]

            # The open session still runs the library it loaded: its claims
            # still read; a function only the new version has fails with a
            # clear error, and the backend lives on.
            assert claim(open_session) == str(TENANT_A)
            assert count(open_session) == before == ROWS[TENANT_A]
            e = error(open_session, "SELECT * FROM jwt_rls.build_info()")
            assert e is None or e.sqlstate == "42883", e
            assert claim(open_session) == str(TENANT_A)
            # It binds a new token too: the old library reads the updated
            # key table (new columns) and verifies with it.
            open_session.execute("SELECT set_config('jwt_rls.token', %s, false)", (hs.token(TENANT_B),))
            assert claim(open_session) == str(TENANT_B)
            assert count(open_session) == ROWS[TENANT_B]

        with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as fresh:
            assert fresh.execute("SHOW jwt_rls.issuer").fetchone()[0] == ISSUER
            assert authenticate(fresh, token) == ROWS[TENANT_A]
            assert authenticate(fresh, hs.token(TENANT_B)) == ROWS[TENANT_B]
            assert authenticate(fresh, hs.token(TENANT_B)[:-4] + "AAAA") == "28000"
            assert fresh.execute("SELECT version FROM jwt_rls.build_info()").fetchone()[0] == cargo_version()
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            assert admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started, "no crash"
        assert catalog(cluster.dsn()) == catalog_of_fresh_install(cluster)
    finally:
        install_tree(new)
        cluster.remove()


def test_update_of_a_preloaded_server_installs_restarts_then_updates(signers):
    """With jwt_rls in shared_preload_libraries every backend inherits the
    library the server started with, so the documented order is: install
    the new files, restart, ALTER EXTENSION UPDATE. From the 0.1.0 release
    in use, that keeps keys and per-database settings, tokens verify after,
    the schema is this version's, and the new server-wide features (the
    shared cache and counters) run."""
    old, new = released_package(), current_package()
    hs, es = signers["HS256"], signers["ES256"]
    cluster = Cluster(conf=["shared_preload_libraries = 'jwt_rls'"])
    try:
        start_released(cluster, old, hs, es)
        with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
            assert authenticate(app, es.token(TENANT_A)) == ROWS[TENANT_A]

        install_tree(new)
        cluster.stop()
        cluster.start()
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute("ALTER EXTENSION jwt_rls UPDATE")
            assert admin.execute("SELECT extversion FROM pg_extension WHERE extname = 'jwt_rls'").fetchone()[0] \
                == cargo_version()
            assert admin.execute("SELECT count(*) FROM jwt_rls.keys").fetchone()[0] == 2
        with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as one, \
                psycopg.connect(cluster.dsn(user="app"), autocommit=True) as two:
            assert one.execute("SHOW jwt_rls.issuer").fetchone()[0] == ISSUER
            token = es.token(TENANT_B)
            assert authenticate(one, token) == ROWS[TENANT_B]
            assert authenticate(two, token) == ROWS[TENANT_B]  # from the shared cache
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:  # stats() is not for PUBLIC
            stats = dict(admin.execute("SELECT name, value FROM jwt_rls.stats()").fetchall())
        assert stats["cache_hits_shared"] >= 1 and stats["shared_cache_slots"] > 0
        with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as one:
            assert authenticate(one, hs.token(TENANT_B)[:-4] + "AAAA") == "28000"
        assert catalog(cluster.dsn()) == catalog_of_fresh_install(cluster)
    finally:
        install_tree(new)
        cluster.remove()


def catalog_of_fresh_install(cluster):
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS fresh_install")
        admin.execute("CREATE DATABASE fresh_install TEMPLATE template0")
    with psycopg.connect(cluster.dsn(dbname="fresh_install"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION jwt_rls")
    return catalog(cluster.dsn(dbname="fresh_install"))


def test_dump_and_restore_round_trip_keys_signing_keys_and_policies(cluster, db, hs):
    """pg_dump / pg_restore of a database using jwt_rls brings back its keys
    (extension configuration tables), signing keys and policies: tokens
    verify and are signed in the restored database as before."""
    for name in ["dumped", "restored"]:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    with psycopg.connect(cluster.dsn(dbname="dumped"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION jwt_rls")
        with conn.cursor() as cur:
            hs.install(cur)
        conn.execute("SELECT jwt_rls.generate_signing_key('dump-es256', 'ES256')")
        conn.execute("SELECT jwt_rls.revoke_jti('revoked-before-dump', now() + interval '1 hour')")
        conn.execute("CREATE TABLE notes (tenant_id uuid, body text)")
        conn.execute("ALTER TABLE notes ENABLE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY p ON notes USING (tenant_id = (SELECT jwt_rls.jwt_claim('tenant_id')::uuid))")
        conn.execute("INSERT INTO notes VALUES (%s, 'a'), (%s, 'b')", (TENANT_A, TENANT_B))
        conn.execute("GRANT USAGE ON SCHEMA jwt_rls TO app; GRANT SELECT ON notes TO app")
    dump = os.path.join(ROOT, "target", "jwt_rls_dump.custom")
    bin_dir = os.path.dirname(PG_CONFIG)
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres"}
    subprocess.run([f"{bin_dir}/pg_dump", "-Fc", "-f", dump, "dumped"], check=True, env=env)
    subprocess.run([f"{bin_dir}/pg_restore", "-d", "restored", dump], check=True, env=env)
    with psycopg.connect(cluster.dsn(dbname="restored"), autocommit=True) as conn:
        keys = {r[0] for r in conn.execute("SELECT kid FROM jwt_rls.keys")}
        assert keys == {hs.kid, "dump-es256"}
        assert conn.execute("SELECT count(*) FROM jwt_rls.signing_keys").fetchone()[0] == 1
        assert conn.execute("SELECT jti FROM jwt_rls.revoked_tokens").fetchall() == [("revoked-before-dump",)]
        issued = conn.execute("SELECT jwt_rls.sign(%s::jsonb)", (f'{{"tenant_id": "{TENANT_A}"}}',)).fetchone()[0]
    with psycopg.connect(cluster.dsn(user="app", dbname="restored"), autocommit=True) as app:
        for token, tenant in [(hs.token(TENANT_B, aud=None, iss=None), "b"), (issued, "a")]:
            with app.transaction():
                app.execute("SELECT jwt_rls.authenticate(%s)", (token,))
                assert [r[0] for r in app.execute("SELECT body FROM notes")] == [tenant]
        e = error(app, "SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A, jti="revoked-before-dump"),))
        assert e is not None and e.sqlstate == "28000"


def test_dump_with_create_restores_the_0_2_0_tables_and_the_database_settings(cluster, db, hs):
    """`pg_dump --create` / `pg_restore --create` of a database using every
    0.2.0 table: its issuer and audience settings (ALTER DATABASE, only in a
    --create dump), a decryption key, a JWKS source (and its id sequence, so
    a source added after the restore gets a new id), a session whose refresh
    token still rotates, and a revoked subject all come back."""
    name = "dumped_whole"
    db.execute(f"DROP DATABASE IF EXISTS {name}")
    db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    db.execute(f"ALTER DATABASE {name} SET jwt_rls.issuer = '{ISSUER}'")
    db.execute(f"ALTER DATABASE {name} SET jwt_rls.audience = '{AUDIENCE}'")
    secret = jwk.JWK.generate(kty="oct", size=256)
    with psycopg.connect(cluster.dsn(dbname=name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION jwt_rls")
        with conn.cursor() as cur:
            hs.install(cur)
        conn.execute("SELECT jwt_rls.add_decryption_secret('dump-kw', 'A256KW', %s)",
                     (jwk.base64url_decode(secret["k"]),))
        conn.execute("INSERT INTO jwt_rls.jwks_sources (issuer) VALUES ('https://idp-one.example')")
        conn.execute("SELECT jwt_rls.generate_signing_key('dump-signer', 'ES256')")
        refresh = conn.execute("SELECT refresh_token FROM jwt_rls.start_session('user-1', %s::jsonb)",
                               (f'{{"tenant_id": "{TENANT_A}"}}',)).fetchone()[0]
        conn.execute("SELECT jwt_rls.revoke_subject('user-9', now() + interval '1 hour')")
    dump = os.path.join(ROOT, "target", "jwt_rls_dump_create.custom")
    bin_dir = os.path.dirname(PG_CONFIG)
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port), "PGUSER": "postgres"}
    subprocess.run([f"{bin_dir}/pg_dump", "-Fc", "--create", "-f", dump, name], check=True, env=env)
    # SECURITY.md's recipe for a dump that leaves your control: no secrets.
    secret_tables = ["jwt_rls.keys", "jwt_rls.signing_keys", "jwt_rls.decryption_keys"]
    plain = subprocess.run([f"{bin_dir}/pg_dump", *[f"--exclude-table-data={t}" for t in secret_tables], name],
                           check=True, env=env, capture_output=True, text=True).stdout
    assert "https://idp-one.example" in plain  # the other tables' rows are there
    for text in [hs.kid, "dump-kw", "dump-signer", "PRIVATE KEY"]:
        assert text not in plain
    db.execute(f"DROP DATABASE {name}")
    subprocess.run([f"{bin_dir}/pg_restore", "--create", "-d", "postgres", dump], check=True, env=env)

    inner = hs.token(TENANT_A, sub="user-2")
    nested = jwe.JWE(inner.encode(), protected=json.dumps({"alg": "A256KW", "enc": "A256GCM", "cty": "JWT",
                                                             "kid": "dump-kw"}))
    nested.add_recipient(secret)
    with psycopg.connect(cluster.dsn(dbname=name), autocommit=True) as conn:
        # The settings came back: a token of another issuer or audience is refused.
        for wrong in [hs.token(TENANT_A, iss="https://elsewhere.example"), hs.token(TENANT_A, aud="other-api")]:
            e = error(conn, "SELECT jwt_rls.authenticate(%s)", (wrong,))
            assert e is not None and e.sqlstate == "28000"
        with conn.transaction():
            conn.execute("SELECT jwt_rls.authenticate(%s)", (nested.serialize(compact=True),))
            assert claim(conn, "sub") == "user-2"
        e = error(conn, "SELECT jwt_rls.authenticate(%s)", (hs.token(TENANT_A, sub="user-9"),))
        assert e is not None and e.sqlstate == "28000"
        status = conn.execute("SELECT status FROM jwt_rls.rotate_refresh_token(%s)", (refresh,)).fetchone()[0]
        assert status == "ok"
        conn.execute("INSERT INTO jwt_rls.jwks_sources (issuer) VALUES ('https://idp-two.example')")
        ids = [r[0] for r in conn.execute("SELECT id FROM jwt_rls.jwks_sources ORDER BY id")]
        assert len(set(ids)) == 2
    db.execute(f"DROP DATABASE {name}")
