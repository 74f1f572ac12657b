"""Golden output: every error jwt_rls raises to SQL, with its exact
SQLSTATE, message, DETAIL and HINT, pinned by PostgreSQL's own pg_regress
(tests/regress/sql/*.sql against tests/regress/expected/*.out). A changed
text fails here with the diff; an intended change is accepted with
`bash scripts/regress.sh --update` and reviewed like code."""

import glob
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGRESS = os.path.join(ROOT, "tests", "regress")
OUT = os.path.join(ROOT, "target", "regress")
PG_REGRESS = f"/usr/lib/postgresql/{os.environ.get('PG_MAJOR', '15')}/lib/pgxs/src/test/regress/pg_regress"


def test_every_error_text_is_pinned(cluster, db):
    schedule = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(REGRESS, "sql", "*.sql")))
    assert schedule, "no regression scripts"
    db.execute("DROP DATABASE IF EXISTS jwt_rls_regress")
    db.execute("CREATE DATABASE jwt_rls_regress TEMPLATE template0")
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    run = subprocess.run([PG_REGRESS, "--use-existing", "--host=127.0.0.1", f"--port={cluster.port}",
                          "--user=postgres", "--dbname=jwt_rls_regress", f"--inputdir={REGRESS}",
                          f"--outputdir={OUT}", f"--bindir={os.path.dirname(shutil.which('psql') or '/usr/bin/psql')}",
                          *schedule], capture_output=True, text=True)
    diffs = os.path.join(OUT, "regression.diffs")
    detail = open(diffs).read()[:20000] if os.path.exists(diffs) else run.stdout + run.stderr
    assert run.returncode == 0, f"pg_regress failed:\n{detail}"
