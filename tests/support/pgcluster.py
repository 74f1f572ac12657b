"""Throwaway PostgreSQL clusters for the demo and the end-to-end tests.

Postgres refuses to run as root, so when we are root every server command
runs as the `postgres` user through sudo. Clusters listen on 127.0.0.1 only,
with trust authentication, and are removed on stop.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

from .pg import PG_BIN, SERVER_ENV  # noqa: F401 (the major under test; importers use PG_BIN)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_env(args):
    """args run with the server environment this major needs."""
    return ["env", *[f"{k}={v}" for k, v in SERVER_ENV.items()], *args] if SERVER_ENV else args


def as_postgres(args, **kw):
    args = with_env(args)
    if os.geteuid() == 0:
        args = ["sudo", "-n", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


class Cluster:
    """initdb + pg_ctl start; `conf` lines are appended to postgresql.conf."""

    def __init__(self, conf=(), port=None, data_dir=None, init=True):
        self.port = port or free_port()
        self.base = tempfile.mkdtemp(prefix="jwt_rls_pg_")
        os.chmod(self.base, 0o755)
        self.data = data_dir or os.path.join(self.base, "data")
        self.log = os.path.join(self.base, "server.log")
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        if init:
            as_postgres([f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                         "--no-sync", "-E", "UTF8", "--locale=C"])
            with open(self.conf_path, "a") as f:
                f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n")
                f.write(f"unix_socket_directories = '{self.base}'\nfsync = off\n")
                for line in conf:
                    f.write(line + "\n")

    @property
    def conf_path(self):
        return os.path.join(self.data, "postgresql.conf")

    def start(self):
        as_postgres([f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start"])
        return self

    def start_as_standby_of(self, primary, conf=(), fast_checkpoint=False):
        """For a Cluster(init=False): a streaming hot standby of `primary`
        (pg_basebackup -R, so standby.signal and primary_conninfo are
        written), its own port and socket directory, `conf` lines
        appended; started."""
        checkpoint = ["-c", "fast"] if fast_checkpoint else []
        as_postgres([f"{PG_BIN}/pg_basebackup", "-D", self.data, "-R", "-X", "stream", *checkpoint,
                     "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"])
        with open(self.conf_path, "a") as f:
            f.write(f"port = {self.port}\nunix_socket_directories = '{self.base}'\nhot_standby = on\n")
            for line in conf:
                f.write(line + "\n")
        return self.start()

    def stop(self, mode="fast"):
        subprocess.run((["sudo", "-n", "-u", "postgres", "--"] if os.geteuid() == 0 else [])
                       + with_env([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"]),
                       capture_output=True)

    def remove(self):
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def dsn(self, user="postgres", dbname="postgres", **extra):
        parts = [f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"]
        parts += [f"{k}={v}" for k, v in extra.items()]
        return " ".join(parts)

    def server_log(self):
        return read_text(self.log)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.remove()


def read_text(path):
    """A log file's text, or "" before the server has written one."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for(predicate, timeout=30, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
