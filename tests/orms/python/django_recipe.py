"""Django (psycopg 3 backend) behind PgBouncer in transaction mode.

`transaction.atomic()` is the request's transaction; its first statement
binds the token. Settings for a transaction pooler:
  server_side_binding: the token travels as a bind parameter; Django's
    default (client-side binding) would write it into the SQL text, which
    the server logs with any failing statement (log_min_error_statement).
  prepare_threshold None: see psycopg_pool_recipe.
  DISABLE_SERVER_SIDE_CURSORS: .iterator() would otherwise declare a cursor
    that the pooler cannot keep between transactions."""

import threading

import django
from django.conf import settings
from django.db import connection, connections, transaction

from . import PROBE


def configure(host, port):
    """Django's settings, once per process (what settings.py would say)."""
    settings.configure(
        DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql", "HOST": host, "PORT": port, "NAME": "postgres",
            "USER": "app", "CONN_MAX_AGE": None, "DISABLE_SERVER_SIDE_CURSORS": True,
            "OPTIONS": {"server_side_binding": True, "prepare_threshold": None},
        }},
        INSTALLED_APPS=[], USE_TZ=True)
    django.setup()


def as_tenant(_, token, work):
    """The recipe (in a view, or a middleware around it)."""
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT jwt_rls.authenticate(%s)", [token])
        return work(None)


def without_token(_, work):
    return work(None)


def invoice_tenants(_):
    from .django_models import Invoice  # models exist once settings do
    return [str(t) for t in Invoice.objects.values_list("tenant_id", flat=True)]


def probe(_):
    with connection.cursor() as cur:
        cur.execute(PROBE)
        pid, claim, at = cur.fetchone()
    return {"pid": pid, "claim": claim, "at": at}


def connect(_url):
    return None  # Django holds one connection per thread itself


def close_in_threads(executor, threads):
    """Closes the connection each of the executor's threads holds."""
    barrier = threading.Barrier(threads)

    def close():
        barrier.wait()  # every thread takes one, so each closes its own
        connections.close_all()

    for f in [executor.submit(close) for _ in range(threads)]:
        f.result()
