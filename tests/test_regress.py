"""Golden output: every error jwt_rls raises to SQL, with its exact
SQLSTATE, message, DETAIL and HINT, pinned by PostgreSQL's own pg_regress
(tests/regress/sql/*.sql against tests/regress/expected/*.out). A changed
text fails here with the diff; an intended change is accepted with
`bash scripts/regress.sh --update` and reviewed like code.

The same texts on every major, except where a major behaves differently:
such a file is pinned in tests/regress/expected/pgNN/ (today only
PostgreSQL 14, which cannot reserve the jwt_rls. prefix: one line), and
that major alone is compared with it."""

import glob
import os
import shutil
import subprocess

from support.pg import MAJOR, PG_BIN, pg_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGRESS = os.path.join(ROOT, "tests", "regress")
OUT = os.path.join(ROOT, "target", "regress")
PG_REGRESS = os.path.join(os.path.dirname(os.path.dirname(pg_config("--pgxs"))), "test", "regress", "pg_regress")


def test_every_error_text_is_pinned(cluster, db):
    schedule = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(REGRESS, "sql", "*.sql")))
    assert schedule, "no regression scripts"
    db.execute("DROP DATABASE IF EXISTS jwt_rls_regress")
    db.execute("CREATE DATABASE jwt_rls_regress TEMPLATE template0")
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    # pg_regress reads <inputdir>/sql and <inputdir>/expected: the scripts,
    # and each expected file from this major's folder when it has one.
    inputdir = os.path.join(OUT, "input")
    os.makedirs(os.path.join(inputdir, "expected"))
    os.symlink(os.path.join(REGRESS, "sql"), os.path.join(inputdir, "sql"))
    for name in schedule:
        pinned = os.path.join(REGRESS, "expected", f"pg{MAJOR}", f"{name}.out")
        shutil.copy(pinned if os.path.exists(pinned) else os.path.join(REGRESS, "expected", f"{name}.out"),
                    os.path.join(inputdir, "expected", f"{name}.out"))
    run = subprocess.run([PG_REGRESS, "--use-existing", "--host=127.0.0.1", f"--port={cluster.port}",
                          "--user=postgres", "--dbname=jwt_rls_regress", f"--inputdir={inputdir}",
                          f"--outputdir={OUT}", f"--bindir={PG_BIN}",
                          *schedule], capture_output=True, text=True)
    diffs = os.path.join(OUT, "regression.diffs")
    detail = open(diffs).read()[:20000] if os.path.exists(diffs) else run.stdout + run.stderr
    assert run.returncode == 0, f"pg_regress failed:\n{detail}"
