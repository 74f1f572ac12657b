//! Sessions with refresh tokens kept server-side: issued at login, rotated
//! at every refresh, and a reuse of a used-up refresh token revokes the
//! whole session (the "family") with its live access tokens (OAuth 2.0
//! Security BCP, RFC 9700 §4.14).
//!
//! A refresh token is 256 random bits (base64url, 43 characters) that is
//! stored only as its SHA-256 in `jwt_rls.refresh_tokens`, which no
//! application role can read. Access tokens of a session are signed by
//! `jwt_rls.sign()` and carry the session id as `sid`; revoking the session
//! (reuse, logout) is checked like any revocation (`revocation.rs`): a
//! trigger on the revocation column tells every backend.
//!
//! `refresh` is a procedure because reuse must both persist the revocation
//! and fail the call with 28000: it commits the revocation, then raises.
//! It therefore runs only as its own transaction (`CALL` outside a
//! transaction block); inside one it fails at once (SQLSTATE 2D000)
//! rather than lose a revocation to the caller's rollback.

use jwt_rls_core::sign;
use pgrx::prelude::*;

use crate::keys::store::check_or_raise;

/// A new refresh token: 256 random bits, base64url.
#[pg_extern(volatile, parallel_safe)]
fn random_token() -> String {
    check_or_raise(sign::random_token())
}

extension_sql!(
    r#"
CREATE TABLE jwt_rls.sessions (
    id             uuid PRIMARY KEY,
    sub            text NOT NULL,
    claims         jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    dpop_jkt       text CHECK (dpop_jkt ~ '^[A-Za-z0-9_-]{43}$')
);
COMMENT ON COLUMN jwt_rls.sessions.dpop_jkt IS
    'RFC 7638 thumbprint of the DPoP key the session is bound to (NULL: not bound)';
CREATE INDEX sessions_sub ON jwt_rls.sessions (sub);
CREATE INDEX sessions_revoked ON jwt_rls.sessions (id) WHERE revoked_at IS NOT NULL;
COMMENT ON TABLE jwt_rls.sessions IS
    'Login sessions (refresh-token families); readable by no application role';
REVOKE ALL ON jwt_rls.sessions FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.sessions', '');
-- Only a revocation needs to reach other backends (refreshes do not).
CREATE TRIGGER sessions_revoked
    AFTER UPDATE OF revoked_at OR DELETE OR TRUNCATE ON jwt_rls.sessions
    FOR EACH STATEMENT EXECUTE FUNCTION jwt_rls.table_changed();

CREATE TABLE jwt_rls.refresh_tokens (
    hash       bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
    session_id uuid NOT NULL REFERENCES jwt_rls.sessions (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz,
    successor  text,
    successor_access_token text
);
COMMENT ON COLUMN jwt_rls.refresh_tokens.successor IS
    'With jwt_rls.refresh_reuse_grace > 0: the refresh token that replaced this one, returned again if this one is presented again within the grace period; cleared when the successor is used';
COMMENT ON COLUMN jwt_rls.refresh_tokens.successor_access_token IS
    'The access token issued with successor, under the same rule';
CREATE INDEX refresh_tokens_successor ON jwt_rls.refresh_tokens (used_at) WHERE successor IS NOT NULL;

-- Clears the successors kept for the reuse grace period once it has passed
-- (or when it is 0), so that live tokens are not kept in clear longer than
-- the period. Called at every login and refresh; rows another transaction
-- holds are left for the next call.
CREATE FUNCTION jwt_rls.forget_successors() RETURNS void
    LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE jwt_rls.refresh_tokens r SET successor = NULL, successor_access_token = NULL
     WHERE r.hash IN (SELECT x.hash FROM jwt_rls.refresh_tokens x
                       WHERE x.successor IS NOT NULL
                         AND x.used_at + current_setting('jwt_rls.refresh_reuse_grace')::interval <= clock_timestamp()
                         FOR UPDATE SKIP LOCKED)
$$;
CREATE INDEX refresh_tokens_session ON jwt_rls.refresh_tokens (session_id);
COMMENT ON TABLE jwt_rls.refresh_tokens IS
    'SHA-256 of each refresh token issued; readable by no application role';
REVOKE ALL ON jwt_rls.refresh_tokens FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.refresh_tokens', '');

-- The cnf claim of a session's access tokens: bound to its DPoP key, if any.
CREATE FUNCTION jwt_rls.session_cnf(dpop_jkt text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN dpop_jkt IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('cnf', jsonb_build_object('jkt', dpop_jkt)) END
$$;

-- Logs a subject in: a new session, its first access token and refresh
-- token; with dpop_jkt, the session is bound to that DPoP key (its access
-- tokens carry cnf.jkt, and refreshing needs a proof by the key).
CREATE FUNCTION jwt_rls.start_session(sub text, claims jsonb, dpop_jkt text,
                                      OUT access_token text, OUT refresh_token text, OUT session_id uuid)
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF sub IS NULL OR claims IS NULL OR jsonb_typeof(claims) <> 'object' THEN
        RAISE EXCEPTION 'a session needs a subject and a JSON object of claims' USING ERRCODE = '22023';
    END IF;
    IF dpop_jkt !~ '^[A-Za-z0-9_-]{43}$' THEN
        RAISE EXCEPTION 'dpop_jkt is not a key thumbprint' USING ERRCODE = '22023',
            DETAIL = 'A thumbprint (RFC 7638) is 43 base64url characters.',
            HINT = 'Pass what jwt_rls.verify_dpop_proof() returned for the login request''s DPoP proof.';
    END IF;
    -- The session decides these: a token of a revoked session must never
    -- outlive the session row that records the revocation.
    IF claims ?| array['exp', 'iat', 'nbf', 'jti', 'sid', 'sub'] THEN
        RAISE EXCEPTION 'session claims may not set exp, iat, nbf, jti, sid or sub' USING ERRCODE = '22023',
            HINT = 'The access token lifetime is jwt_rls.sign_lifetime; the subject is the first argument.';
    END IF;
    -- First a call into the library, which loads it: the settings read
    -- below exist only once it is loaded.
    refresh_token := jwt_rls.random_token();
    PERFORM jwt_rls.forget_successors();
    -- Sessions are pruned here once they can no longer be refreshed and
    -- their last access token has expired (a revoked session's row is what
    -- refuses its tokens). Only when there is something to prune: a DELETE
    -- fires the trigger that makes every backend re-check its tokens.
    IF EXISTS (SELECT FROM jwt_rls.sessions s
                WHERE s.expires_at < now() - interval '1 day'
                                    - current_setting('jwt_rls.sign_lifetime')::interval) THEN
        DELETE FROM jwt_rls.sessions s
         WHERE s.expires_at < now() - interval '1 day' - current_setting('jwt_rls.sign_lifetime')::interval;
    END IF;
    session_id := gen_random_uuid();
    INSERT INTO jwt_rls.sessions (id, sub, claims, expires_at, dpop_jkt)
        VALUES (session_id, start_session.sub, start_session.claims,
                now() + current_setting('jwt_rls.session_lifetime')::interval, start_session.dpop_jkt);
    INSERT INTO jwt_rls.refresh_tokens (hash, session_id)
        VALUES (sha256(convert_to(refresh_token, 'UTF8')), session_id);
    access_token := jwt_rls.sign(start_session.claims
                                 || jsonb_build_object('sub', start_session.sub, 'sid', session_id)
                                 || jwt_rls.session_cnf(start_session.dpop_jkt));
END
$$;

-- Logs a subject in, without binding the session to a key.
CREATE FUNCTION jwt_rls.start_session(sub text, claims jsonb DEFAULT '{}',
                                      OUT access_token text, OUT refresh_token text, OUT session_id uuid)
    LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM jwt_rls.start_session(sub, claims, NULL)
$$;

-- One rotation, as the extension owner: the presented refresh token is
-- used up and a new access and refresh token returned (status 'ok'). A
-- used-up token presented again is reuse: the session is revoked and the
-- status is 'reused', with no tokens; jwt_rls.refresh() commits that and
-- fails. Other refusals raise here.
-- With a DPoP proof (dpop_proof, http_method, http_url: the token
-- request's), the session must be bound to the proof's key; a session bound
-- to a key refuses a refresh without a valid proof by it, before anything
-- else is looked at, so a stolen refresh token can neither be used nor, by
-- a reuse, revoke its owner's session.
CREATE FUNCTION jwt_rls.rotate_refresh_token(presented text, dpop_proof text, http_method text, http_url text,
                                             OUT status text, OUT access_token text, OUT refresh_token text,
                                             OUT session_id uuid)
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t jwt_rls.refresh_tokens;
    s jwt_rls.sessions;
BEGIN
    -- The successor, drawn first: the call loads the library, whose
    -- settings are read below.
    refresh_token := jwt_rls.random_token();
    IF presented IS NULL OR presented !~ '^[A-Za-z0-9_-]{43}$' THEN
        RAISE EXCEPTION 'malformed refresh token' USING ERRCODE = '22023',
            DETAIL = 'A refresh token is 43 base64url characters.',
            HINT = 'Pass the refresh token jwt_rls.start_session() or jwt_rls.refresh() returned, not an access token.';
    END IF;
    PERFORM jwt_rls.forget_successors();
    -- The session's row lock makes concurrent refreshes of its tokens take
    -- turns: the first rotates a token, the next finds it used (reuse). The
    -- session first, then the token, in every path, so that they never wait
    -- for each other in opposite orders.
    SELECT * INTO t FROM jwt_rls.refresh_tokens r WHERE r.hash = sha256(convert_to(presented, 'UTF8'));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'refresh token is not valid' USING ERRCODE = '28000',
            DETAIL = 'No session holds this refresh token.', HINT = 'Log in again.';
    END IF;
    SELECT * INTO s FROM jwt_rls.sessions x WHERE x.id = t.session_id FOR UPDATE;
    -- Read again under the session's lock: another refresh may have used it.
    SELECT * INTO t FROM jwt_rls.refresh_tokens r WHERE r.hash = t.hash FOR UPDATE;
    IF s.dpop_jkt IS NOT NULL AND dpop_proof IS NULL THEN
        RAISE EXCEPTION 'refresh token is bound to a dpop key and needs a dpop proof' USING ERRCODE = '28000',
            DETAIL = 'Its session was started with a DPoP key (RFC 9449 section 5).',
            HINT = 'Refresh with CALL jwt_rls.refresh_with_proof(refresh_token, dpop_proof, http_method, http_url).';
    ELSIF s.dpop_jkt IS NULL AND dpop_proof IS NOT NULL THEN
        RAISE EXCEPTION 'refresh token is not bound to a dpop key' USING ERRCODE = '28000',
            DETAIL = 'A DPoP proof was presented for a session started without a DPoP key.',
            HINT = 'Refresh it with CALL jwt_rls.refresh(refresh_token).';
    ELSIF s.dpop_jkt IS NOT NULL
          AND jwt_rls.verify_dpop_proof(dpop_proof, http_method, http_url) <> s.dpop_jkt THEN
        RAISE EXCEPTION 'DPoP proof key is not the key the refresh token is bound to' USING ERRCODE = '28000',
            DETAIL = 'The thumbprint of the proof''s jwk is not the session''s DPoP key.',
            HINT = 'Sign the proof with the key the session was started with.';
    END IF;
    IF s.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'refresh token is not valid' USING ERRCODE = '28000',
            DETAIL = 'Its session has been revoked.', HINT = 'Log in again.';
    END IF;
    IF EXISTS (SELECT FROM jwt_rls.revoked_subjects r
                WHERE r.sub = s.sub AND r.issued_before > s.created_at) THEN
        RAISE EXCEPTION 'refresh token is not valid' USING ERRCODE = '28000',
            DETAIL = 'Its subject''s sessions up to a later time were revoked (jwt_rls.revoke_subject).',
            HINT = 'Log in again.';
    END IF;
    IF t.used_at IS NOT NULL THEN
        -- Presented again within the grace period (two tabs, a retry after
        -- a lost response) while its successor is unused: the same pair.
        IF t.successor IS NOT NULL
           AND t.used_at + current_setting('jwt_rls.refresh_reuse_grace')::interval > clock_timestamp()
           AND EXISTS (SELECT FROM jwt_rls.refresh_tokens r
                        WHERE r.hash = sha256(convert_to(t.successor, 'UTF8')) AND r.used_at IS NULL) THEN
            status := 'ok';
            access_token := t.successor_access_token;
            refresh_token := t.successor;
            session_id := s.id;
            RETURN;
        END IF;
        UPDATE jwt_rls.sessions x SET revoked_at = now(), revoked_reason = 'refresh token reused'
            WHERE x.id = s.id;
        UPDATE jwt_rls.refresh_tokens r SET successor = NULL, successor_access_token = NULL
            WHERE r.session_id = s.id AND r.successor IS NOT NULL;
        status := 'reused';
        refresh_token := NULL;
        RETURN;
    END IF;
    IF s.expires_at <= now() THEN
        RAISE EXCEPTION 'refresh token is not valid' USING ERRCODE = '28000',
            DETAIL = 'Its session reached its lifetime (jwt_rls.session_lifetime).', HINT = 'Log in again.';
    END IF;
    IF s.last_used_at + current_setting('jwt_rls.session_idle_timeout')::interval <= now() THEN
        RAISE EXCEPTION 'refresh token is not valid' USING ERRCODE = '28000',
            DETAIL = 'Its session was idle too long (jwt_rls.session_idle_timeout).', HINT = 'Log in again.';
    END IF;
    UPDATE jwt_rls.refresh_tokens r SET used_at = now() WHERE r.hash = t.hash;
    UPDATE jwt_rls.sessions x SET last_used_at = now() WHERE x.id = s.id;
    INSERT INTO jwt_rls.refresh_tokens (hash, session_id)
        VALUES (sha256(convert_to(refresh_token, 'UTF8')), s.id);
    session_id := s.id;
    access_token := jwt_rls.sign(s.claims || jsonb_build_object('sub', s.sub, 'sid', s.id)
                                 || jwt_rls.session_cnf(s.dpop_jkt));
    status := 'ok';
    -- Successors are kept only while a grace period may return them: this
    -- token's, and no earlier one (its successor is used now).
    UPDATE jwt_rls.refresh_tokens r SET successor = NULL, successor_access_token = NULL
        WHERE r.session_id = s.id AND r.successor IS NOT NULL;
    IF current_setting('jwt_rls.refresh_reuse_grace')::interval > interval '0' THEN
        UPDATE jwt_rls.refresh_tokens r SET successor = refresh_token, successor_access_token = access_token
            WHERE r.hash = t.hash;
    END IF;
END
$$;

-- One rotation without a DPoP proof.
CREATE FUNCTION jwt_rls.rotate_refresh_token(presented text, OUT status text,
                                             OUT access_token text, OUT refresh_token text, OUT session_id uuid)
    LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM jwt_rls.rotate_refresh_token(presented, NULL, NULL, NULL)
$$;

-- The refresh call: CALL jwt_rls.refresh($1) outside a transaction block.
-- A procedure, not a function, so that on reuse it can commit the
-- revocation and still fail with 28000; inside a transaction block its
-- first COMMIT fails (2D000) before anything happens. Invoker's rights and
-- no SET clause (both would forbid COMMIT): everything it names is
-- schema-qualified, and the work is done by rotate_refresh_token.
CREATE PROCEDURE jwt_rls.refresh(presented text,
                                 INOUT access_token text DEFAULT NULL, INOUT refresh_token text DEFAULT NULL,
                                 INOUT session_id uuid DEFAULT NULL)
    LANGUAGE plpgsql
AS $$
DECLARE
    r record;
BEGIN
    COMMIT;
    r := jwt_rls.rotate_refresh_token(presented);
    IF r.status OPERATOR(pg_catalog.=) 'reused' THEN
        COMMIT;
        RAISE EXCEPTION 'refresh token was already used' USING ERRCODE = '28000',
            DETAIL = 'A used refresh token was presented again: its session and every token of it are revoked.',
            HINT = 'Log in again.';
    END IF;
    access_token := r.access_token;
    refresh_token := r.refresh_token;
    session_id := r.session_id;
END
$$;

-- The refresh call of a session bound to a DPoP key, with the token
-- request's proof: CALL jwt_rls.refresh_with_proof($1, $2, 'POST', $3)
-- outside a transaction block. As refresh(), otherwise.
CREATE PROCEDURE jwt_rls.refresh_with_proof(presented text, dpop_proof text, http_method text, http_url text,
                                            INOUT access_token text DEFAULT NULL,
                                            INOUT refresh_token text DEFAULT NULL,
                                            INOUT session_id uuid DEFAULT NULL)
    LANGUAGE plpgsql
AS $$
DECLARE
    r record;
BEGIN
    COMMIT;
    IF dpop_proof IS NULL OR http_method IS NULL OR http_url IS NULL THEN
        RAISE EXCEPTION 'dpop_proof, http_method and http_url must not be null' USING ERRCODE = '22004';
    END IF;
    r := jwt_rls.rotate_refresh_token(presented, dpop_proof, http_method, http_url);
    IF r.status OPERATOR(pg_catalog.=) 'reused' THEN
        COMMIT;
        RAISE EXCEPTION 'refresh token was already used' USING ERRCODE = '28000',
            DETAIL = 'A used refresh token was presented again: its session and every token of it are revoked.',
            HINT = 'Log in again.';
    END IF;
    access_token := r.access_token;
    refresh_token := r.refresh_token;
    session_id := r.session_id;
END
$$;

-- Logs one session out: its refresh tokens stop working, and its access
-- tokens are refused from every backend's next statement.
CREATE FUNCTION jwt_rls.end_session(session_id uuid) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Two statements, the session first (the lock order of rotation), not
    -- one with two modifying CTEs, which Citus cannot plan once the tables
    -- are shared (share_with_citus()).
    UPDATE jwt_rls.sessions s SET revoked_at = now(), revoked_reason = 'logout'
     WHERE s.id = end_session.session_id AND s.revoked_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE jwt_rls.refresh_tokens r SET successor = NULL, successor_access_token = NULL
     WHERE r.session_id = end_session.session_id AND r.successor IS NOT NULL;
    RETURN true;
END
$$;

-- Logs a subject out everywhere: every session of it; returns how many.
CREATE FUNCTION jwt_rls.end_sessions(sub text) RETURNS integer
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ended integer;
BEGIN
    -- As end_session(): sessions first, then their kept successors.
    UPDATE jwt_rls.sessions s SET revoked_at = now(), revoked_reason = 'logout everywhere'
     WHERE s.sub = end_sessions.sub AND s.revoked_at IS NULL;
    GET DIAGNOSTICS ended = ROW_COUNT;
    UPDATE jwt_rls.refresh_tokens r SET successor = NULL, successor_access_token = NULL
     WHERE r.successor IS NOT NULL
       AND r.session_id IN (SELECT s.id FROM jwt_rls.sessions s
                             WHERE s.sub = end_sessions.sub AND s.revoked_at IS NOT NULL);
    RETURN ended;
END
$$;
"#,
    name = "sessions",
    requires = ["revocation", random_token, "signing_keys"]
);
