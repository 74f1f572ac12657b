"""Which PostgreSQL the tests run against: the major in $PG_MAJOR (default
15), found where scripts/pg-majors.sh puts it (15 is Debian's, the others
are unpacked under $JWT_RLS_PG_CACHE). One place, so that every scenario,
the golden output and the benchmarks follow the same major."""

import os
import subprocess

MAJOR = int(os.environ.get("PG_MAJOR", "15"))
CACHE = os.environ.get("JWT_RLS_PG_CACHE", "/var/cache/jwt_rls")


def home(major=MAJOR):
    return "/usr/lib/postgresql/15" if major == 15 else os.path.join(CACHE, f"postgresql-{major}")


PG_BIN = os.environ.get("PG_BIN", os.path.join(home(), "bin"))
PG_CONFIG = os.path.join(PG_BIN, "pg_config")


def pg_config(*args):
    """pg_config's answer for this major (e.g. "--sharedir")."""
    return subprocess.run([PG_CONFIG, *args], check=True, capture_output=True, text=True).stdout.strip()


def is_debian():
    """Whether this major is Debian's package (only 15 here), which the
    Debian package tests and apt-get installs need."""
    return MAJOR == 15


# cargo-pgrx's arguments that build for this major (scripts/pg-majors.sh's
# pgrx_build_args_of).
PGRX_BUILD_ARGS = ["--pg-config", PG_CONFIG, "--no-default-features", "--features", f"pg{MAJOR}"]


# Whether this major refuses SET of an unknown name under a reserved prefix
# (jwt_rls., request.): MarkGUCPrefixReserved is new in PostgreSQL 15. On 14
# such a name becomes a placeholder that jwt_rls never reads (SECURITY.md:
# a policy must not read request.jwt.claim.<name> settings there).
RESERVES_PREFIXES = MAJOR >= 15


# The environment this major's programs need. PyPI's builds (majors other
# than 15) look for libpq, which postgres_fdw and the WAL receiver load, in
# the path they were built at (RUNPATH /opt/postgresql/lib), and would load
# the system's older libpq instead (PostgreSQL 17's postgres_fdw then fails:
# undefined symbol PQcancelStart).
SERVER_ENV = {} if is_debian() else {"LD_LIBRARY_PATH": os.path.join(home(), "lib")}
