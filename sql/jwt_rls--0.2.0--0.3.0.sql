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
REVOKE EXECUTE ON FUNCTION jwt_rls.forget_successors() FROM PUBLIC;

-- Logging out also forgets the successors kept for the reuse grace period.
-- Logs one session out: its refresh tokens stop working, and its access
-- tokens are refused from every backend's next statement.
CREATE OR REPLACE FUNCTION jwt_rls.end_session(session_id uuid) RETURNS boolean
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
CREATE OR REPLACE FUNCTION jwt_rls.end_sessions(sub text) RETURNS integer
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

-- Introspection for services that ask the database (RFC 7662 shape).
CREATE FUNCTION jwt_rls.introspect(token text) RETURNS jsonb
    VOLATILE PARALLEL SAFE STRICT
    LANGUAGE c AS 'MODULE_PATHNAME', 'introspect_c';
COMMENT ON FUNCTION jwt_rls.introspect(text) IS
    'RFC 7662-shaped introspection: {"active": true} and the claims of a token that verifies and is not revoked, else {"active": false}';
REVOKE EXECUTE ON FUNCTION jwt_rls.introspect(text) FROM PUBLIC;

-- isolate(): on a Citus distributed or reference table, the bare policy
-- form (Citus refuses subqueries in policies).
CREATE OR REPLACE FUNCTION jwt_rls.isolate(tbl pg_catalog.regclass, col pg_catalog.name, claim pg_catalog.text)
    RETURNS pg_catalog.text
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $isolate$
DECLARE
    rel        record;
    att        record;
    part       record;
    tables     oid[];
    names      text[] := '{}';
    typ        text;          -- the column's type, without typmod, schema-qualified as needed
    distributed boolean := false;  -- a Citus distributed or reference table
    base       oid;           -- the column's type below any domains
    eqop       text;          -- OPERATOR(schema.=) of the type's default btree (or hash) opclass
    expr       text;
    ok         boolean;
    before     text;
    after      text;
    widening   text;
    changed    boolean := true;
    cmds       constant text[] := ARRAY['select', 'insert', 'update', 'delete'];
    cmd        text;
    pol        text;
    relid      oid;
    k          integer;
    -- What decides that nothing would change: the RLS flags and isolate()'s
    -- own four policies (command, roles, kind, expressions, comment).
    state_sql  constant text := $q$
        SELECT pg_catalog.string_agg(pg_catalog.concat_ws('|', c.oid, c.relrowsecurity, c.relforcerowsecurity,
                   (SELECT pg_catalog.string_agg(pg_catalog.concat_ws('/', p.polname, p.polcmd, p.polpermissive, p.polroles::pg_catalog.text,
                                                                      pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                                                                      pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid),
                                                                      pg_catalog.obj_description(p.oid, 'pg_policy')), ';' ORDER BY p.polname)
                      FROM pg_catalog.pg_policy p
                     WHERE p.polrelid = c.oid AND p.polname LIKE 'jwt\_rls\_isolate\_%')), E'\n' ORDER BY c.oid)
          FROM pg_catalog.pg_class c WHERE c.oid = ANY ($1)$q$;
BEGIN
    IF tbl IS NULL OR col IS NULL OR claim IS NULL THEN
        RAISE EXCEPTION 'jwt_rls.isolate() needs a table, a column and a claim'
            USING ERRCODE = '22004',
                  HINT = 'For example: SELECT jwt_rls.isolate(''invoices'', ''tenant_id'', ''tenant_id'');';
    END IF;
    IF claim = '' THEN
        RAISE EXCEPTION 'claim name is empty' USING ERRCODE = '22023',
            HINT = 'Name the claim that holds the tenant, such as ''tenant_id'' (or a path such as ''org.id'').';
    END IF;

    SELECT c.oid, c.relname, c.relkind, c.relpersistence, c.relowner, c.relispartition,
           n.nspname, pg_catalog.pg_get_userbyid(c.relowner) AS owner_name,
           (SELECT e.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
               AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e') AS extname
      INTO rel
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tbl;
    IF NOT FOUND THEN
        -- A regclass given as a number can name nothing.
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid USING ERRCODE = '42P01';
    END IF;

    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'jwt_rls.isolate() protects tables only' USING ERRCODE = '42809',
            DETAIL = pg_catalog.format('%s is %s.', tbl,
                CASE rel.relkind WHEN 'v' THEN 'a view' WHEN 'm' THEN 'a materialized view'
                                 WHEN 'f' THEN 'a foreign table' WHEN 'S' THEN 'a sequence'
                                 WHEN 'i' THEN 'an index' WHEN 'I' THEN 'a partitioned index'
                                 WHEN 'c' THEN 'a composite type' WHEN 't' THEN 'a TOAST table'
                                 ELSE 'not a table' END),
            HINT = CASE rel.relkind
                WHEN 'v' THEN 'Isolate the tables the view reads, and make the view run as its caller: ALTER VIEW ... SET (security_invoker = true).'
                WHEN 'm' THEN 'A materialized view has no row level security: every reader sees every tenant. Use a view WITH (security_invoker = true) over an isolated table instead.'
                WHEN 'f' THEN 'Foreign tables have no row level security: restrict the rows on the remote server, or copy them into a local table.'
                ELSE 'Give an ordinary or partitioned table.' END;
    END IF;
    IF rel.nspname IN ('pg_catalog', 'information_schema', 'pg_toast', 'jwt_rls') OR rel.extname IS NOT NULL THEN
        RAISE EXCEPTION 'jwt_rls.isolate() does not protect system or extension tables' USING ERRCODE = '0A000',
            DETAIL = CASE WHEN rel.extname IS NOT NULL
                          THEN pg_catalog.format('%s belongs to extension %s.', tbl, rel.extname)
                          ELSE pg_catalog.format('%s is in schema %s.', tbl, rel.nspname) END,
            HINT = CASE WHEN rel.nspname = 'jwt_rls' OR rel.extname = 'jwt_rls'
                        THEN 'jwt_rls''s own tables are readable by no application role; keep them that way (REVOKE, see jwt_rls.audit()).'
                        ELSE 'Isolate your own tables.' END;
    END IF;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'jwt_rls.isolate() does not protect temporary tables' USING ERRCODE = '0A000',
            DETAIL = pg_catalog.format('%s is a temporary table: it belongs to this session and disappears with it.', tbl),
            HINT = 'Isolate the permanent table the rows come from.';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, rel.relowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', rel.relname USING ERRCODE = '42501',
            DETAIL = pg_catalog.format('%s is owned by %I; role %I is not a member of it.', tbl, rel.owner_name, current_user),
            HINT = pg_catalog.format('Run jwt_rls.isolate() as %I (or a member of it), the role that runs your migrations.', rel.owner_name);
    END IF;

    SELECT a.attnum, a.atttypid, a.attgenerated, a.attidentity, t.typnamespace
      INTO att
      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = tbl AND a.attname = col AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column % of relation % does not exist', pg_catalog.quote_ident(col), rel.relname
            USING ERRCODE = '42703',
                  DETAIL = pg_catalog.format('%s has no column named %I.', tbl, col),
                  HINT = 'Name the column that holds the tenant, exactly as it is spelled (names are case-sensitive here: no quoting needed).';
    END IF;
    IF att.attnum < 0 THEN
        RAISE EXCEPTION 'column % is a system column', pg_catalog.quote_ident(col) USING ERRCODE = '42P10',
            DETAIL = pg_catalog.format('%I is maintained by PostgreSQL, not by the rows'' writers.', col),
            HINT = 'Add a column holding the tenant and isolate on it.';
    END IF;
    IF att.attgenerated <> '' OR att.attidentity <> '' THEN
        RAISE EXCEPTION 'column % is a generated column', pg_catalog.quote_ident(col) USING ERRCODE = '42P10',
            DETAIL = pg_catalog.format('%I of %s is %s: its value is computed, not written with the row, so WITH CHECK would test the computation, not the writer''s tenant.',
                                       col, tbl, CASE WHEN att.attidentity <> '' THEN 'an identity column' ELSE 'a generated column' END),
            HINT = 'Isolate on a plain column that the application writes.';
    END IF;

    -- The table and every partition / inheritance child below it: queried
    -- directly, a child is protected by its own policies only.
    WITH RECURSIVE tree(r) AS (
        SELECT tbl::oid
        UNION
        SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent = tree.r
    )
    SELECT pg_catalog.array_agg(tree.r ORDER BY tree.r = tbl::oid DESC, tree.r::pg_catalog.regclass::text) INTO tables FROM tree;
    -- Their names, qualified once here: the search_path changes below.
    SELECT pg_catalog.array_agg(pg_catalog.format('%I.%I', n.nspname, c.relname) ORDER BY t.n) INTO names
      FROM pg_catalog.unnest(tables) WITH ORDINALITY t(oid, n)
      JOIN pg_catalog.pg_class c ON c.oid = t.oid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;

    FOR part IN
        SELECT c.oid, c.relkind, c.relowner, c.relpersistence FROM pg_catalog.pg_class c
         WHERE c.oid = ANY (tables) AND c.oid <> tbl
    LOOP
        IF part.relkind NOT IN ('r', 'p') THEN
            RAISE EXCEPTION 'jwt_rls.isolate() cannot protect every partition of %', tbl USING ERRCODE = '42809',
                DETAIL = pg_catalog.format('%s, below %s, is %s, which has no row level security.', part.oid::pg_catalog.regclass, tbl,
                                           CASE part.relkind WHEN 'f' THEN 'a foreign table' ELSE 'not a table' END),
                HINT = 'Detach it (ALTER TABLE ... DETACH PARTITION) or restrict its rows where they live, then isolate again.';
        END IF;
        IF part.relpersistence = 't' THEN
            RAISE EXCEPTION 'jwt_rls.isolate() cannot protect every partition of %', tbl USING ERRCODE = '0A000',
                DETAIL = pg_catalog.format('%s, below %s, is a temporary table.', part.oid::pg_catalog.regclass, tbl),
                HINT = 'Detach it (ALTER TABLE ... NO INHERIT) then isolate again.';
        END IF;
        IF NOT pg_catalog.pg_has_role(current_user, part.relowner, 'USAGE') THEN
            RAISE EXCEPTION 'must be owner of table %', (SELECT relname FROM pg_catalog.pg_class WHERE oid = part.oid)
                USING ERRCODE = '42501',
                      DETAIL = pg_catalog.format('%s, below %s, is owned by %I; role %I is not a member of it.',
                                                 part.oid::pg_catalog.regclass, tbl, pg_catalog.pg_get_userbyid(part.relowner), current_user),
                      HINT = 'Run jwt_rls.isolate() as a role that owns the table and all its partitions.';
        END IF;
    END LOOP;

    -- Someone else's permissive policies are OR'ed with ours: refuse rather
    -- than promise an isolation they undo. Restrictive ones only narrow.
    SELECT pg_catalog.string_agg(pg_catalog.format('%I on %s', p.polname, p.polrelid::pg_catalog.regclass), ', '
                                 ORDER BY p.polrelid::pg_catalog.regclass::text, p.polname)
      INTO widening
      FROM pg_catalog.pg_policy p
     WHERE p.polrelid = ANY (tables) AND p.polpermissive
       AND p.polname <> ALL (ARRAY['jwt_rls_isolate_select', 'jwt_rls_isolate_insert',
                                   'jwt_rls_isolate_update', 'jwt_rls_isolate_delete']);
    IF widening IS NOT NULL THEN
        RAISE EXCEPTION 'table % has permissive policies that jwt_rls.isolate() did not create', tbl
            USING ERRCODE = '55000',
                  DETAIL = pg_catalog.format('Permissive policies are OR''ed together, so these would let rows of other tenants through: %s.', widening),
                  HINT = 'Drop them, or recreate them AS RESTRICTIVE (restrictive policies only narrow what the tenant policies allow), then run jwt_rls.isolate() again.';
    END IF;

    -- The type, without typmod (a cast to varchar(3) or numeric(5,2) would
    -- truncate or round the claim into a match). format_type() qualifies it
    -- whenever it is not in pg_catalog (this function's search_path);
    -- without a typmod it spells bpchar as "character", which is char(1),
    -- so bpchar is named as itself. "char" and name truncate at 1 and 63
    -- bytes whatever the cast: refused.
    IF att.atttypid IN ('pg_catalog."char"'::pg_catalog.regtype, 'pg_catalog.name'::pg_catalog.regtype) THEN
        RAISE EXCEPTION 'column % has type %, which a claim cannot be compared with', pg_catalog.quote_ident(col),
                        pg_catalog.format_type(att.atttypid, NULL)
            USING ERRCODE = '42804',
                  DETAIL = 'Casting a claim to this type truncates it, so a longer tenant id could match a shorter one.',
                  HINT = 'Isolate on a column of type text, uuid or a number.';
    END IF;
    typ := CASE WHEN att.atttypid = 'pg_catalog.bpchar'::pg_catalog.regtype THEN 'pg_catalog.bpchar'
                ELSE pg_catalog.format_type(att.atttypid, NULL) END;
    -- The comparison uses the equality operator of the type's default btree
    -- (else hash) operator class, named with its schema: operator classes
    -- are made by superusers, so nobody who can merely create an operator
    -- "=" in some schema on the path can put theirs into the policy.
    base := att.atttypid;
    WHILE (SELECT t.typtype FROM pg_catalog.pg_type t WHERE t.oid = base) = 'd' LOOP
        base := (SELECT t.typbasetype FROM pg_catalog.pg_type t WHERE t.oid = base);
    END LOOP;
    -- (varchar has no class of its own: it is binary-coercible to text
    -- and uses text's, as Postgres itself does.)
    SELECT pg_catalog.format('OPERATOR(%I.=)', n.nspname) INTO eqop
      FROM (SELECT base AS typ, 0 AS rank
            UNION ALL
            SELECT c.casttarget, 1 FROM pg_catalog.pg_cast c
             WHERE c.castsource = base AND c.castmethod = 'b') t
      JOIN pg_catalog.pg_opclass oc ON oc.opcintype = t.typ AND oc.opcdefault
      JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname IN ('btree', 'hash')
      JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = t.typ
                                AND ao.amoprighttype = t.typ AND ao.amopmethod = am.oid
                                AND ao.amopstrategy = CASE am.amname WHEN 'btree' THEN 3 ELSE 1 END
      JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr
      JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
     ORDER BY t.rank, am.amname = 'btree' DESC
     LIMIT 1;
    IF eqop IS NULL THEN
        RAISE EXCEPTION 'column % has type %, which a claim cannot be compared with', pg_catalog.quote_ident(col), typ
            USING ERRCODE = '42883',
                  DETAIL = pg_catalog.format('Type %s has no default btree or hash operator class, so no equality jwt_rls.isolate() can rely on.', typ),
                  HINT = 'Isolate on a column whose type has a cast from text and an = operator (uuid, text, bigint, ...).';
    END IF;
    BEGIN
        EXECUTE pg_catalog.format('SELECT pg_catalog.pg_typeof(NULL::%1$s %2$s (SELECT NULL::pg_catalog.text::%1$s)) = ''pg_catalog.bool''::pg_catalog.regtype', typ, eqop)
           INTO ok;
    EXCEPTION WHEN undefined_function OR cannot_coerce OR datatype_mismatch OR wrong_object_type THEN
        RAISE EXCEPTION 'column % has type %, which a claim cannot be compared with', pg_catalog.quote_ident(col), typ
            USING ERRCODE = SQLSTATE,
                  DETAIL = pg_catalog.format('Checking %I = (SELECT jwt_rls.jwt_claim(...)::%s) failed: %s', col, typ, SQLERRM),
                  HINT = 'Isolate on a column whose type has a cast from text and an = operator (uuid, text, bigint, ...).';
    END;
    IF NOT ok THEN
        RAISE EXCEPTION 'column % has type %, which a claim cannot be compared with', pg_catalog.quote_ident(col), typ
            USING ERRCODE = '42804',
                  DETAIL = pg_catalog.format('%I = ... does not yield a boolean for type %s.', col, typ),
                  HINT = 'Isolate on a column whose type has a cast from text and an = operator (uuid, text, bigint, ...).';
    END IF;
    -- Citus refuses subqueries in the policies of its distributed and
    -- reference tables ("unexpected non-SELECT command in SubLink"): there
    -- the claim is read by the bare call, once per row (each call site
    -- remembers its answer for the statement).
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1)'
            INTO distributed USING rel.oid;
    END IF;
    IF distributed THEN
        expr := pg_catalog.format('%I %s jwt_rls.jwt_claim(%L)::%s', col, eqop, claim, typ);
        RAISE NOTICE 'jwt_rls.isolate(): % is a Citus table: its policies read the claim without a subquery', tbl
            USING DETAIL = 'Citus refuses subqueries in the policies of distributed and reference tables.';
    ELSE
        expr := pg_catalog.format('%I %s (SELECT jwt_rls.jwt_claim(%L)::%s)', col, eqop, claim, typ);
    END IF;

    EXECUTE state_sql INTO before USING tables;
    BEGIN
        FOR k IN 1 .. pg_catalog.cardinality(tables) LOOP
            relid := tables[k];
            EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY',
                                      names[k]);
            FOREACH cmd IN ARRAY cmds LOOP
                pol := 'jwt_rls_isolate_' || cmd;
                IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = relid AND p.polname = pol) THEN
                    EXECUTE pg_catalog.format('DROP POLICY %I ON %s', pol, names[k]);
                END IF;
                EXECUTE pg_catalog.format('CREATE POLICY %I ON %s AS PERMISSIVE FOR %s TO PUBLIC %s',
                    pol, names[k], pg_catalog.upper(cmd),
                    CASE cmd WHEN 'select' THEN pg_catalog.format('USING (%s)', expr)
                             WHEN 'insert' THEN pg_catalog.format('WITH CHECK (%s)', expr)
                             WHEN 'update' THEN pg_catalog.format('USING (%s) WITH CHECK (%s)', expr, expr)
                             WHEN 'delete' THEN pg_catalog.format('USING (%s)', expr) END);
                EXECUTE pg_catalog.format('COMMENT ON POLICY %I ON %s IS %L', pol, names[k],
                    pg_catalog.format('jwt_rls.isolate(): %I = claim %L', col, claim));
            END LOOP;
        END LOOP;
        EXECUTE state_sql INTO after USING tables;
        IF after IS NOT DISTINCT FROM before THEN
            -- Already so: undo the rewrite, so that a second call changes
            -- nothing at all (no new policy OIDs, no invalidation).
            RAISE EXCEPTION USING ERRCODE = 'JRNOP';
        END IF;
    EXCEPTION WHEN SQLSTATE 'JRNOP' THEN
        changed := false;
    END;

    IF pg_catalog.cardinality(tables) > 1 THEN
        RAISE NOTICE 'jwt_rls.isolate(): % and the % partitions or children below it are isolated', names[1], pg_catalog.cardinality(tables) - 1
            USING DETAIL = pg_catalog.format('Isolated: %s. Partitions created later are not: run jwt_rls.isolate() again after adding one.',
                                             pg_catalog.array_to_string(names, ', '));
    END IF;
    RETURN pg_catalog.format('%s %s: row level security enabled and forced; policies jwt_rls_isolate_select, jwt_rls_isolate_insert, jwt_rls_isolate_update, jwt_rls_isolate_delete: %s',
        CASE WHEN changed THEN 'isolated' ELSE 'already isolated, unchanged:' END,
        pg_catalog.array_to_string(names, ', '), expr);
END
$isolate$;

-- Functions Citus can run on shared tables (share_with_citus()): no
-- function call in ON CONFLICT DO UPDATE, no counted modifying CTE.
CREATE OR REPLACE FUNCTION jwt_rls.revoke_subject(sub text, issued_before timestamptz DEFAULT now(), reason text DEFAULT NULL)
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
            -- The new row's default (now()): Citus refuses a function call here.
            revoked_at = excluded.revoked_at,
            reason = coalesce(excluded.reason, r.reason);
END
$$;
CREATE OR REPLACE FUNCTION jwt_rls.disable_decryption_key(kid text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE jwt_rls.decryption_keys k SET enabled = false
     WHERE k.kid = disable_decryption_key.kid;
    RETURN FOUND;
END
$$;
CREATE OR REPLACE FUNCTION jwt_rls.enable_decryption_key(kid text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE jwt_rls.decryption_keys k SET enabled = true
     WHERE k.kid = enable_decryption_key.kid;
    RETURN FOUND;
END
$$;
CREATE OR REPLACE FUNCTION jwt_rls.remove_decryption_key(kid text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM jwt_rls.decryption_keys k
     WHERE k.kid = remove_decryption_key.kid;
    RETURN FOUND;
END
$$;

-- audit() on Citus clusters (src/adoption/isolation.sql).
CREATE OR REPLACE FUNCTION jwt_rls.audit()
    RETURNS TABLE (severity pg_catalog.text, object pg_catalog.text, finding pg_catalog.text, fix pg_catalog.text)
    LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $audit$
DECLARE
    tenant_claim text := coalesce(nullif(pg_catalog.current_setting('jwt_rls.tenant_id_claim', true), ''), 'tenant_id');
    -- Is jwt_rls loaded when every session starts? Until it is loaded, its
    -- settings (jwt_rls.claims, ...) are placeholders any role can SET.
    preloaded    boolean;
    sees_conf    boolean := pg_catalog.pg_has_role(current_user, 'pg_read_all_settings', 'USAGE');
    -- Under jwt_rls.postgrest_compat, request.jwt.claims and the other
    -- request.* names (but the four PostgREST writes) are jwt_rls's too.
    compat       boolean := pg_catalog.current_setting('jwt_rls.postgrest_compat', true) = 'on';
    -- Findings about a Citus cluster, where Citus's metadata exists here.
    citus_findings jsonb := '[]';
    shards_shown   text;
BEGIN
    preloaded := EXISTS (
        SELECT 1 FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c
         WHERE s.setrole = 0
           AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
           AND c ~ '^(session|shared)_preload_libraries=(.*[ ,"])?jwt_rls([ ,"].*)?$');
    IF sees_conf THEN
        preloaded := preloaded OR EXISTS (
            SELECT 1 FROM pg_catalog.unnest(ARRAY[pg_catalog.current_setting('shared_preload_libraries'),
                                                  pg_catalog.current_setting('session_preload_libraries')]) v,
                          pg_catalog.unnest(pg_catalog.string_to_array(v, ',')) lib
             WHERE pg_catalog.btrim(lib, ' "') = 'jwt_rls');
    ELSE
        RAISE NOTICE 'jwt_rls.audit() runs as %, which cannot read the server''s shared_preload_libraries and session_preload_libraries', current_user
            USING DETAIL = 'The catalogs it reads are readable by every role, so the findings are the same a superuser sees in this database, except that jwt_rls is taken as preloaded only when ALTER DATABASE / ALTER SYSTEM-level settings in pg_db_role_setting say so; it never looks into other databases.',
                  HINT = 'GRANT pg_read_all_settings to the auditing role, or run it as a superuser.';
    END IF;
    -- Citus's catalogs are read through EXECUTE, so that nothing is planned
    -- against them where Citus is not installed.
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL
       AND pg_catalog.to_regprocedure('pg_catalog.citus_is_coordinator()') IS NOT NULL THEN
        -- Citus hides the shards on a worker from pg_class; they are what a
        -- role connected to that worker could query directly.
        shards_shown := pg_catalog.current_setting('citus.show_shards_for_app_name_prefixes', true);
        PERFORM pg_catalog.set_config('citus.show_shards_for_app_name_prefixes', '*', true);
        EXECUTE $findings$
        SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('severity', f.severity, 'object', f.object,
                                                                           'finding', f.finding, 'fix', f.fix)), '[]')
          FROM (
        -- Keys and revocations per node.
        SELECT 'high'::pg_catalog.text, 'extension jwt_rls'::pg_catalog.text,
               'keys, revocations and sessions are per node on this Citus cluster: a key added or disabled, a token revoked or a session ended on the coordinator does not reach the workers, which go on accepting what it refuses'::pg_catalog.text,
               'SELECT * FROM jwt_rls.share_with_citus();  -- on the coordinator'::pg_catalog.text
         WHERE pg_catalog.citus_is_coordinator()
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node n WHERE n.groupid > 0 AND n.noderole = 'primary')
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
                            WHERE p.logicalrelid = 'jwt_rls.keys'::pg_catalog.regclass)
        UNION ALL
        -- Isolated by one column, distributed by another.
        SELECT 'medium', 'table ' || p.logicalrelid::pg_catalog.text,
               pg_catalog.format('is distributed by %I, but its row level security compares %I with the tenant claim: every query on it runs on every shard, and each tenant''s rows are spread over every worker',
                                 d.col, t.col),
               pg_catalog.format('SELECT alter_distributed_table(%L, distribution_column := %L);', p.logicalrelid::pg_catalog.text, t.col)
          FROM pg_catalog.pg_dist_partition p
          CROSS JOIN LATERAL (SELECT pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)::pg_catalog.text AS col) d
          JOIN LATERAL (SELECT a.attname::pg_catalog.text AS col FROM pg_catalog.pg_attribute a
                         WHERE a.attrelid = p.logicalrelid AND a.attnum > 0 AND NOT a.attisdropped
                           AND a.attname IN ($1, 'tenant_id') ORDER BY a.attname = $1 DESC LIMIT 1) t ON true
         WHERE p.partmethod = 'h' AND d.col <> t.col
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_policy pol WHERE pol.polrelid = p.logicalrelid
                          AND pg_catalog.concat_ws(' ', pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),
                                                        pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid)) LIKE '%jwt_claim(%')
        UNION ALL
        -- A shard on this node without the row level security of its table.
        SELECT 'critical', 'table ' || c.oid::pg_catalog.regclass::pg_catalog.text,
               pg_catalog.format('is this node''s shard of %s, which has row level security, but %s: a role connected to this node that queries the shard directly reads its rows unfiltered',
                                 p.logicalrelid::pg_catalog.text,
                                 CASE WHEN NOT c.relrowsecurity THEN 'row level security is not enabled on it'
                                      WHEN d.relforcerowsecurity AND NOT c.relforcerowsecurity THEN 'it is not forced on it'
                                      ELSE 'it has no policies' END),
               pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY%s; and give it the policies of %s (Citus made them when it created the shard).',
                                 c.oid::pg_catalog.regclass, CASE WHEN d.relforcerowsecurity THEN ', FORCE ROW LEVEL SECURITY' ELSE '' END,
                                 p.logicalrelid::pg_catalog.text)
          FROM pg_catalog.pg_dist_partition p
          JOIN pg_catalog.pg_class d ON d.oid = p.logicalrelid AND d.relrowsecurity
          JOIN pg_catalog.pg_namespace n ON n.oid = d.relnamespace
          JOIN pg_catalog.pg_dist_shard sh ON sh.logicalrelid = p.logicalrelid
          JOIN pg_catalog.pg_dist_placement pl ON pl.shardid = sh.shardid
                                              AND pl.groupid = (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)
          JOIN pg_catalog.pg_class c
            ON c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident(n.nspname) || '.'
                                              || pg_catalog.quote_ident(d.relname || '_' || sh.shardid))
         WHERE NOT c.relrowsecurity OR (d.relforcerowsecurity AND NOT c.relforcerowsecurity)
            OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy pol WHERE pol.polrelid = c.oid)) f(severity, object, finding, fix)
        $findings$ INTO citus_findings USING tenant_claim;
        PERFORM pg_catalog.set_config('citus.show_shards_for_app_name_prefixes', coalesce(shards_shown, ''), true);
    END IF;
    RETURN QUERY
    WITH RECURSIVE
    -- (member, role): every role each role is a member of, itself included,
    -- through explicit grants only (a superuser is not a member of everything here).
    membership(member, roleid) AS (
        SELECT r.oid, r.oid FROM pg_catalog.pg_roles r
        UNION
        SELECT m.member, a.roleid FROM pg_catalog.pg_auth_members a JOIN membership m ON a.member = m.roleid
    ),
    user_tables AS (
        SELECT c.oid, c.relname, c.relowner, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced, c.relacl,
               (SELECT pg_catalog.count(*) FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid) AS policies,
               (SELECT a.attname FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attname IN (tenant_claim, 'tenant_id') ORDER BY a.attname = tenant_claim DESC LIMIT 1) AS tenant_col,
               (SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent
                 WHERE i.inhrelid = c.oid AND pc.relrowsecurity LIMIT 1) AS rls_parent,
               -- Granted to anyone but its owner (PUBLIC included)?
               EXISTS (SELECT 1 FROM pg_catalog.aclexplode(c.relacl) x WHERE x.grantee <> c.relowner) AS exposed
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'jwt_rls')
           AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                              AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e')
    ),
    rls_tables AS (SELECT * FROM user_tables t WHERE t.rls OR t.policies > 0),
    app_roles AS (
        SELECT DISTINCT r.oid, r.rolname, r.rolsuper, r.rolbypassrls
          FROM pg_catalog.pg_roles r
          JOIN membership m ON m.member = r.oid
          JOIN rls_tables t ON true
          JOIN LATERAL pg_catalog.aclexplode(t.relacl) g ON g.grantee = m.roleid
         WHERE r.rolcanlogin AND r.oid <> 10
           AND r.oid <> t.relowner
    ),
    policy_exprs AS (
        SELECT p.oid, p.polname, p.polrelid, p.polpermissive, t.tenant_col,
               pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS qual,
               pg_catalog.concat_ws(' ', pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                                         pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)) AS expr
          FROM pg_catalog.pg_policy p JOIN user_tables t ON t.oid = p.polrelid
    ),
    -- Settings a policy reads, directly or in a SQL / PL/pgSQL function it calls (one level).
    policy_settings AS (
        SELECT pe.oid, pe.polname, pe.polrelid, NULL::text AS via, m[1] AS fn, pg_catalog.replace(m[2], '''''', '''') AS setting
          FROM policy_exprs pe,
               LATERAL pg_catalog.regexp_matches(pe.expr, '(current_setting|set_config)\(\s*(?:''((?:[^'']|'''')*)'')?', 'g') m
        UNION ALL
        SELECT pe.oid, pe.polname, pe.polrelid, pg_catalog.format('%s.%I(%s)', fn_ns.nspname, f.proname,
                   pg_catalog.pg_get_function_identity_arguments(f.oid)), m[1], pg_catalog.replace(m[2], '''''', '''')
          FROM policy_exprs pe
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid = pe.oid
                                     AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
          JOIN pg_catalog.pg_proc f ON f.oid = d.refobjid
          JOIN pg_catalog.pg_namespace fn_ns ON fn_ns.oid = f.pronamespace
          JOIN pg_catalog.pg_language l ON l.oid = f.prolang
          -- A SQL-standard body (BEGIN ATOMIC / RETURN) has no prosrc: its
          -- text comes from pg_get_functiondef().
          , LATERAL pg_catalog.regexp_matches(CASE WHEN f.prosqlbody IS NOT NULL THEN pg_catalog.pg_get_functiondef(f.oid)
                                                   ELSE f.prosrc END, '(current_setting|set_config)\(\s*(?:''((?:[^'']|'''')*)'')?', 'gi') m
         WHERE fn_ns.nspname NOT IN ('pg_catalog', 'jwt_rls') AND l.lanname IN ('sql', 'plpgsql')
    ),
    findings(severity, object, finding, fix) AS (
        -- Policies that row level security ignores.
        SELECT 'critical', 'table ' || t.oid::pg_catalog.regclass,
               pg_catalog.format('has %s row level security %s, but row level security is not enabled: every role with privileges on the table reads and writes every tenant''s rows',
                                 t.policies, CASE WHEN t.policies = 1 THEN 'policy' ELSE 'policies' END),
               pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;', t.oid::pg_catalog.regclass)
          FROM user_tables t WHERE NOT t.rls AND t.policies > 0
        UNION ALL
        -- Tenant tables, and partitions of protected tables, without any:
        -- high when granted to anyone but the owner, low when nobody else
        -- may read them yet (a later GRANT would expose every tenant).
        SELECT CASE WHEN t.exposed THEN 'high' ELSE 'low' END, 'table ' || t.oid::pg_catalog.regclass,
               CASE WHEN t.rls_parent IS NOT NULL
                    THEN pg_catalog.format('is a partition (or child) of %s, which has row level security, but has none itself: queried directly it shows every tenant''s rows%s',
                                           t.rls_parent::pg_catalog.regclass,
                                           CASE WHEN t.exposed THEN '' ELSE ' (no role but its owner has privileges on it yet)' END)
                    ELSE pg_catalog.format('has a tenant column (%I) but no row level security: every role with privileges on the table reads and writes every tenant''s rows%s',
                                           t.tenant_col, CASE WHEN t.exposed THEN '' ELSE ' (no role but its owner has any yet)' END) END,
               CASE WHEN t.rls_parent IS NOT NULL
                    THEN pg_catalog.format('Run jwt_rls.isolate() on %s again (it isolates every partition), or ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY and copy the parent''s policies.',
                                           t.rls_parent::pg_catalog.regclass, t.oid::pg_catalog.regclass)
                    ELSE pg_catalog.format('SELECT jwt_rls.isolate(%L, %L, %L);', t.oid::pg_catalog.regclass, t.tenant_col, tenant_claim) END
          FROM user_tables t WHERE NOT t.rls AND t.policies = 0 AND (t.tenant_col IS NOT NULL OR t.rls_parent IS NOT NULL)
        UNION ALL
        -- Row level security that the owner bypasses.
        SELECT 'medium', 'table ' || t.oid::pg_catalog.regclass,
               pg_catalog.format('row level security is enabled but not forced: its owner %I, and every role that is a member of it, reads and writes every row',
                                 pg_catalog.pg_get_userbyid(t.relowner)),
               pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY;', t.oid::pg_catalog.regclass)
          FROM user_tables t WHERE t.rls AND NOT t.forced AND (t.policies > 0 OR t.tenant_col IS NOT NULL)
        UNION ALL
        -- Policies that trust settings any SQL can SET.
        SELECT DISTINCT 'critical', pg_catalog.format('policy %I on table %s', s.polname, s.polrelid::pg_catalog.regclass),
               CASE WHEN s.setting IS NULL
                    THEN pg_catalog.format('%s %s() of a setting named at run time: settings can be changed by any SQL in the session (SET, set_config)',
                                           coalesce('calls ' || s.via || ', which calls', 'calls'), pg_catalog.lower(s.fn))
                    WHEN s.jwt_rls_setting
                    THEN pg_catalog.format('%s setting %L, but jwt_rls is not preloaded: until a session first calls a jwt_rls function, jwt_rls.* settings are placeholders any role can SET',
                                           coalesce('calls ' || s.via || ', which reads', 'reads'), s.setting)
                    ELSE pg_catalog.format('%s setting %L, which any SQL in the session can change (SET, set_config): a tenant can claim to be another',
                                           coalesce('calls ' || s.via || ', which reads', 'reads'), s.setting) END,
               CASE WHEN s.jwt_rls_setting AND s.setting IS NOT NULL
                    THEN pg_catalog.format('ALTER DATABASE %I SET session_preload_libraries = ''jwt_rls''; or read (SELECT jwt_rls.jwt_claim(''...'')) instead.', pg_catalog.current_database())
                    ELSE pg_catalog.format('Read the verified claims instead: (SELECT jwt_rls.jwt_claim(''...'')); e.g. drop the policy and SELECT jwt_rls.isolate(%L, ''tenant_id'', ''tenant_id'');',
                                           s.polrelid::pg_catalog.regclass) END
          FROM (SELECT ps.*, ps.setting IS NOT NULL
                             AND pg_catalog.lower(ps.fn) = 'current_setting'
                             AND ((pg_catalog.lower(ps.setting) LIKE 'jwt\_rls.%'
                                   AND pg_catalog.lower(ps.setting) <> 'jwt_rls.token')
                                  OR (compat AND pg_catalog.lower(ps.setting) LIKE 'request.%'
                                      AND pg_catalog.lower(ps.setting) NOT IN
                                          ('request.method', 'request.path', 'request.headers', 'request.cookies')))
                             AS jwt_rls_setting
                  FROM policy_settings ps) s
         WHERE NOT s.jwt_rls_setting OR NOT preloaded
        UNION ALL
        -- A "NULL claim means everything" policy.
        SELECT 'high', pg_catalog.format('policy %I on table %s', pe.polname, pe.polrelid::pg_catalog.regclass),
               'tests a jwt_rls claim for IS NULL: without a token (or with the claim missing) it lets rows through, failing open',
               'Compare the column with the claim only: col = (SELECT jwt_rls.jwt_claim(''...'')); a missing claim then matches no row.'
          FROM policy_exprs pe
         WHERE pe.expr ~ 'jwt_rls\.(jwt_claims?|tenant_id|user_id)\((''([^'']|'''')*''(::text)?)?\)( AS \w+\))? IS NULL'
        UNION ALL
        -- A claim with a fallback: coalesce(claim, column) is the column
        -- itself when there is no token, so every row matches.
        SELECT 'high', pg_catalog.format('policy %I on table %s', pe.polname, pe.polrelid::pg_catalog.regclass),
               'falls back to another value when the jwt_rls claim is missing (COALESCE): without a token it can let every row through, failing open',
               'Compare the column with the claim only: col = (SELECT jwt_rls.jwt_claim(''...'')); a missing claim then matches no row.'
          FROM policy_exprs pe
         WHERE pe.expr ~* 'COALESCE\([( ]*(SELECT )?\(*jwt_rls\.(jwt_claims?|tenant_id|user_id)\('
        UNION ALL
        -- A permissive policy that lets every row through on a tenant table.
        SELECT 'high', pg_catalog.format('policy %I on table %s', pe.polname, pe.polrelid::pg_catalog.regclass),
               pg_catalog.format('is permissive with USING (true) on a table with a tenant column (%I): every role it applies to reads every tenant''s rows', pe.tenant_col),
               pg_catalog.format('DROP POLICY %I ON %s; then SELECT jwt_rls.isolate(%L, %L, %L);', pe.polname, pe.polrelid::pg_catalog.regclass,
                                 pe.polrelid::pg_catalog.regclass, pe.tenant_col, tenant_claim)
          FROM policy_exprs pe
         WHERE pe.polpermissive AND pe.tenant_col IS NOT NULL AND pe.qual = 'true'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = pe.polrelid AND p.polname LIKE 'jwt\_rls\_isolate\_%')
        UNION ALL
        -- Someone's permissive policy OR'ed with isolate()'s.
        SELECT 'high', pg_catalog.format('policy %I on table %s', pe.polname, pe.polrelid::pg_catalog.regclass),
               'is a permissive policy on a table isolated by jwt_rls.isolate(): permissive policies are OR''ed, so it widens the tenant isolation',
               pg_catalog.format('DROP POLICY %I ON %s; or recreate it AS RESTRICTIVE.', pe.polname, pe.polrelid::pg_catalog.regclass)
          FROM policy_exprs pe
         WHERE pe.polpermissive AND pe.polname NOT LIKE 'jwt\_rls\_isolate\_%'
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = pe.polrelid AND p.polname LIKE 'jwt\_rls\_isolate\_%')
        UNION ALL
        -- Application roles that bypass row level security.
        SELECT 'critical', pg_catalog.format('role %I', a.rolname),
               pg_catalog.format('is an application role (it logs in and has privileges on row-level-secured tables) and %s: row level security does not apply to it',
                                 CASE WHEN a.rolsuper THEN 'is a superuser' ELSE 'has BYPASSRLS' END),
               pg_catalog.format('ALTER ROLE %I %s;', a.rolname, CASE WHEN a.rolsuper THEN 'NOSUPERUSER' ELSE 'NOBYPASSRLS' END)
          FROM app_roles a WHERE a.rolsuper OR a.rolbypassrls
        UNION ALL
        SELECT 'critical', pg_catalog.format('role %I', a.rolname),
               pg_catalog.format('is an application role and a member of %I, which %s: SET ROLE %I escapes row level security',
                                 r.rolname, CASE WHEN r.rolsuper THEN 'is a superuser' ELSE 'has BYPASSRLS' END, r.rolname),
               pg_catalog.format('REVOKE %I FROM %I;', r.rolname, a.rolname)
          FROM app_roles a JOIN membership m ON m.member = a.oid AND m.roleid <> a.oid
          JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
         WHERE (r.rolsuper OR r.rolbypassrls) AND NOT a.rolsuper
        UNION ALL
        -- Application roles that own (or are members of the owner of) protected tables.
        SELECT CASE WHEN t.forced THEN 'high' ELSE 'critical' END, pg_catalog.format('role %I', a.rolname),
               pg_catalog.format('is an application role and %s table %s: %s',
                                 CASE WHEN t.relowner = a.oid THEN 'owns' ELSE pg_catalog.format('is a member of %I, the owner of', pg_catalog.pg_get_userbyid(t.relowner)) END,
                                 t.oid::pg_catalog.regclass,
                                 CASE WHEN t.forced THEN 'it can disable row level security or drop the policies (ALTER TABLE, DROP POLICY)'
                                      ELSE 'owners bypass row level security that is not forced, and can disable it or drop the policies' END),
               pg_catalog.format('ALTER TABLE %s OWNER TO <a role the application does not log in as>;', t.oid::pg_catalog.regclass)
          FROM app_roles a JOIN membership m ON m.member = a.oid
          JOIN user_tables t ON t.relowner = m.roleid
         WHERE NOT a.rolsuper AND (t.rls OR t.policies > 0 OR t.tenant_col IS NOT NULL)
        UNION ALL
        -- Views and materialized views over row-level-secured tables.
        SELECT DISTINCT
               CASE WHEN v.relkind = 'm' THEN 'high'
                    WHEN o.rolsuper OR o.rolbypassrls
                      OR (NOT t.forced AND EXISTS (SELECT 1 FROM membership m WHERE m.member = v.relowner AND m.roleid = t.relowner))
                    THEN 'critical' ELSE 'medium' END,
               CASE WHEN v.relkind = 'm' THEN 'materialized view ' ELSE 'view ' END || v.oid::pg_catalog.regclass,
               CASE WHEN v.relkind = 'm'
                    THEN pg_catalog.format('stores rows of %s, which has row level security, and has none itself: whoever may read it reads every tenant''s rows it holds', t.oid::pg_catalog.regclass)
                    ELSE pg_catalog.format('reads %s, which has row level security, with the rights of its owner %I (no security_invoker)%s',
                                           t.oid::pg_catalog.regclass, o.rolname,
                                           CASE WHEN o.rolsuper THEN ': a superuser, so the policies do not apply and every tenant''s rows show'
                                                WHEN o.rolbypassrls THEN ': it has BYPASSRLS, so the policies do not apply and every tenant''s rows show'
                                                WHEN NOT t.forced AND EXISTS (SELECT 1 FROM membership m WHERE m.member = v.relowner AND m.roleid = t.relowner)
                                                     THEN ': the table''s owner, and row level security is not forced, so every tenant''s rows show'
                                                ELSE ': policies for particular roles are applied for the owner, not the caller' END) END,
               CASE WHEN v.relkind = 'm'
                    THEN pg_catalog.format('DROP MATERIALIZED VIEW %s; and use a view WITH (security_invoker = true) over the table instead.', v.oid::pg_catalog.regclass)
                    ELSE pg_catalog.format('ALTER VIEW %s SET (security_invoker = true);', v.oid::pg_catalog.regclass) END
          FROM pg_catalog.pg_class v
          JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
          JOIN pg_catalog.pg_roles o ON o.oid = v.relowner
          JOIN pg_catalog.pg_rewrite rw ON rw.ev_class = v.oid
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = rw.oid
                                     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid <> v.oid
          JOIN user_tables t ON t.oid = d.refobjid AND t.rls
         WHERE v.relkind IN ('v', 'm')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'jwt_rls')
           AND NOT (v.relkind = 'v' AND EXISTS (
                   SELECT 1 FROM pg_catalog.unnest(v.reloptions) opt
                    WHERE pg_catalog.lower(opt) IN ('security_invoker=true', 'security_invoker=on', 'security_invoker=1',
                                                    'security_invoker=yes', 'security_invoker')))
        UNION ALL
        -- SECURITY DEFINER functions whose search_path the caller chooses.
        SELECT CASE WHEN cfg.path IS NULL THEN 'high' ELSE 'medium' END,
               pg_catalog.format('function %s.%I(%s)', n.nspname, f.proname, pg_catalog.pg_get_function_identity_arguments(f.oid)),
               CASE WHEN cfg.path IS NULL
                    THEN 'is SECURITY DEFINER without a pinned search_path: a caller can put objects of its own earlier in search_path (or in pg_temp) and run them with the owner''s rights'
                    ELSE pg_catalog.format('is SECURITY DEFINER with search_path %s, which does not end with pg_temp: the caller''s temporary schema is searched first for tables and views', cfg.path) END,
               pg_catalog.format('ALTER FUNCTION %s.%I(%s) SET search_path = pg_catalog, pg_temp;  -- and schema-qualify what it uses',
                                 n.nspname, f.proname, pg_catalog.pg_get_function_identity_arguments(f.oid))
          FROM pg_catalog.pg_proc f
          JOIN pg_catalog.pg_namespace n ON n.oid = f.pronamespace
          LEFT JOIN LATERAL (SELECT pg_catalog.substr(c, 13) AS path FROM pg_catalog.unnest(f.proconfig) c
                              WHERE c LIKE 'search\_path=%' LIMIT 1) cfg ON true
         WHERE f.prosecdef
           AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'jwt_rls')
           AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = f.oid
                              AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e')
           AND (cfg.path IS NULL OR pg_catalog.btrim(pg_catalog.regexp_replace(cfg.path, '.*,', '')) NOT IN ('pg_temp', '"pg_temp"'))
        UNION ALL
        -- jwt_rls's own tables: secrets, refresh tokens, revocations.
        SELECT CASE WHEN c.relname IN ('key_list') OR (g.privs = 'SELECT' AND c.relname IN ('sessions', 'revoked_tokens', 'revoked_subjects'))
                    THEN 'high' ELSE 'critical' END,
               CASE c.relkind WHEN 'v' THEN 'view ' ELSE 'table ' END || c.oid::pg_catalog.regclass,
               pg_catalog.format('%s %s on it%s', CASE WHEN g.grantee = 0 THEN 'PUBLIC has' ELSE pg_catalog.format('application role %I has', g.rolname) END,
                                 g.privs,
                                 CASE c.relname WHEN 'keys' THEN ': it holds HMAC secrets, which mint tokens'
                                                WHEN 'signing_keys' THEN ': it holds private signing keys, which mint tokens'
                                                WHEN 'decryption_keys' THEN ': it holds the private keys that decrypt encrypted tokens'
                                                WHEN 'refresh_tokens' THEN ': it holds the refresh tokens'' hashes'
                                                WHEN 'sessions' THEN ': sessions and their revocation state'
                                                WHEN 'revoked_tokens' THEN ': writing it can undo a revocation'
                                                WHEN 'revoked_subjects' THEN ': writing it can undo a revocation'
                                                ELSE '' END),
               pg_catalog.format('REVOKE ALL ON %s FROM %s;', c.oid::pg_catalog.regclass,
                                 CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(g.rolname) END)
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'jwt_rls'
          CROSS JOIN LATERAL (
                SELECT 0::oid AS grantee, NULL::name AS rolname,
                       pg_catalog.string_agg(DISTINCT x.privilege_type, ', ') AS privs
                  FROM pg_catalog.aclexplode(c.relacl) x WHERE x.grantee = 0
                UNION ALL
                SELECT a.oid, a.rolname,
                       pg_catalog.array_to_string(ARRAY(
                           SELECT p FROM pg_catalog.unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
                            WHERE pg_catalog.has_table_privilege(a.oid, c.oid, p)
                               OR (p IN ('SELECT', 'INSERT', 'UPDATE') AND pg_catalog.has_any_column_privilege(a.oid, c.oid, p))), ', ')
                  FROM app_roles a
                 WHERE NOT a.rolsuper
                   AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(c.relacl) x WHERE x.grantee = 0)
          ) g
         WHERE c.relkind IN ('r', 'p', 'v', 'm') AND g.privs IS NOT NULL AND g.privs <> ''
        UNION ALL
        -- jwt_rls's admin functions: minting tokens, changing keys, sessions, revocations.
        SELECT 'critical', pg_catalog.format('function jwt_rls.%I(%s)', f.proname, pg_catalog.pg_get_function_identity_arguments(f.oid)),
               pg_catalog.format('%s EXECUTE on it: %s', CASE WHEN g.grantee = 0 THEN 'PUBLIC has' ELSE pg_catalog.format('application role %I has', g.rolname) END,
                                 CASE WHEN f.proname IN ('sign', 'start_session', 'rotate_refresh_token', 'refresh') THEN 'it issues tokens with any claims'
                                      WHEN f.proname LIKE '%key%' OR f.proname = 'import_jwks' THEN 'it changes which keys are trusted'
                                      WHEN f.proname = 'audit' THEN 'it reveals the weaknesses of the schema'
                                      ELSE 'it is an administrator''s function' END),
               pg_catalog.format('REVOKE EXECUTE ON %s jwt_rls.%I(%s) FROM %s;', CASE f.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                                 f.proname, pg_catalog.pg_get_function_identity_arguments(f.oid),
                                 CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(g.rolname) END)
          FROM pg_catalog.pg_proc f
          JOIN pg_catalog.pg_namespace n ON n.oid = f.pronamespace AND n.nspname = 'jwt_rls'
          CROSS JOIN LATERAL (
                SELECT 0::oid AS grantee, NULL::name AS rolname
                 WHERE f.proacl IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(f.proacl) x WHERE x.grantee = 0)
                UNION ALL
                SELECT a.oid, a.rolname FROM app_roles a
                 WHERE NOT a.rolsuper AND pg_catalog.has_function_privilege(a.oid, f.oid, 'EXECUTE')
                   AND NOT (f.proacl IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(f.proacl) x WHERE x.grantee = 0))
          ) g
         WHERE f.proname IN ('keys_changed', 'table_changed', 'add_hmac_key', 'add_pem_key', 'import_jwks', 'disable_key',
                             'enable_key', 'remove_key', 'revoke_jti', 'revoke_subject', 'revoke_token',
                             'generate_signing_key', 'import_signing_key', 'import_signing_secret', 'sign', 'random_token',
                             'start_session', 'rotate_refresh_token', 'refresh', 'end_session', 'end_sessions', 'audit',
                             'add_decryption_key', 'add_decryption_secret', 'disable_decryption_key',
                             'enable_decryption_key', 'remove_decryption_key', 'create_auth_functions',
                             'drop_auth_functions')
        UNION ALL
        -- Validation policy: tokens minted for anyone else.
        SELECT 'medium', pg_catalog.format('database %I', pg_catalog.current_database()),
               pg_catalog.format('jwt_rls.%s is not set: %s', s.name,
                                 CASE s.name WHEN 'issuer' THEN 'tokens of any issuer whose key is in jwt_rls.keys are accepted'
                                             ELSE 'with jwt_rls.accept_any_audience on, tokens your issuer mints for other services (other audiences) are accepted here too' END),
               pg_catalog.format('ALTER DATABASE %I SET jwt_rls.%s = ''...'';', pg_catalog.current_database(), s.name)
          FROM pg_catalog.unnest(ARRAY['issuer', 'audience']) s(name)
         WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'jwt_rls')
           AND coalesce(pg_catalog.current_setting('jwt_rls.' || s.name, true), '') = ''
           -- Since 0.2.0 an empty audience refuses tokens that carry aud,
           -- unless the administrator opted out.
           AND (s.name = 'issuer' OR pg_catalog.current_setting('jwt_rls.accept_any_audience', true) = 'on')
        UNION ALL
        -- Citus clusters (read below; none where Citus is not installed).
        SELECT c.severity, c.object, c.finding, c.fix
          FROM pg_catalog.jsonb_to_recordset(citus_findings)
               AS c(severity pg_catalog.text, object pg_catalog.text, finding pg_catalog.text, fix pg_catalog.text)
    )
    SELECT f.severity, f.object, f.finding, f.fix
      FROM findings f
     ORDER BY pg_catalog.array_position(ARRAY['critical', 'high', 'medium', 'low'], f.severity), f.object, f.finding;
END
$audit$;

-- Citus: the extension's tables shared with every node (src/citus/sharing.rs).
CREATE FUNCTION jwt_rls.share_with_citus()
    RETURNS SETOF regclass
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $share$
DECLARE
    tables regclass[] := ARRAY['jwt_rls.jwks_sources', 'jwt_rls.keys', 'jwt_rls.signing_keys',
                               'jwt_rls.decryption_keys', 'jwt_rls.revoked_tokens',
                               'jwt_rls.revoked_subjects', 'jwt_rls.sessions',
                               'jwt_rls.refresh_tokens']::regclass[];
    t regclass;
    k int;
    rels regclass[];
    names name[];
    defs text[];
    unready text;
    holding text;
    counted text;
    listed text;
    triggers text := pg_catalog.current_setting('citus.enable_unsafe_triggers', true);
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'citus is not installed in this database'
            USING ERRCODE = '0A000',
                  HINT = 'Run CREATE EXTENSION citus and add the workers first; share_with_citus() is for Citus clusters.';
    END IF;
    IF NOT pg_catalog.citus_is_coordinator() THEN
        RAISE EXCEPTION 'share_with_citus() runs on the coordinator'
            USING ERRCODE = '0A000',
                  HINT = 'Connect to the coordinator and call it there.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.unnest(tables) u(t)
                    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                                       WHERE p.logicalrelid OPERATOR(pg_catalog.=) u.t)) THEN
        RETURN;
    END IF;
    -- Every node must get a copy and know it has one: the coordinator in
    -- Citus's metadata (reference tables are placed only on nodes there),
    -- every primary active with its metadata synced (a node without it
    -- would read its own, stale tables).
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_node n WHERE n.groupid = 0) THEN
        RAISE EXCEPTION 'the coordinator is not in Citus''s node metadata'
            USING ERRCODE = '55000',
                  DETAIL = 'Reference tables are placed only on nodes in pg_dist_node; without a copy here the coordinator could not read the keys.',
                  HINT = 'Run SELECT citus_set_coordinator_host(''<this host>'', <port>); then call share_with_citus() again.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s', n.nodename, n.nodeport), ', ' ORDER BY n.nodeid) INTO unready
      FROM pg_catalog.pg_dist_node n
     WHERE n.noderole = 'primary' AND n.groupid <> 0 AND NOT (n.isactive AND n.hasmetadata AND n.metadatasynced);
    IF unready IS NOT NULL THEN
        RAISE EXCEPTION 'not every worker is active with Citus''s metadata synced'
            USING ERRCODE = '55000', DETAIL = pg_catalog.format('Not ready: %s.', unready),
                  HINT = 'Activate the nodes and let Citus sync its metadata to them (SELECT start_metadata_sync_to_node(...)), then call share_with_citus() again.';
    END IF;
    -- Rows a worker holds in its own tables (added there before sharing)
    -- would be neither read nor removed once the copies are read: a
    -- revocation recorded only there would be lifted, a private key left
    -- behind. Refused until they are moved to the coordinator.
    SELECT pg_catalog.string_agg(pg_catalog.format('(SELECT pg_catalog.count(*) FROM %s)', u.t), ' + '),
           pg_catalog.string_agg(u.t::text, ', ')
      INTO counted, listed
      FROM pg_catalog.unnest(tables) u(t);
    SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s (%s)', r.nodename, r.nodeport,
                                 CASE WHEN r.success THEN r.result || ' rows' ELSE 'unreachable' END), ', ') INTO holding
      FROM pg_catalog.run_command_on_workers('SELECT ' || counted) r
     WHERE NOT r.success OR r.result <> '0';
    IF holding IS NOT NULL THEN
        RAISE EXCEPTION 'workers hold rows in their own jwt_rls tables'
            USING ERRCODE = '55000', DETAIL = pg_catalog.format('Workers: %s.', holding),
                  HINT = pg_catalog.format('Add what they hold (keys, revocations) on the coordinator, empty the tables on each worker (TRUNCATE %s CASCADE;), then call share_with_citus() again.', listed);
    END IF;

    SELECT coalesce(pg_catalog.array_agg(c.conrelid::regclass ORDER BY c.conname), '{}'),
           coalesce(pg_catalog.array_agg(c.conname ORDER BY c.conname), '{}'),
           coalesce(pg_catalog.array_agg(pg_catalog.pg_get_constraintdef(c.oid) ORDER BY c.conname), '{}')
      INTO rels, names, defs
      FROM pg_catalog.pg_constraint c
     WHERE c.contype = 'f' AND c.conrelid OPERATOR(pg_catalog.=) ANY (tables);
    FOR k IN 1 .. pg_catalog.cardinality(rels) LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', rels[k], names[k]);
    END LOOP;

    -- Citus refuses tables with triggers unless told; ours only queue a
    -- relcache invalidation of their own relation. Restored below.
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    FOREACH t IN ARRAY tables LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                        WHERE p.logicalrelid OPERATOR(pg_catalog.=) t) THEN
            PERFORM pg_catalog.create_reference_table(t);
            -- The rows now live in the placements; the copy Citus leaves
            -- in the table itself (key material among them) goes.
            PERFORM pg_catalog.truncate_local_data_after_distributing_table(t);
            RETURN NEXT t;
        END IF;
    END LOOP;

    -- The workers' own tables, made by CREATE EXTENSION there, still have
    -- the keys: dropped there too now that Citus sends the DDL to every
    -- node, then made again on every node and placement.
    FOR k IN 1 .. pg_catalog.cardinality(rels) LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', rels[k], names[k]);
        EXECUTE pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s', rels[k], names[k], defs[k]);
    END LOOP;
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', coalesce(triggers, 'off'), true);
END
$share$;
COMMENT ON FUNCTION jwt_rls.share_with_citus() IS
    'On a Citus coordinator: makes the key, revocation and session tables reference tables, one copy on every node; returns the tables it shared';
REVOKE EXECUTE ON FUNCTION jwt_rls.share_with_citus() FROM PUBLIC;

-- A fetched key verifies only its source's issuer's tokens, so a source
-- whose issuer changes changes what its keys accept: every backend reloads
-- its keys at commit, as for a change to the key table. The worker's own
-- status writes (last_attempt, failures, ...) do not reload anything.
CREATE TRIGGER jwks_sources_changed
    AFTER UPDATE OF id, issuer OR DELETE OR TRUNCATE ON jwt_rls.jwks_sources
    FOR EACH STATEMENT EXECUTE FUNCTION jwt_rls.table_changed();
