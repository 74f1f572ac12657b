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
