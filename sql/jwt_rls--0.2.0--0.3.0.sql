-- jwt_rls 0.2.0 -> 0.3.0: DPoP (RFC 9449) sender-constrained tokens.
\echo Use "ALTER EXTENSION jwt_rls UPDATE TO '0.3.0'" to load this file. \quit

CREATE FUNCTION jwt_rls.authenticate(token text, dpop_proof text, http_method text, http_url text)
    RETURNS jsonb
    VOLATILE PARALLEL UNSAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'authenticate_dpop_c';
COMMENT ON FUNCTION jwt_rls.authenticate(text, text, text, text) IS
    'Verifies a JWT bound to a DPoP key and the DPoP proof of this request (RFC 9449), binds the JWT to the current transaction and returns its claims';

-- The PostgREST pre-request hook also binds "Authorization: DPoP" with the
-- request's DPoP header.
CREATE OR REPLACE FUNCTION jwt_rls.postgrest_pre_request() RETURNS void
    VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    LANGUAGE plpgsql AS $body$
DECLARE
    headers pg_catalog.json := pg_catalog.current_setting('request.headers', true)::pg_catalog.json;
    header text := headers OPERATOR(pg_catalog.->>) 'authorization';
    base text := pg_catalog.current_setting('jwt_rls.dpop_base_url', true);
BEGIN
    -- The headers come from the HTTP client; whatever they hold is verified
    -- like any token and proof, so there is nothing to trust here but the
    -- signatures. The method and path are PostgREST's own.
    IF header IS NULL OR header OPERATOR(pg_catalog.=) '' THEN
        RETURN;
    END IF;
    IF pg_catalog.lower(pg_catalog.left(header, 7)) OPERATOR(pg_catalog.=) 'bearer ' THEN
        PERFORM jwt_rls.authenticate(pg_catalog.btrim(pg_catalog.substr(header, 8)));
    ELSIF pg_catalog.lower(pg_catalog.left(header, 5)) OPERATOR(pg_catalog.=) 'dpop ' THEN
        IF (headers OPERATOR(pg_catalog.->>) 'dpop') IS NULL THEN
            RAISE EXCEPTION 'the request has no DPoP proof'
                USING ERRCODE = '28000',
                      DETAIL = 'The Authorization scheme is DPoP and there is no DPoP header.',
                      HINT = 'Send the proof in the DPoP header (RFC 9449 section 4.1).';
        END IF;
        IF base IS NULL OR base OPERATOR(pg_catalog.=) '' THEN
            RAISE EXCEPTION 'jwt_rls.dpop_base_url is not set'
                USING ERRCODE = '55000',
                      DETAIL = 'A DPoP proof names the URL of its request, and PostgREST knows only the path.',
                      HINT = 'An administrator sets jwt_rls.dpop_base_url to the URL clients call, up to where PostgREST''s path begins (ALTER DATABASE ... SET).';
        END IF;
        PERFORM jwt_rls.authenticate(
            pg_catalog.btrim(pg_catalog.substr(header, 6)),
            headers OPERATOR(pg_catalog.->>) 'dpop',
            pg_catalog.current_setting('request.method', true),
            pg_catalog.rtrim(base, '/') OPERATOR(pg_catalog.||) pg_catalog.current_setting('request.path', true));
    ELSE
        RAISE EXCEPTION 'the Authorization header is not a bearer or DPoP token'
            USING ERRCODE = '28000',
                  HINT = 'Send "Authorization: Bearer <token>", or "Authorization: DPoP <token>" with a DPoP header.';
    END IF;
END
$body$;
COMMENT ON FUNCTION jwt_rls.postgrest_pre_request() IS
    'PostgREST db-pre-request hook: binds the bearer or DPoP token of the request, with its DPoP proof (none: nothing bound)';

-- Sessions bound to a DPoP key (RFC 9449 section 5): start_session(sub,
-- claims, dpop_jkt), refreshes with a proof by that key.
ALTER TABLE jwt_rls.sessions ADD COLUMN dpop_jkt text CHECK (dpop_jkt ~ '^[A-Za-z0-9_-]{43}$');
COMMENT ON COLUMN jwt_rls.sessions.dpop_jkt IS
    'RFC 7638 thumbprint of the DPoP key the session is bound to (NULL: not bound)';

-- The reuse grace period (jwt_rls.refresh_reuse_grace): a used refresh
-- token's successor pair, kept while it may be returned again.
ALTER TABLE jwt_rls.refresh_tokens ADD COLUMN successor text, ADD COLUMN successor_access_token text;
COMMENT ON COLUMN jwt_rls.refresh_tokens.successor IS
    'With jwt_rls.refresh_reuse_grace > 0: the refresh token that replaced this one, returned again if this one is presented again within the grace period; cleared when the successor is used';
COMMENT ON COLUMN jwt_rls.refresh_tokens.successor_access_token IS
    'The access token issued with successor, under the same rule';

CREATE FUNCTION jwt_rls.verify_dpop_proof(dpop_proof text, http_method text, http_url text) RETURNS text
    VOLATILE PARALLEL UNSAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'verify_dpop_proof_wrapper';

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
CREATE OR REPLACE FUNCTION jwt_rls.start_session(sub text, claims jsonb DEFAULT '{}',
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
    -- The row lock makes concurrent refreshes of one token take turns: the
    -- first rotates it, the next finds it used (reuse).
    SELECT * INTO t FROM jwt_rls.refresh_tokens r
        WHERE r.hash = sha256(convert_to(presented, 'UTF8')) FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'refresh token is not valid' USING ERRCODE = '28000',
            DETAIL = 'No session holds this refresh token.', HINT = 'Log in again.';
    END IF;
    SELECT * INTO s FROM jwt_rls.sessions x WHERE x.id = t.session_id FOR UPDATE;
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
           AND t.used_at + current_setting('jwt_rls.refresh_reuse_grace')::interval > now()
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
CREATE OR REPLACE FUNCTION jwt_rls.rotate_refresh_token(presented text, OUT status text,
                                             OUT access_token text, OUT refresh_token text, OUT session_id uuid)
    LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM jwt_rls.rotate_refresh_token(presented, NULL, NULL, NULL)
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

REVOKE EXECUTE ON FUNCTION jwt_rls.start_session(text, jsonb, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.session_cnf(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.verify_dpop_proof(text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.rotate_refresh_token(text, text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE jwt_rls.refresh_with_proof(text, text, text, text, text, text, uuid) FROM PUBLIC;

-- Introspection for services that ask the database (RFC 7662 shape).
CREATE FUNCTION jwt_rls.introspect(token text) RETURNS jsonb
    VOLATILE PARALLEL SAFE STRICT
    LANGUAGE c AS 'MODULE_PATHNAME', 'introspect_c';
COMMENT ON FUNCTION jwt_rls.introspect(text) IS
    'RFC 7662-shaped introspection: {"active": true} and the claims of a token that verifies and is not revoked, else {"active": false}';
REVOKE EXECUTE ON FUNCTION jwt_rls.introspect(text) FROM PUBLIC;
