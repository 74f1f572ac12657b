"""A throwaway PgBouncer in front of a test cluster (runs as `postgres`)."""

import os
import shutil
import subprocess
import tempfile

from support.pgcluster import as_postgres, free_port, read_text, wait_for


class PgBouncer:
    def __init__(self, cluster, pool_mode, pool_size=4, user="app", dbname="postgres"):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="jwt_rls_pgbouncer_")
        os.chmod(self.dir, 0o755)
        self.ini = os.path.join(self.dir, "pgbouncer.ini")
        self.log = os.path.join(self.dir, "pgbouncer.log")
        # auth_type = any: the client's name is ignored and every server
        # connection logs in as `user`, the application role.
        with open(self.ini, "w") as f:
            f.write(f"""[databases]
{dbname} = host=127.0.0.1 port={cluster.port} dbname={dbname} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = any
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_db_connections = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
logfile = {self.log}
pidfile = {self.dir}/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
""")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.ini, "postgres", "postgres")

    def start(self):
        as_postgres(["/usr/sbin/pgbouncer", "-d", self.ini])
        assert wait_for(lambda: os.path.exists(os.path.join(self.dir, "pgbouncer.pid")), 20), self.read_log()
        return self

    def stop(self):
        pidfile = os.path.join(self.dir, "pgbouncer.pid")
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                pid = int(f.read().strip())
            subprocess.run(["kill", "-TERM", str(pid)], capture_output=True)
            wait_for(lambda: not os.path.exists(pidfile), 10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def read_log(self):
        return read_text(self.log)

    def dsn(self, dbname="postgres"):
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user=app"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
