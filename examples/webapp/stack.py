"""The reference app's whole stack on this machine: a throwaway PostgreSQL
cluster with jwt_rls preloaded (DPoP's replay table lives in shared
memory), the two-tenant invoices schema and setup.sql, two PgBouncers in
transaction mode (one logs in as the API role `app`, one as the login
service `webapp_login`), the users, and `node server.mjs` on 127.0.0.1.

    .venv/bin/python examples/webapp/stack.py [--port 8080]

(bash examples/webapp/start.sh installs what is missing first.) Prints the
URL and the two demo users' passwords, made up at each start; Ctrl-C stops
everything and removes the cluster. tests/test_webapp.py starts the same
Stack."""

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))
from support.dpop import wait_until_proofs_accepted  # noqa: E402
from support.pgbouncer import PgBouncer  # noqa: E402
from support.pgcluster import Cluster, free_port, read_text  # noqa: E402
from support.schema import SCHEMA, TENANT_A, TENANT_B, insert_invoices  # noqa: E402


def url_of(bouncer, user):
    return f"postgresql://{user}@127.0.0.1:{bouncer.port}/postgres"


class Stack:
    """`users`: {username: (tenant uuid, password)}. `access_token_lifetime`:
    seconds, for the login service's jwt_rls.sign_lifetime (None: jwt_rls's
    default, 900)."""

    def __init__(self, users, port=None, access_token_lifetime=None, log_path=None):
        self.users = users
        self.port = port or free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.lifetime = access_token_lifetime
        self.log_path = log_path
        self.cluster = self.apps = self.logins = self.server = self.log = None

    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        self.cluster = Cluster(conf=["shared_preload_libraries = 'jwt_rls'"]).start()
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as admin:
            admin.execute(SCHEMA)
            with admin.cursor() as cur:
                insert_invoices(cur)
            with open(os.path.join(HERE, "setup.sql")) as f:
                admin.execute(f.read())
            if self.lifetime is not None:
                # Before the poolers open their server connections, which
                # read a role's settings when they start.
                admin.execute(f"ALTER ROLE webapp_login SET jwt_rls.sign_lifetime = {int(self.lifetime)}")
        lines = "".join(json.dumps({"username": name, "tenant_id": str(tenant), "password": password}) + "\n"
                        for name, (tenant, password) in self.users.items())
        subprocess.run(["node", "add-user.mjs"], cwd=HERE, input=lines, text=True, check=True,
                       capture_output=True, env={**os.environ, "WEBAPP_ADMIN_DATABASE_URL":
                                                 f"postgresql://postgres@127.0.0.1:{self.cluster.port}/postgres"})
        self.apps = PgBouncer(self.cluster, "transaction", pool_size=4).start()
        self.logins = PgBouncer(self.cluster, "transaction", pool_size=2, user="webapp_login").start()
        # The app's log (a file for the tests; None: this terminal).
        self.log = open(self.log_path, "w") if self.log_path else None
        self.server = subprocess.Popen(
            ["node", "server.mjs"], cwd=HERE, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "WEBAPP_PORT": str(self.port), "WEBAPP_ORIGIN": self.origin,
                 "WEBAPP_APP_DATABASE_URL": url_of(self.apps, "app"),
                 "WEBAPP_LOGIN_DATABASE_URL": url_of(self.logins, "webapp_login")})
        self._wait_until_serving()
        # A fresh server refuses every DPoP proof for its first 10 s.
        wait_until_proofs_accepted(self.cluster.dsn())

    def _wait_until_serving(self, timeout=30):
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.origin + "/", timeout=2):
                    return
            except OSError:
                if self.server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the app did not start (exit {self.server.poll()}): {self.server_log()}")
                time.sleep(0.1)

    def server_log(self):
        return read_text(self.log_path) if self.log_path else ""

    def stop(self):
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        for bouncer in (self.logins, self.apps):
            if bouncer is not None:
                bouncer.stop()
        if self.cluster is not None:
            self.cluster.remove()
        if self.log is not None:
            self.log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    users = {"alice": (TENANT_A, secrets.token_urlsafe(12)), "bob": (TENANT_B, secrets.token_urlsafe(12))}
    stack = Stack(users, port=args.port)
    print("starting PostgreSQL with jwt_rls, two PgBouncers and the app (about 15 s) ...", flush=True)
    stack.start()
    print(f"\nThe reference app is on {stack.origin}/ (Ctrl-C stops it and removes its database)")
    for name, (tenant, password) in users.items():
        print(f"  user {name:6} password {password}  (tenant {tenant})")
    print(flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        stack.server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
