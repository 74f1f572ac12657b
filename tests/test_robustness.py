"""Robustness through SQL: 100,000 random and mutated tokens in one session
end in clean errors or valid results without losing the backend or
restarting the server; and a refused token never reaches the server log."""

import json
import random

import psycopg

from support import b64url_decode, backend_pid
from support.hostile import jws
from support.pgcluster import Cluster
from support.schema import TENANT_A
from support.tokens import AUDIENCE, Signer

TOTAL = 100_000
BATCH = 5_000
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
NOISE = ALPHABET + "=+/ \t\n\"'\\{}[]:,é€😀\u200b"

TRY_TOKENS = """
CREATE FUNCTION pg_temp.try_tokens(tokens text[]) RETURNS TABLE (outcome text, n bigint)
LANGUAGE plpgsql AS $$
DECLARE t text; result text; counts jsonb := '{}';
BEGIN
  FOREACH t IN ARRAY tokens LOOP
    BEGIN
      PERFORM jwt_rls.authenticate(t);
      result := 'ok';
    EXCEPTION WHEN OTHERS THEN
      result := SQLSTATE;
    END;
    counts := jsonb_set(counts, ARRAY[result], to_jsonb(coalesce((counts ->> result)::bigint, 0) + 1));
  END LOOP;
  RETURN QUERY SELECT key, value::bigint FROM jsonb_each_text(counts);
END $$
"""


def mutate(rng, token, signer):
    choice = rng.randrange(10)
    if choice == 0:  # flip one character
        i = rng.randrange(len(token))
        return token[:i] + rng.choice(ALPHABET) + token[i + 1:]
    if choice == 1:  # delete a range
        i = rng.randrange(len(token))
        return token[:i] + token[i + rng.randrange(1, 20):]
    if choice == 2:  # insert noise
        i = rng.randrange(len(token) + 1)
        return token[:i] + "".join(rng.choice(NOISE) for _ in range(rng.randrange(1, 6))) + token[i:]
    if choice == 3:  # shuffle, drop or repeat segments
        parts = token.split(".")
        rng.shuffle(parts)
        return ".".join(parts[: rng.randrange(1, 7)] * rng.randrange(1, 3))
    if choice == 4:  # random base64url of random length
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 400)))
    if choice == 5:  # truncate
        return token[: rng.randrange(len(token))]
    # 6-9: mutate the JSON of the payload and sign it again, so that parsing
    # and claim validation see authenticated, malformed input.
    header, payload, _ = token.split(".")
    text = b64url_decode(payload).decode("utf-8", "replace")
    i = rng.randrange(len(text) + 1)
    edits = [lambda: text[:i] + rng.choice(NOISE) + text[i:], lambda: text[:i] + text[i + 1:],
             lambda: text.replace(",", ', "tenant_id": 1,', 1), lambda: text.replace(":", ":[", rng.randrange(1, 3)),
             lambda: text.replace("exp", rng.choice(["EXP", "exp\\u0000", "e"])), lambda: text]
    body = rng.choice(edits)().encode("utf-8", "replace")
    return jws(json.loads(b64url_decode(header)), body, signer)


def test_100k_mutated_tokens_in_one_session(cluster, db, hs, signers):
    rng = random.Random(20261121)
    seeds = [s.token(TENANT_A) for s in signers.values()] + [hs.token(TENANT_A, org={"id": [1, {"a": None}]})]
    totals = {}
    with psycopg.connect(cluster.dsn(user="app"), autocommit=True) as app:
        pid = backend_pid(app)
        started = db.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
        app.execute(TRY_TOKENS)
        done = 0
        while done < TOTAL:
            batch = []
            for _ in range(BATCH):
                t = mutate(rng, rng.choice(seeds), hs)
                batch.append(t.replace("\0", ""))
            for outcome, n in app.execute("SELECT * FROM pg_temp.try_tokens(%s)", (batch,)):
                totals[outcome] = totals.get(outcome, 0) + n
            done += BATCH
        assert backend_pid(app) == pid
        assert app.execute("SELECT 1").fetchone()[0] == 1
    assert db.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started
    print(f"100k mutated tokens: {dict(sorted(totals.items()))}")
    assert sum(totals.values()) == TOTAL
    assert set(totals) <= {"ok", "22023", "28000"}, totals
    assert totals.get("22023", 0) > 1000 and totals.get("28000", 0) > 1000


def test_refused_tokens_never_reach_the_server_log():
    """Default logging: errors are logged with their statement, and a token
    passed as a bind parameter appears in neither."""
    hs = Signer("hs-log", "HS256")
    with Cluster() as c:
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            admin.execute("CREATE EXTENSION jwt_rls")
            admin.execute("CREATE ROLE app LOGIN")
            admin.execute("GRANT USAGE ON SCHEMA jwt_rls TO app")
            with admin.cursor() as cur:
                hs.install(cur)
            admin.execute("ALTER SYSTEM SET jwt_rls.issuer = 'https://login.example'")
            admin.execute(f"ALTER SYSTEM SET jwt_rls.audience = '{AUDIENCE}'")
            admin.execute("SELECT pg_reload_conf()")
        valid = hs.token(TENANT_A)
        refused = [valid[:-3] + "AAA", hs.token(TENANT_A, ttl=-60), "Bearer " + valid,
                   hs.token(TENANT_A, iss="https://evil.example"), valid.rsplit(".", 1)[0] + ".",
                   Signer("hs-log", "HS256").token(TENANT_A)]
        with psycopg.connect(c.dsn(user="app"), autocommit=True) as app:
            for token in refused:
                for sql in ["SELECT jwt_rls.authenticate(%s)", "SELECT set_config('jwt_rls.token', %s, true)"]:
                    try:
                        app.execute(sql, (token,))
                        raise AssertionError("accepted")
                    except psycopg.Error as e:
                        assert e.sqlstate in ("28000", "22023")
            app.execute("SELECT jwt_rls.authenticate(%s)", (valid,))
        c.stop()
        log = c.server_log()
    assert log.count("ERROR:") >= 2 * len(refused), log[-2000:]
    assert "STATEMENT:  SELECT jwt_rls.authenticate($1)" in log
    for token in refused + [valid]:
        for segment in token.replace("Bearer ", "").split("."):
            if len(segment) >= 8:
                assert segment not in log, f"token text in the server log: {segment[:16]}..."
