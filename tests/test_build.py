"""The installed build and the upgrade path.

- After the test command (scripts/test.sh), the library PostgreSQL loads is
  the release build of this tree: `cargo pgrx test` installs a debug build,
  which must never be left in place silently.
- `ALTER EXTENSION jwt_rls UPDATE` from the released 0.1.0 schema gives the
  same catalog as a fresh install of this version, and keeps the keys.
"""

import hashlib
import os
import re
import shutil
import subprocess

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_CONFIG = f"/usr/lib/postgresql/{os.environ.get('PG_MAJOR', '15')}/bin/pg_config"


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
       concat_ws(' ', pg_get_function_result(p.oid), p.provolatile, p.proparallel, p.proisstrict,
                 p.prosecdef, p.proconfig::text, p.proacl::text, obj_description(p.oid, 'pg_proc'))
  FROM pg_proc p WHERE p.pronamespace = 'jwt_rls'::regnamespace
UNION ALL
SELECT 'relation', c.relname, concat_ws(' ', c.relkind, c.relacl::text, c.relrowsecurity,
       obj_description(c.oid, 'pg_class'),
       (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull
                          || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), ', ' ORDER BY a.attnum)
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
SELECT 'config', c.tab::regclass::text, c.cond
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS c(tab, cond) WHERE e.extname = 'jwt_rls'
ORDER BY 1, 2
"""


def catalog(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(CATALOG).fetchall()


def test_update_from_0_1_0_equals_a_fresh_install_and_keeps_keys(cluster, db, hs):
    # The released 0.1.0 schema, as a package of 0.1.0 shipped it.
    extdir = os.path.join(pg_config("--sharedir"), "extension")
    shutil.copy(os.path.join(ROOT, "sql", "jwt_rls--0.1.0.sql"), extdir)
    for name in ["upgraded", "fresh"]:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    token = hs.token("aaaaaaaa-0000-4000-8000-000000000001")
    with psycopg.connect(cluster.dsn(dbname="upgraded"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION jwt_rls VERSION '0.1.0'")
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
