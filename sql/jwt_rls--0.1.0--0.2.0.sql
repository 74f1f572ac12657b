-- jwt_rls 0.1.0 -> 0.2.0 (unreleased: this file may still change until
-- 0.2.0 is tagged; after that it is never edited).
\echo Use "ALTER EXTENSION jwt_rls UPDATE TO '0.2.0'" to load this file. \quit

-- Which library a backend runs: version, commit, debug or release build.
CREATE FUNCTION jwt_rls."build_info"() RETURNS TABLE (
	"version" TEXT,
	"git_commit" TEXT,
	"debug_build" bool,
	"pg_major" INT
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'build_info_wrapper';

-- The statement trigger of the extension's tables other than keys.
CREATE FUNCTION jwt_rls."table_changed"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'table_changed_wrapper';

-- Revocation.
CREATE TABLE jwt_rls.revoked_tokens (
    jti        text PRIMARY KEY CHECK (octet_length(jti) BETWEEN 1 AND 1024),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    reason     text
);
CREATE INDEX revoked_tokens_expires_at ON jwt_rls.revoked_tokens (expires_at);
COMMENT ON TABLE jwt_rls.revoked_tokens IS
    'Access tokens revoked by jti, kept until they expire; readable by no application role';
REVOKE ALL ON jwt_rls.revoked_tokens FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.revoked_tokens', '');
CREATE TRIGGER revoked_tokens_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jwt_rls.revoked_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION jwt_rls.table_changed();

CREATE TABLE jwt_rls.revoked_subjects (
    sub           text PRIMARY KEY CHECK (octet_length(sub) BETWEEN 1 AND 1024),
    issued_before timestamptz NOT NULL,
    revoked_at    timestamptz NOT NULL DEFAULT now(),
    reason        text
);
COMMENT ON TABLE jwt_rls.revoked_subjects IS
    'Per subject: tokens issued before issued_before are revoked; readable by no application role';
REVOKE ALL ON jwt_rls.revoked_subjects FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.revoked_subjects', '');
CREATE TRIGGER revoked_subjects_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON jwt_rls.revoked_subjects
    FOR EACH STATEMENT EXECUTE FUNCTION jwt_rls.table_changed();

-- Admin functions run as the extension owner, so that a login service
-- granted EXECUTE can revoke without being able to read or undo the lists.
CREATE FUNCTION jwt_rls.revoke_jti(jti text, expires_at timestamptz, reason text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jti IS NULL OR expires_at IS NULL THEN
        RAISE EXCEPTION 'jti and expires_at are required' USING ERRCODE = '22004';
    END IF;
    -- Entries are pruned here, once no token they name can still be
    -- accepted (exp plus the largest leeway, 300 s).
    DELETE FROM jwt_rls.revoked_tokens r WHERE r.expires_at < now() - interval '300 seconds';
    IF expires_at < now() - interval '300 seconds' THEN
        RETURN false;
    END IF;
    INSERT INTO jwt_rls.revoked_tokens AS r (jti, expires_at, reason)
        VALUES (revoke_jti.jti, revoke_jti.expires_at, revoke_jti.reason)
        ON CONFLICT ON CONSTRAINT revoked_tokens_pkey DO UPDATE
        SET expires_at = greatest(r.expires_at, excluded.expires_at),
            reason = coalesce(excluded.reason, r.reason);
    RETURN true;
END
$$;
COMMENT ON FUNCTION jwt_rls.revoke_jti(text, timestamptz, text) IS
    'Revokes the token with this jti until expires_at (its exp); false when it has already expired';

CREATE FUNCTION jwt_rls.revoke_subject(sub text, issued_before timestamptz DEFAULT now(), reason text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF sub IS NULL OR issued_before IS NULL THEN
        RAISE EXCEPTION 'sub and issued_before are required' USING ERRCODE = '22004';
    END IF;
    INSERT INTO jwt_rls.revoked_subjects AS r (sub, issued_before, reason)
        VALUES (revoke_subject.sub, revoke_subject.issued_before, revoke_subject.reason)
        ON CONFLICT ON CONSTRAINT revoked_subjects_pkey DO UPDATE
        SET issued_before = greatest(r.issued_before, excluded.issued_before),
            revoked_at = now(),
            reason = coalesce(excluded.reason, r.reason);
END
$$;
COMMENT ON FUNCTION jwt_rls.revoke_subject(text, timestamptz, text) IS
    'Revokes every token of this subject issued before issued_before (default: now)';

CREATE FUNCTION jwt_rls."revoke_token"(
	"token" TEXT,
	"reason" TEXT DEFAULT NULL
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'revoke_token_wrapper';

REVOKE EXECUTE ON FUNCTION jwt_rls.table_changed() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.revoke_jti(text, timestamptz, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.revoke_subject(text, timestamptz, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.revoke_token(text, text) FROM PUBLIC;

-- Signing: private keys and the functions that issue tokens.
CREATE TABLE jwt_rls.signing_keys (
    kid         text PRIMARY KEY REFERENCES jwt_rls.keys (kid) ON DELETE CASCADE ON UPDATE CASCADE,
    private_key text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE jwt_rls.signing_keys IS
    'Private halves of the keys jwt_rls.sign() uses; secrets, readable by no application role';
REVOKE ALL ON jwt_rls.signing_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.signing_keys', '');

CREATE FUNCTION jwt_rls."generate_signing_key"(
	"kid" TEXT,
	"alg" TEXT,
	"not_before" timestamp with time zone DEFAULT NULL,
	"not_after" timestamp with time zone DEFAULT NULL
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'generate_signing_key_wrapper';

CREATE FUNCTION jwt_rls."import_signing_key"(
	"kid" TEXT,
	"alg" TEXT,
	"private_pem" TEXT,
	"not_before" timestamp with time zone DEFAULT NULL,
	"not_after" timestamp with time zone DEFAULT NULL
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'import_signing_key_wrapper';

CREATE FUNCTION jwt_rls."import_signing_secret"(
	"kid" TEXT,
	"alg" TEXT,
	"secret" bytea,
	"not_before" timestamp with time zone DEFAULT NULL,
	"not_after" timestamp with time zone DEFAULT NULL
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'import_signing_secret_wrapper';

CREATE FUNCTION jwt_rls."jwks"() RETURNS jsonb
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'jwks_wrapper';

CREATE FUNCTION jwt_rls."sign"(
	"claims" jsonb,
	"kid" TEXT DEFAULT NULL
) RETURNS TEXT
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'sign_wrapper';

REVOKE EXECUTE ON FUNCTION jwt_rls.generate_signing_key(text, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.import_signing_key(text, text, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.import_signing_secret(text, text, bytea, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.sign(jsonb, text) FROM PUBLIC;

-- Sessions with refresh tokens.
CREATE FUNCTION jwt_rls."random_token"() RETURNS TEXT
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'random_token_wrapper';

CREATE TABLE jwt_rls.sessions (
    id             uuid PRIMARY KEY,
    sub            text NOT NULL,
    claims         jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text
);
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
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_session ON jwt_rls.refresh_tokens (session_id);
COMMENT ON TABLE jwt_rls.refresh_tokens IS
    'SHA-256 of each refresh token issued; readable by no application role';
REVOKE ALL ON jwt_rls.refresh_tokens FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.refresh_tokens', '');

-- Logs a subject in: a new session, its first access token and refresh token.
CREATE FUNCTION jwt_rls.start_session(sub text, claims jsonb DEFAULT '{}',
                                      OUT access_token text, OUT refresh_token text, OUT session_id uuid)
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF sub IS NULL OR claims IS NULL OR jsonb_typeof(claims) <> 'object' THEN
        RAISE EXCEPTION 'a session needs a subject and a JSON object of claims' USING ERRCODE = '22023';
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
    INSERT INTO jwt_rls.sessions (id, sub, claims, expires_at)
        VALUES (session_id, start_session.sub, start_session.claims,
                now() + current_setting('jwt_rls.session_lifetime')::interval);
    INSERT INTO jwt_rls.refresh_tokens (hash, session_id)
        VALUES (sha256(convert_to(refresh_token, 'UTF8')), session_id);
    access_token := jwt_rls.sign(start_session.claims
                                 || jsonb_build_object('sub', start_session.sub, 'sid', session_id));
END
$$;

-- One rotation, as the extension owner: the presented refresh token is
-- used up and a new access and refresh token returned (status 'ok'). A
-- used-up token presented again is reuse: the session is revoked and the
-- status is 'reused', with no tokens; jwt_rls.refresh() commits that and
-- fails. Other refusals raise here.
CREATE FUNCTION jwt_rls.rotate_refresh_token(presented text, OUT status text,
                                             OUT access_token text, OUT refresh_token text, OUT session_id uuid)
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
    access_token := jwt_rls.sign(s.claims || jsonb_build_object('sub', s.sub, 'sid', s.id));
    status := 'ok';
END
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

-- Logs one session out: its refresh tokens stop working, and its access
-- tokens are refused from every backend's next statement.
CREATE FUNCTION jwt_rls.end_session(session_id uuid) RETURNS boolean
    LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH ended AS (
        UPDATE jwt_rls.sessions s SET revoked_at = now(), revoked_reason = 'logout'
         WHERE s.id = end_session.session_id AND s.revoked_at IS NULL RETURNING 1)
    SELECT count(*) > 0 FROM ended
$$;

-- Logs a subject out everywhere: every session of it; returns how many.
CREATE FUNCTION jwt_rls.end_sessions(sub text) RETURNS integer
    LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH ended AS (
        UPDATE jwt_rls.sessions s SET revoked_at = now(), revoked_reason = 'logout everywhere'
         WHERE s.sub = end_sessions.sub AND s.revoked_at IS NULL RETURNING 1)
    SELECT count(*)::integer FROM ended
$$;

REVOKE EXECUTE ON FUNCTION jwt_rls.random_token() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.start_session(text, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.rotate_refresh_token(text) FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE jwt_rls.refresh(text, text, text, uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.end_session(uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.end_sessions(text) FROM PUBLIC;

-- PostgREST/Supabase compatibility (jwt_rls.postgrest_compat): the auth.*
-- functions on request, and a db-pre-request hook for PostgREST.
CREATE FUNCTION jwt_rls.create_auth_functions() RETURNS void
    VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    LANGUAGE plpgsql AS $body$
DECLARE
    owner_super boolean;
    stranger text;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) pg_catalog.to_regrole(current_user)) THEN
        RAISE EXCEPTION 'only a superuser can create the auth functions'
            USING ERRCODE = '42501',
                  DETAIL = 'auth.uid() and its siblings decide what every policy that calls them sees.',
                  HINT = 'Run SELECT jwt_rls.create_auth_functions() as a superuser.';
    END IF;
    SELECT r.rolsuper INTO owner_super
        FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
        WHERE n.nspname OPERATOR(pg_catalog.=) 'auth';
    IF NOT FOUND THEN
        CREATE SCHEMA auth;
    ELSIF NOT owner_super THEN
        RAISE EXCEPTION 'schema auth is owned by a role that is not a superuser'
            USING ERRCODE = '42501',
                  DETAIL = 'Its owner could replace the auth functions with ones that return any user.',
                  HINT = 'ALTER SCHEMA auth OWNER TO a superuser, or drop the schema, and run this again.';
    END IF;
    -- Nobody but superusers may create objects in auth (an overload of
    -- uid() planted there would change what policies call).
    SELECT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE a.grantee::pg_catalog.regrole::text END INTO stranger
        FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
        WHERE n.nspname OPERATOR(pg_catalog.=) 'auth' AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
          AND (a.grantee OPERATOR(pg_catalog.=) 0
               OR NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) a.grantee))
        LIMIT 1;
    IF stranger IS NOT NULL THEN
        RAISE EXCEPTION 'a role that is not a superuser can create objects in schema auth'
            USING ERRCODE = '42501',
                  DETAIL = pg_catalog.format('%s holds CREATE on schema auth.', stranger),
                  HINT = 'REVOKE CREATE ON SCHEMA auth FROM that role, and run this again.';
    END IF;
    SELECT pg_catalog.format('%s (owned by %s)', p.oid::pg_catalog.regprocedure, p.proowner::pg_catalog.regrole) INTO stranger
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
        WHERE n.nspname OPERATOR(pg_catalog.=) 'auth' AND p.proname OPERATOR(pg_catalog.=) ANY ('{uid,jwt,role,email}')
          AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) p.proowner)
        LIMIT 1;
    IF stranger IS NOT NULL THEN
        RAISE EXCEPTION 'schema auth holds a function of the same name owned by a role that is not a superuser'
            USING ERRCODE = '42501',
                  DETAIL = pg_catalog.format('Function %s.', stranger),
                  HINT = 'Drop that function (or make a superuser its owner), and run this again.';
    END IF;
    GRANT USAGE ON SCHEMA auth TO PUBLIC;
    -- SQL-standard bodies: Postgres records that they depend on jwt_rls's
    -- functions, so pg_dump orders them after the extension and DROP
    -- EXTENSION cannot leave them dangling.
    CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid STABLE PARALLEL SAFE LANGUAGE sql
        BEGIN ATOMIC SELECT jwt_rls.jwt_claim('sub')::uuid; END;
    CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb STABLE PARALLEL SAFE LANGUAGE sql
        BEGIN ATOMIC SELECT jwt_rls.jwt_claims(); END;
    CREATE OR REPLACE FUNCTION auth.role() RETURNS text STABLE PARALLEL SAFE LANGUAGE sql
        BEGIN ATOMIC SELECT jwt_rls.jwt_claim('role'); END;
    CREATE OR REPLACE FUNCTION auth.email() RETURNS text STABLE PARALLEL SAFE LANGUAGE sql
        BEGIN ATOMIC SELECT jwt_rls.jwt_claim('email'); END;
    COMMENT ON FUNCTION auth.uid() IS 'The sub claim of the token jwt_rls verified, as uuid';
    COMMENT ON FUNCTION auth.jwt() IS 'The claims of the token jwt_rls verified';
    COMMENT ON FUNCTION auth.role() IS 'The role claim of the token jwt_rls verified';
    COMMENT ON FUNCTION auth.email() IS 'The email claim of the token jwt_rls verified';
END
$body$;
COMMENT ON FUNCTION jwt_rls.create_auth_functions() IS
    'Creates auth.uid(), auth.jwt(), auth.role() and auth.email() reading verified claims (Supabase-style policies)';
REVOKE EXECUTE ON FUNCTION jwt_rls.create_auth_functions() FROM PUBLIC;

CREATE FUNCTION jwt_rls.drop_auth_functions() RETURNS void
    VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    LANGUAGE plpgsql AS $body$
BEGIN
    DROP FUNCTION IF EXISTS auth.uid(), auth.jwt(), auth.role(), auth.email();
END
$body$;
COMMENT ON FUNCTION jwt_rls.drop_auth_functions() IS
    'Drops the functions create_auth_functions() made (refused while policies use them)';
REVOKE EXECUTE ON FUNCTION jwt_rls.drop_auth_functions() FROM PUBLIC;

CREATE FUNCTION jwt_rls.postgrest_pre_request() RETURNS void
    VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    LANGUAGE plpgsql AS $body$
DECLARE
    header text := pg_catalog.current_setting('request.headers', true)::pg_catalog.json OPERATOR(pg_catalog.->>) 'authorization';
BEGIN
    -- The header comes from the HTTP client; whatever it holds is verified
    -- like any token, so there is nothing to trust here but the signature.
    IF header IS NULL OR header OPERATOR(pg_catalog.=) '' THEN
        RETURN;
    END IF;
    IF pg_catalog.lower(pg_catalog.left(header, 7)) OPERATOR(pg_catalog.<>) 'bearer ' THEN
        RAISE EXCEPTION 'the Authorization header is not a bearer token'
            USING ERRCODE = '28000',
                  HINT = 'Send "Authorization: Bearer <token>".';
    END IF;
    PERFORM jwt_rls.authenticate(pg_catalog.btrim(pg_catalog.substr(header, 8)));
END
$body$;
COMMENT ON FUNCTION jwt_rls.postgrest_pre_request() IS
    'PostgREST db-pre-request hook: binds the bearer token of the request (none: nothing bound)';
