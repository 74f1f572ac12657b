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

    SELECT coalesce(pg_catalog.array_agg(c.conrelid::regclass ORDER BY c.conname), '{}'),
           coalesce(pg_catalog.array_agg(c.conname ORDER BY c.conname), '{}'),
           coalesce(pg_catalog.array_agg(pg_catalog.pg_get_constraintdef(c.oid) ORDER BY c.conname), '{}')
      INTO rels, names, defs
      FROM pg_catalog.pg_constraint c
     WHERE c.contype = 'f' AND c.conrelid OPERATOR(pg_catalog.=) ANY (tables);
    FOR k IN 1 .. pg_catalog.cardinality(rels) LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', rels[k], names[k]);
    END LOOP;

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
END
$share$;
COMMENT ON FUNCTION jwt_rls.share_with_citus() IS
    'On a Citus coordinator: makes the key, revocation and session tables reference tables, one copy on every node; returns the tables it shared';
REVOKE EXECUTE ON FUNCTION jwt_rls.share_with_citus() FROM PUBLIC;
