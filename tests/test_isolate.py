"""jwt_rls.isolate(tbl, col, claim): one call gives a table ENABLE + FORCE
row level security and the policies jwt_rls_isolate_{select,insert,update,
delete} in the recommended (SELECT jwt_rls.jwt_claim(...)::type) form.
Proved as the application role with real tokens: a tenant can neither read
nor write another's rows, the owner is isolated too, the claim is read once
per statement (InitPlan), a second call changes nothing, and every table it
cannot protect is refused with its SQLSTATE, DETAIL and HINT."""

import re
import psycopg
import pytest

from support import error, sqlstate
from support.schema import TENANT_A, TENANT_B
from support.tokens import AUDIENCE, ISSUER

DB = "isolate"
OWNER = "iso_owner"  # owns the tables, runs the migrations; not superuser
OTHER = "iso_other"  # owns a table OWNER must not be able to isolate
POLICIES = ["jwt_rls_isolate_delete", "jwt_rls_isolate_insert", "jwt_rls_isolate_select", "jwt_rls_isolate_update"]

SCHEMA = f"""
CREATE EXTENSION jwt_rls;
CREATE EXTENSION postgres_fdw;
CREATE EXTENSION citext;
-- A schema where the application role may create objects, holding the
-- type of a column (review finding: isolate() used to resolve "=" there).
CREATE SCHEMA shady;
GRANT USAGE, CREATE ON SCHEMA shady TO app, {OWNER};
CREATE DOMAIN shady.tid AS text;
GRANT USAGE ON SCHEMA jwt_rls TO app, {OWNER};
GRANT CREATE ON SCHEMA public TO {OWNER};
CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw;
GRANT USAGE ON FOREIGN SERVER loopback TO {OWNER};
SET ROLE {OWNER};
CREATE TABLE accounts (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id uuid NOT NULL, name text);
CREATE INDEX ON accounts (tenant_id);
CREATE TABLE "Weird Table" ("tenant id" text NOT NULL, note text);
CREATE TABLE short_codes (code varchar(3) NOT NULL, note text);
CREATE TABLE char_codes (code char(4) NOT NULL, note text);
CREATE TABLE name_codes (code name NOT NULL);
CREATE TABLE shady_codes (code shady.tid NOT NULL);
CREATE TABLE ci_codes (code public.citext NOT NULL);
CREATE TABLE parted (tenant_id uuid NOT NULL, n int) PARTITION BY LIST (tenant_id);
CREATE TABLE parted_a PARTITION OF parted FOR VALUES IN ('{TENANT_A}');
CREATE TABLE parted_b PARTITION OF parted FOR VALUES IN ('{TENANT_B}');
CREATE TABLE parted_remote (tenant_id uuid NOT NULL, n int) PARTITION BY LIST (tenant_id);
CREATE FOREIGN TABLE parted_remote_a PARTITION OF parted_remote FOR VALUES IN ('{TENANT_A}') SERVER loopback;
CREATE TABLE odd (j json, g int GENERATED ALWAYS AS (1) STORED, i int GENERATED ALWAYS AS IDENTITY, tenant_id uuid);
CREATE VIEW odd_view AS SELECT * FROM odd;
CREATE MATERIALIZED VIEW odd_matview AS SELECT * FROM odd;
CREATE FOREIGN TABLE odd_foreign (tenant_id uuid) SERVER loopback;
CREATE SEQUENCE odd_seq;
CREATE TABLE widened (tenant_id uuid NOT NULL);
CREATE POLICY everyone ON widened USING (true);
CREATE TABLE narrowed (tenant_id uuid NOT NULL, archived boolean NOT NULL DEFAULT false);
CREATE POLICY not_archived ON narrowed AS RESTRICTIVE USING (NOT archived);
CREATE TABLE victim (x int);
RESET ROLE;
CREATE TABLE others (tenant_id uuid NOT NULL);
ALTER TABLE others OWNER TO {OTHER};
GRANT SELECT, INSERT, UPDATE, DELETE ON accounts, "Weird Table", short_codes, char_codes, shady_codes, ci_codes, parted, parted_a, parted_b, narrowed TO app;
"""

ROWS = {TENANT_A: 3, TENANT_B: 5}


@pytest.fixture(scope="module")
def iso_db(cluster, db, signers):
    db.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")  # left by an interrupted run
    for role in (OWNER, OTHER):
        db.execute(f"DROP ROLE IF EXISTS {role}")
    db.execute(f"CREATE ROLE {OWNER} LOGIN; CREATE ROLE {OTHER} NOLOGIN")
    db.execute(f"CREATE DATABASE {DB} TEMPLATE template0")
    db.execute(f"ALTER DATABASE {DB} SET jwt_rls.issuer = '{ISSUER}'")
    db.execute(f"ALTER DATABASE {DB} SET jwt_rls.audience = '{AUDIENCE}'")
    with psycopg.connect(cluster.dsn(dbname=DB), autocommit=True) as admin:
        admin.execute(SCHEMA)
        with admin.cursor() as cur:
            signers["HS256"].install(cur)
            for tenant, n in ROWS.items():
                for i in range(n):
                    cur.execute("INSERT INTO accounts (tenant_id, name) VALUES (%s, %s)", (tenant, f"{tenant} #{i}"))
                    cur.execute("INSERT INTO parted VALUES (%s, %s)", (tenant, i))
                cur.execute("""INSERT INTO "Weird Table" VALUES (%s, 'w')""", (str(tenant),))
            cur.execute("INSERT INTO short_codes VALUES ('abc', 'tenant abc')")
            cur.execute("INSERT INTO char_codes VALUES ('a', 'tenant a'), ('acme', 'tenant acme')")
            cur.execute("INSERT INTO shady_codes VALUES ('victim'), ('mine')")
            cur.execute("INSERT INTO ci_codes VALUES ('abc')")
            cur.execute("INSERT INTO narrowed VALUES (%s, false), (%s, true), (%s, false)", (TENANT_A, TENANT_A, TENANT_B))
        with psycopg.connect(cluster.dsn(user=OWNER, dbname=DB), autocommit=True) as owner:
            for call in ["SELECT jwt_rls.isolate('accounts', 'tenant_id', 'tenant_id')",
                         """SELECT jwt_rls.isolate('"Weird Table"', 'tenant id', 'tenant_id')""",
                         "SELECT jwt_rls.isolate('short_codes', 'code', 'code')",
                         "SELECT jwt_rls.isolate('parted', 'tenant_id', 'tenant_id')",
                         "SELECT jwt_rls.isolate('narrowed', 'tenant_id', 'tenant_id')"]:
                owner.execute(call)
        admin.execute("ANALYZE accounts")
        yield admin
    db.execute(f"DROP DATABASE {DB} WITH (FORCE)")
    db.execute(f"DROP ROLE {OWNER}; DROP ROLE {OTHER}")


@pytest.fixture
def app_conn(cluster, iso_db):
    with psycopg.connect(cluster.dsn(user="app", dbname=DB), autocommit=True) as c:
        yield c


@pytest.fixture
def owner_conn(cluster, iso_db):
    with psycopg.connect(cluster.dsn(user=OWNER, dbname=DB), autocommit=True) as c:
        yield c


def bind(conn, token, how):
    if how == "authenticate":
        conn.execute("SELECT jwt_rls.authenticate(%s)", (token,))
    else:
        conn.execute("SELECT set_config('jwt_rls.token', %s, true)", (token,))


def tenants_seen(conn, table="accounts", col="tenant_id"):
    return {str(r[0]) for r in conn.execute(f"SELECT {col} FROM {table}")}


def all_rows(admin, table="accounts"):
    return admin.execute(f"SELECT tenant_id::text, count(*) FROM {table} GROUP BY 1 ORDER BY 1").fetchall()


@pytest.mark.parametrize("how", ["authenticate", "set_config"])
def test_a_tenant_can_neither_read_nor_write_another_tenants_rows(iso_db, app_conn, hs, how):
    before = all_rows(iso_db)
    failures = []
    with app_conn.transaction():
        bind(app_conn, hs.token(TENANT_A), how)
        if tenants_seen(app_conn) != {str(TENANT_A)}:
            failures.append(f"read: {tenants_seen(app_conn)}")
        if app_conn.execute("SELECT count(*) FROM accounts").fetchone()[0] != ROWS[TENANT_A]:
            failures.append("count")
        # B's rows are invisible to UPDATE and DELETE ...
        if app_conn.execute("UPDATE accounts SET name = 'x' WHERE tenant_id = %s", (TENANT_B,)).rowcount != 0:
            failures.append("updated B's rows")
        if app_conn.execute("DELETE FROM accounts WHERE tenant_id = %s", (TENANT_B,)).rowcount != 0:
            failures.append("deleted B's rows")
        # ... and A cannot write rows into B, by INSERT or by moving its own rows.
        for sql, params in [("INSERT INTO accounts (tenant_id, name) VALUES (%s, 'x')", (TENANT_B,)),
                            ("UPDATE accounts SET tenant_id = %s", (TENANT_B,)),
                            ("INSERT INTO accounts (tenant_id, name) VALUES (%s, 'x') ON CONFLICT DO NOTHING", (TENANT_B,))]:
            state = sqlstate(app_conn, sql, params)
            if state != "42501":
                failures.append(f"{sql}: {state}")
        # Its own tenant it may write.
        app_conn.execute("INSERT INTO accounts (tenant_id, name) VALUES (%s, 'mine')", (TENANT_A,))
        app_conn.execute("DELETE FROM accounts WHERE name = 'mine'")
    assert failures == []
    assert all_rows(iso_db) == before, "no row of B changed"


def test_without_a_token_nothing_is_read_or_written(app_conn):
    assert app_conn.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0
    assert sqlstate(app_conn, "INSERT INTO accounts (tenant_id, name) VALUES (%s, 'x')", (TENANT_A,)) == "42501"
    assert app_conn.execute("UPDATE accounts SET name = 'x'").rowcount == 0
    assert app_conn.execute("DELETE FROM accounts").rowcount == 0


def test_the_table_owner_is_isolated_too(owner_conn, hs):
    with owner_conn.transaction():
        bind(owner_conn, hs.token(TENANT_B), "authenticate")
        assert tenants_seen(owner_conn) == {str(TENANT_B)}
        assert sqlstate(owner_conn, "INSERT INTO accounts (tenant_id, name) VALUES (%s, 'x')", (TENANT_A,)) == "42501"
    assert owner_conn.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0, "FORCE: no token, no rows"


def test_the_claim_is_read_once_per_statement_in_an_initplan(app_conn, hs):
    with app_conn.transaction():
        bind(app_conn, hs.token(TENANT_A), "authenticate")
        app_conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in app_conn.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT * FROM accounts"))
        # EXPLAIN names the InitPlan's value "$0" before PostgreSQL 17 and
        # "(InitPlan 1).col1" from 17 on, and shows "rows=1.00" from 18 on.
        param = r"(\$0|\(InitPlan 1\)\.col1)"
        assert re.search(r"InitPlan 1\b", plan), plan
        assert re.search(rf"Filter: \(tenant_id = {param}\)", plan), plan
        # The InitPlan (the sub-select calling jwt_claim()) ran once.
        assert re.search(r"->  Result \(actual rows=1(\.00)? loops=1\)", plan), plan
        app_conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = on")
        plan = "\n".join(r[0] for r in app_conn.execute("EXPLAIN (COSTS OFF) SELECT * FROM accounts"))
        assert re.search(rf"Index Cond: \(tenant_id = {param}\)", plan), plan


def test_a_second_call_changes_nothing(iso_db, owner_conn):
    snapshot = """SELECT p.oid, p.polname, p.polcmd, p.polpermissive, p.polroles::text,
                         pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid),
                         c.relrowsecurity, c.relforcerowsecurity
                    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
                   WHERE c.relname = 'accounts' ORDER BY p.polname"""
    before = iso_db.execute(snapshot).fetchall()
    assert [r[1] for r in before] == POLICIES
    result = owner_conn.execute("SELECT jwt_rls.isolate('accounts', 'tenant_id', 'tenant_id')").fetchone()[0]
    assert result.startswith("already isolated, unchanged"), result
    assert iso_db.execute(snapshot).fetchall() == before, "same policies, same OIDs"
    for cmd, qual, check in [(r[2], r[5], r[6]) for r in before]:
        expected = "(tenant_id = ( SELECT (jwt_rls.jwt_claim('tenant_id'::text))::uuid AS jwt_claim))"
        assert (qual, check) == {"r": (expected, None), "a": (None, expected),
                                 "w": (expected, expected), "d": (expected, None)}[cmd]


def test_another_claim_replaces_only_its_own_policies(iso_db, owner_conn, app_conn, hs):
    policies = "SELECT polname, pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'narrowed'::regclass ORDER BY 1"
    restrictive = [r for r in iso_db.execute(policies) if r[0] == "not_archived"]
    try:
        owner_conn.execute("SELECT jwt_rls.isolate('narrowed', 'tenant_id', 'org')")
        rows = iso_db.execute(policies).fetchall()
        assert [r[0] for r in rows] == POLICIES + ["not_archived"]
        assert [r for r in rows if r[0] == "not_archived"] == restrictive, "someone else's policy untouched"
        assert all("'org'" in r[1] for r in rows if r[0] in ("jwt_rls_isolate_select", "jwt_rls_isolate_delete"))
        with app_conn.transaction():
            bind(app_conn, hs.token(TENANT_B, org=str(TENANT_A)), "authenticate")
            # Claim org = A; the restrictive policy still hides A's archived row.
            assert app_conn.execute("SELECT count(*) FROM narrowed").fetchone()[0] == 1
            assert tenants_seen(app_conn, "narrowed") == {str(TENANT_A)}
    finally:
        owner_conn.execute("SELECT jwt_rls.isolate('narrowed', 'tenant_id', 'tenant_id')")


def test_quoted_identifiers_and_a_hostile_claim_name(iso_db, owner_conn, app_conn, hs):
    with app_conn.transaction():
        bind(app_conn, hs.token(TENANT_A), "authenticate")
        assert tenants_seen(app_conn, '"Weird Table"', '"tenant id"') == {str(TENANT_A)}
        assert sqlstate(app_conn, """INSERT INTO "Weird Table" VALUES (%s, 'x')""", (str(TENANT_B),)) == "42501"
    hostile = "x'); DROP TABLE victim; --"
    try:
        owner_conn.execute("""SELECT jwt_rls.isolate('"Weird Table"', 'tenant id', %s)""", (hostile,))
        assert iso_db.execute("SELECT to_regclass('victim')").fetchone()[0] is not None, "victim survives"
        qual = iso_db.execute("""SELECT pg_get_expr(polqual, polrelid) FROM pg_policy
                                  WHERE polrelid = '"Weird Table"'::regclass AND polname = 'jwt_rls_isolate_select'""").fetchone()[0]
        assert "jwt_claim('x''); DROP TABLE victim; --'::text)" in qual, qual
    finally:
        owner_conn.execute("""SELECT jwt_rls.isolate('"Weird Table"', 'tenant id', 'tenant_id')""")


def test_a_varchar_column_is_compared_without_truncating_the_claim(app_conn, hs):
    """A cast to varchar(3) would cut the claim 'abcd' to 'abc', matching tenant abc's row."""
    for code, seen in [("abc", 1), ("abcd", 0), ("ab", 0)]:
        with app_conn.transaction():
            bind(app_conn, hs.token(TENANT_A, code=code), "authenticate")
            assert app_conn.execute("SELECT count(*) FROM short_codes").fetchone()[0] == seen, code


def test_a_char_column_is_compared_without_truncating_the_claim(owner_conn, app_conn, hs):
    """format_type() spells bpchar without typmod as "character", which is
    char(1): tenant "acme" would have read tenant "a"'s rows (review)."""
    owner_conn.execute("SELECT jwt_rls.isolate('char_codes', 'code', 'code')")
    for code, notes in [("acme", ["tenant acme"]), ("a", ["tenant a"]), ("ab", [])]:
        with app_conn.transaction():
            bind(app_conn, hs.token(TENANT_A, code=code), "authenticate")
            assert [r[0] for r in app_conn.execute("SELECT note FROM char_codes ORDER BY note")] == notes, code
    e = error(owner_conn, "SELECT jwt_rls.isolate('name_codes', 'code', 'code')")
    assert e.sqlstate == "42804" and "truncates" in e.diag.message_detail


def test_an_operator_planted_in_the_type_schema_is_not_used(owner_conn, app_conn, hs):
    """The equality comes from the type's default operator class, never from
    an "=" someone created in a schema on the path (review)."""
    app_conn.execute("""CREATE FUNCTION shady.tid_eq(shady.tid, shady.tid) RETURNS boolean
                        LANGUAGE sql IMMUTABLE AS 'SELECT true'""")
    app_conn.execute("CREATE OPERATOR shady.= (LEFTARG = shady.tid, RIGHTARG = shady.tid, FUNCTION = shady.tid_eq)")
    owner_conn.execute("SELECT jwt_rls.isolate('shady_codes', 'code', 'code')")
    with app_conn.transaction():
        bind(app_conn, hs.token(TENANT_A, code="mine"), "authenticate")
        assert [r[0] for r in app_conn.execute("SELECT code FROM shady_codes")] == ["mine"]


def test_a_type_from_another_schema_keeps_its_own_equality(owner_conn, app_conn, hs):
    """citext (in public) compares with citext's "=", case-insensitively,
    though isolate() runs with search_path pg_catalog, pg_temp."""
    result = owner_conn.execute("SELECT jwt_rls.isolate('ci_codes', 'code', 'code')").fetchone()[0]
    assert "public.ci_codes" in result and "::public.citext)" in result, result
    for code, seen in [("abc", 1), ("ABC", 1), ("abd", 0)]:
        with app_conn.transaction():
            bind(app_conn, hs.token(TENANT_A, code=code), "authenticate")
            assert app_conn.execute("SELECT count(*) FROM ci_codes").fetchone()[0] == seen, code


def test_partitions_are_isolated_when_queried_directly(iso_db, app_conn, hs):
    flags = iso_db.execute("""SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, count(p.*)
                                FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid
                               WHERE c.relname IN ('parted', 'parted_a', 'parted_b') GROUP BY 1, 2, 3 ORDER BY 1""").fetchall()
    assert flags == [(name, True, True, 4) for name in ("parted", "parted_a", "parted_b")]
    with app_conn.transaction():
        bind(app_conn, hs.token(TENANT_A), "authenticate")
        assert app_conn.execute("SELECT count(*) FROM parted").fetchone()[0] == ROWS[TENANT_A]
        assert app_conn.execute("SELECT count(*) FROM parted_b").fetchone()[0] == 0, "B's partition, queried directly"
        assert sqlstate(app_conn, "INSERT INTO parted_b VALUES (%s, 1)", (TENANT_B,)) == "42501"


REFUSALS = [
    # (call, SQLSTATE, words of the message, words of the DETAIL)
    ("SELECT jwt_rls.isolate('odd_view', 'tenant_id', 'tenant_id')", "42809", "tables only", "is a view"),
    ("SELECT jwt_rls.isolate('odd_matview', 'tenant_id', 'tenant_id')", "42809", "tables only", "materialized view"),
    ("SELECT jwt_rls.isolate('odd_foreign', 'tenant_id', 'tenant_id')", "42809", "tables only", "foreign table"),
    ("SELECT jwt_rls.isolate('odd_seq', 'last_value', 'tenant_id')", "42809", "tables only", "sequence"),
    ("SELECT jwt_rls.isolate('parted_remote', 'tenant_id', 'tenant_id')", "42809", "every partition", "parted_remote_a"),
    ("SELECT jwt_rls.isolate('odd', 'nope', 'tenant_id')", "42703", "does not exist", "no column named nope"),
    ("SELECT jwt_rls.isolate('odd', 'ctid', 'tenant_id')", "42P10", "system column", "ctid"),
    ("SELECT jwt_rls.isolate('odd', 'g', 'tenant_id')", "42P10", "generated column", "generated"),
    ("SELECT jwt_rls.isolate('odd', 'i', 'tenant_id')", "42P10", "generated column", "identity"),
    ("SELECT jwt_rls.isolate('odd', 'j', 'tenant_id')", "42883", "cannot be compared", "no default btree or hash operator class"),
    ("SELECT jwt_rls.isolate('others', 'tenant_id', 'tenant_id')", "42501", "must be owner", OTHER),
    ("SELECT jwt_rls.isolate('jwt_rls.keys', 'kid', 'tenant_id')", "0A000", "extension tables", "jwt_rls"),
    ("SELECT jwt_rls.isolate('pg_catalog.pg_class', 'relname', 'tenant_id')", "0A000", "system", "pg_catalog"),
    ("CREATE TEMP TABLE tmp (tenant_id uuid); SELECT jwt_rls.isolate('tmp', 'tenant_id', 'tenant_id')",
     "0A000", "temporary", "temporary table"),
    ("SELECT jwt_rls.isolate('widened', 'tenant_id', 'tenant_id')", "55000", "permissive policies", "everyone"),
    ("SELECT jwt_rls.isolate('odd', 'tenant_id', '')", "22023", "claim name is empty", None),
    ("SELECT jwt_rls.isolate('odd', 'tenant_id', NULL)", "22004", "needs a table", None),
    ("SELECT jwt_rls.isolate(NULL, 'tenant_id', 'tenant_id')", "22004", "needs a table", None),
]


def test_every_table_it_cannot_protect_is_refused_with_a_reason(iso_db, owner_conn):
    policies_before = iso_db.execute("SELECT count(*) FROM pg_policy").fetchone()[0]
    failures = []
    for call, state, message, detail in REFUSALS:
        e = error(owner_conn, call)
        if e is None:
            failures.append(f"{call}: succeeded")
            continue
        d = e.diag
        if e.sqlstate != state or message not in d.message_primary or d.message_primary != d.message_primary.lower():
            failures.append(f"{call}: {e.sqlstate} {d.message_primary}")
        if detail is not None and detail not in (d.message_detail or ""):
            failures.append(f"{call}: DETAIL {d.message_detail!r}")
        if not d.message_hint:
            failures.append(f"{call}: no HINT")
    assert failures == []
    assert len(REFUSALS) > 0
    assert iso_db.execute("SELECT count(*) FROM pg_policy").fetchone()[0] == policies_before, "nothing created"
    assert iso_db.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'odd'").fetchone()[0] is False


def test_the_application_role_cannot_use_it_on_tables_it_does_not_own(iso_db, app_conn):
    before = iso_db.execute("SELECT count(*) FROM pg_policy").fetchone()[0]
    assert sqlstate(app_conn, "SELECT jwt_rls.isolate('accounts', 'tenant_id', 'sub')") == "42501"
    assert sqlstate(app_conn, "SELECT jwt_rls.isolate('others', 'tenant_id', 'sub')") == "42501"
    assert iso_db.execute("SELECT count(*) FROM pg_policy").fetchone()[0] == before
