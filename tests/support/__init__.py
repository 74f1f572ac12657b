"""Helpers shared by the scenario tests (and by scripts/bench.py and
scripts/demo.py, which put tests/ on sys.path as conftest.py does).

Modules:
  schema     the two-tenant schema the fixtures install, and readers of it
  tokens     keys and tokens made by an independent library (PyJWT)
  hostile    the hostile-token catalog
  pgcluster  throwaway PostgreSQL clusters
  pgbouncer  a throwaway PgBouncer in front of one

This module: base64url, and running SQL as a client.
"""

import base64

import psycopg


def b64url(data: bytes) -> str:
    """Unpadded base64url, as in a JWS."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Decodes unpadded (or padded) base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def error(conn, sql, params=None):
    """The psycopg.Error that `sql` raises, or None when it succeeds. It runs
    in its own transaction (a savepoint inside one), so conn stays usable."""
    try:
        with conn.transaction():
            conn.execute(sql, params)
    except psycopg.Error as e:
        return e
    return None


def sqlstate(conn, sql, params=None):
    """The SQLSTATE that `sql` fails with, or None when it succeeds."""
    e = error(conn, sql, params)
    return None if e is None else e.sqlstate


def backend_pid(conn):
    """The server's pid for conn, asked now: conn.info.backend_pid is the
    one libpq recorded at connect, which never changes."""
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def claim(conn, name="tenant_id"):
    return conn.execute("SELECT jwt_rls.jwt_claim(%s)", (name,)).fetchone()[0]


def make_db(admin, name, settings):
    """A new database with `ALTER DATABASE ... SET jwt_rls.<key>` for each
    of `settings`. From template0: autovacuum never holds it, unlike
    template1 during a busy run."""
    admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    for key, value in settings.items():
        admin.execute(f"ALTER DATABASE {name} SET jwt_rls.{key} = '{value}'")
