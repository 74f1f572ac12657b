"""A libpq client that logs in with an OAuth bearer token (PostgreSQL 18's
OAUTHBEARER), for the tests and the login benchmark.

libpq 18 asks the application for a token through its auth-data hook
(`PQsetAuthDataHook`, `PQAUTHDATA_OAUTH_BEARER_TOKEN`); the PyPI server
builds' libpq has the hook but no libcurl, so the hook is the only way in
(no device flow), which is what this client uses, through ctypes.

The hook is per process, and this libpq must not meet another libpq in
the same process, so each session is a child process: `OAuthSession`
starts `python oauth_client.py`, hands it the token through its
environment (never its command line, which `ps` shows), and sends it SQL
one line of JSON at a time.
"""

import ctypes
import json
import os
import subprocess
import sys
import time


PQAUTHDATA_OAUTH_BEARER_TOKEN = 1
CONNECTION_OK = 0
PGRES_COMMAND_OK, PGRES_TUPLES_OK = 1, 2
PG_DIAG_SQLSTATE = ord("C")


def libpq_path():
    """This major's libpq (the one with the hook from 18 on)."""
    from .pg import pg_config  # the parent's import: the child runs as a script
    return os.path.join(pg_config("--libdir"), "libpq.so.5")


def _env(token):
    from .pg import pg_config
    env = dict(os.environ, JWT_RLS_OAUTH_TOKEN=token or "", LIBPQ=libpq_path())
    env["LD_LIBRARY_PATH"] = pg_config("--libdir")
    return env


class OAuthSession:
    """One connection logged in with `token`; `.error` is libpq's message
    when the login failed (then every query raises)."""

    def __init__(self, conninfo, token):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "session", conninfo],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(token))
        first = json.loads(self.proc.stdout.readline())
        self.error = first.get("error")

    @property
    def connected(self):
        return self.error is None

    def query(self, sql):
        """Rows of `sql` as lists of text (None for NULL); raises
        QueryError with the SQLSTATE when the server refuses it."""
        self.proc.stdin.write(json.dumps({"sql": sql}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        if "rows" not in answer:
            raise QueryError(answer.get("sqlstate"), answer.get("message", ""))
        return answer["rows"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class QueryError(Exception):
    def __init__(self, sqlstate, message):
        super().__init__(f"{sqlstate}: {message}")
        self.sqlstate = sqlstate
        self.message = message


def logins(conninfo, attempts):
    """Logs in once per (token, sql) of `attempts`, in one child process;
    for each, {"error": libpq's message} or {"rows": ...} (or a refused
    query's {"sqlstate", "message"})."""
    feed = "".join(json.dumps({"token": t, "sql": q}) + "\n" for t, q in attempts)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "logins", conninfo],
                         input=feed, capture_output=True, text=True, env=_env(""), check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def connect_loop(conninfo, token, n):
    """Seconds for `n` logins with `token` (None: no OAuth, e.g. a
    password in `conninfo`), each connection closed at once: what a login
    costs, measured the way a client sees it."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "loop", conninfo, str(n)],
                         capture_output=True, text=True, env=_env(token), check=True)
    return json.loads(out.stdout)["seconds"]


# ---- the child process ----------------------------------------------------

class _Request(ctypes.Structure):
    """PGoauthBearerRequest of libpq-fe.h (PostgreSQL 18)."""
    _fields_ = [("openid_configuration", ctypes.c_char_p), ("scope", ctypes.c_char_p),
                ("async_", ctypes.c_void_p), ("cleanup", ctypes.c_void_p),
                ("token", ctypes.c_void_p), ("user", ctypes.c_void_p)]


_HOOK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def _load():
    lib = ctypes.CDLL(os.environ["LIBPQ"])
    lib.PQconnectdb.restype = ctypes.c_void_p
    lib.PQconnectdb.argtypes = [ctypes.c_char_p]
    lib.PQstatus.argtypes = [ctypes.c_void_p]
    lib.PQerrorMessage.restype = ctypes.c_char_p
    lib.PQerrorMessage.argtypes = [ctypes.c_void_p]
    lib.PQfinish.argtypes = [ctypes.c_void_p]
    lib.PQexec.restype = ctypes.c_void_p
    lib.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.PQresultStatus.argtypes = [ctypes.c_void_p]
    lib.PQntuples.argtypes = [ctypes.c_void_p]
    lib.PQnfields.argtypes = [ctypes.c_void_p]
    lib.PQgetvalue.restype = ctypes.c_char_p
    lib.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.PQgetisnull.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.PQresultErrorField.restype = ctypes.c_char_p
    lib.PQresultErrorField.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.PQresultErrorMessage.restype = ctypes.c_char_p
    lib.PQresultErrorMessage.argtypes = [ctypes.c_void_p]
    lib.PQclear.argtypes = [ctypes.c_void_p]
    lib.PQdefaultAuthDataHook.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.PQsetAuthDataHook.argtypes = [_HOOK]
    return lib


class _Hook:
    """Answers libpq's request for a bearer token with the current token;
    every other request goes to libpq's default. libpq copies the token
    out of the buffer."""

    def __init__(self, lib):
        self.lib = lib
        self.buf = None
        self.asked = 0
        self.callback = _HOOK(self._answer)  # kept alive with the hook
        lib.PQsetAuthDataHook(self.callback)

    def use(self, token):
        self.buf = ctypes.create_string_buffer(token.encode()) if token else None

    def _answer(self, kind, conn, data):
        if kind != PQAUTHDATA_OAUTH_BEARER_TOKEN or self.buf is None:
            return self.lib.PQdefaultAuthDataHook(kind, conn, data)
        self.asked += 1
        request = ctypes.cast(data, ctypes.POINTER(_Request)).contents
        request.token = ctypes.cast(self.buf, ctypes.c_void_p)
        return 1


def _run(lib, conn, sql):
    res = lib.PQexec(conn, sql.encode())
    try:
        status = lib.PQresultStatus(res)
        if status not in (PGRES_COMMAND_OK, PGRES_TUPLES_OK):
            state = lib.PQresultErrorField(res, PG_DIAG_SQLSTATE)
            return {"sqlstate": state.decode() if state else None,
                    "message": (lib.PQresultErrorMessage(res) or b"").decode(errors="replace")}
        rows = []
        for r in range(lib.PQntuples(res)):
            rows.append([None if lib.PQgetisnull(res, r, c) else lib.PQgetvalue(res, r, c).decode()
                         for c in range(lib.PQnfields(res))])
        return {"rows": rows}
    finally:
        lib.PQclear(res)


def _error(lib, conn):
    return lib.PQerrorMessage(conn).decode(errors="replace")


def _child(mode, conninfo, n=None):
    lib = _load()
    hook = _Hook(lib)
    hook.use(os.environ.get("JWT_RLS_OAUTH_TOKEN", ""))
    if mode == "loop":
        started = time.perf_counter()
        for _ in range(int(n)):
            conn = lib.PQconnectdb(conninfo.encode())
            if lib.PQstatus(conn) != CONNECTION_OK:
                sys.exit(f"login failed: {_error(lib, conn)}")
            lib.PQfinish(conn)
        print(json.dumps({"seconds": time.perf_counter() - started}))
        return
    if mode == "logins":
        # One login per line {"token", "sql"}: {"error"} or {"rows"}.
        for line in sys.stdin:
            ask = json.loads(line)
            hook.use(ask["token"])
            conn = lib.PQconnectdb(conninfo.encode())
            if lib.PQstatus(conn) != CONNECTION_OK:
                print(json.dumps({"error": _error(lib, conn)}), flush=True)
            else:
                print(json.dumps(_run(lib, conn, ask["sql"])), flush=True)
            lib.PQfinish(conn)
        return
    conn = lib.PQconnectdb(conninfo.encode())
    if lib.PQstatus(conn) != CONNECTION_OK:
        print(json.dumps({"error": _error(lib, conn)}), flush=True)
        lib.PQfinish(conn)
        return
    print(json.dumps({"asked": hook.asked}), flush=True)
    for line in sys.stdin:
        print(json.dumps(_run(lib, conn, json.loads(line)["sql"])), flush=True)
    lib.PQfinish(conn)


if __name__ == "__main__":
    _child(*sys.argv[1:])
