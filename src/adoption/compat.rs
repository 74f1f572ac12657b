//! Compatibility with policies written for PostgREST and Supabase
//! (`jwt_rls.postgrest_compat`): the settings those stacks read the claims
//! from, served from the verified token and impossible to forge; the
//! `auth.uid()` family; and a pre-request function for PostgREST.
//!
//! Under PostgREST, `request.jwt.claims` is an ordinary setting that
//! PostgREST fills in after checking the token: any SQL that runs in the
//! session (an injection, a function with a SET clause, ALTER ROLE ... SET)
//! can write it, and every policy that reads it believes it. Here the
//! setting exists only to be read: its value is computed from the bound
//! token each time it is read (a show hook), so whatever anyone writes to it
//! is ignored. Postgres reserves setting names by their first component
//! only, so all of `request.*` is taken: the names PostgREST writes
//! (`request.method`, `.path`, `.headers`, `.cookies`) are defined as the
//! ordinary settings they are, and any other `request.*` name cannot be set
//! at all, so a policy reading a claim not in the list reads NULL (fails
//! closed) instead of whatever someone wrote.
//!
//! The names belong to other projects, so this is opt-in: a postmaster
//! setting, honoured only with jwt_rls in shared_preload_libraries, so that
//! the settings exist before any client statement and no session can turn
//! them off. Anywhere else a WARNING says it is ignored.

use std::ffi::{c_char, CStr, CString};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::binding::claims;
use crate::binding::token;
use crate::pg::errors;
use crate::settings;

static POSTGREST_COMPAT: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Storage Postgres requires for each defined setting; never read here.
static REQUEST_JWT_CLAIMS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The other settings PostgREST writes in every request. Postgres can only
/// reserve a whole first component (`request`), so these are defined as
/// the ordinary settings they are, for PostgREST in front to keep working.
const PLAIN_REQUEST_SETTINGS: [&CStr; 4] = [
    c"request.method",
    c"request.path",
    c"request.headers",
    c"request.cookies",
];
static PLAIN_STORAGE: [GucSetting<Option<CString>>; PLAIN_REQUEST_SETTINGS.len()] =
    [const { GucSetting::<Option<CString>>::new(None) }; PLAIN_REQUEST_SETTINGS.len()];

/// `request.jwt.claims`: the bound token's payload, or `{}` when none is
/// bound. PostgREST always sets it, so policies cast it without a guard
/// (`current_setting('request.jwt.claims', true)::json ->> 'sub'`), and an
/// empty string would make every such query fail instead of seeing nothing.
#[pg_guard]
unsafe extern "C-unwind" fn show_request_claims() -> *const c_char {
    claims::shown(claims::payload_or("{}"))
}

/// The `request.jwt.claim.<name>` value of a claim: its text as
/// `jwt_claim()` gives it, empty when absent or no token is bound.
fn show_claim(name: &str) -> *const c_char {
    claims::shown(token::current_claim(name).unwrap_or_default())
}

/// One `request.jwt.claim.<name>` setting per listed claim: a show hook
/// cannot be told which setting it shows, so each gets its own function.
macro_rules! claim_settings {
    ($($claim:literal => $hook:ident),* $(,)?) => {
        $(
            #[pg_guard]
            unsafe extern "C-unwind" fn $hook() -> *const c_char {
                show_claim($claim)
            }
        )*
        /// The claims PostgREST-era policies read one by one, with the
        /// setting name and show hook of each.
        const CLAIM_SETTINGS: &[(&CStr, pg_sys::GucShowHook)] = &[$(
            (
                match CStr::from_bytes_with_nul(concat!("request.jwt.claim.", $claim, "\0").as_bytes()) {
                    Ok(name) => name,
                    Err(_) => panic!("a claim name with a NUL byte"),
                },
                Some($hook),
            ),
        )*];
    };
}

claim_settings! {
    "iss" => show_iss,
    "sub" => show_sub,
    "aud" => show_aud,
    "exp" => show_exp,
    "nbf" => show_nbf,
    "iat" => show_iat,
    "jti" => show_jti,
    "role" => show_role,
    "email" => show_email,
    "phone" => show_phone,
    "session_id" => show_session_id,
    "aal" => show_aal,
    "is_anonymous" => show_is_anonymous,
    "tenant_id" => show_tenant_id,
}

static CLAIM_STORAGE: [GucSetting<Option<CString>>; CLAIM_SETTINGS.len()] =
    [const { GucSetting::<Option<CString>>::new(None) }; CLAIM_SETTINGS.len()];

/// Defines `jwt_rls.postgrest_compat` and, when it is on, the
/// `request.*` settings. Called from _PG_init.
///
/// Only in shared_preload_libraries: there the settings are defined in the
/// postmaster, before any client can write a placeholder, and the switch
/// is a postmaster setting nobody can turn off for a session (loaded per
/// session, a client's `-c jwt_rls.postgrest_compat=off` would have left
/// the request.* settings ordinary ones).
pub fn init() {
    // SAFETY: reads a flag Postgres sets while it loads preloaded libraries.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        // SAFETY: a NUL-terminated name; missing_ok, so no error.
        let asked = unsafe {
            let v = pg_sys::GetConfigOption(c"jwt_rls.postgrest_compat".as_ptr(), true, false);
            !v.is_null()
                && matches!(
                    CStr::from_ptr(v).to_bytes(),
                    b"on" | b"true" | b"1" | b"yes"
                )
        };
        if asked {
            errors::warning(
                PgSqlErrorCode::ERRCODE_WARNING,
                "jwt_rls.postgrest_compat is ignored: jwt_rls is not in shared_preload_libraries",
                "request.jwt.claims and request.jwt.claim.* are ordinary settings in this session: anyone can write them.",
                "Add jwt_rls to shared_preload_libraries and restart the server.",
            );
        }
        return;
    }
    GucRegistry::define_bool_guc(
        c"jwt_rls.postgrest_compat",
        c"Serve request.jwt.claims and request.jwt.claim.* from the verified token.",
        c"Needs jwt_rls in shared_preload_libraries; takes effect at server start.",
        &POSTGREST_COMPAT,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    if !POSTGREST_COMPAT.get() {
        return;
    }
    // SAFETY: called from _PG_init with 'static names and storage; the show
    // hooks are #[pg_guard] functions. USERSET on purpose: PostgREST in
    // front still writes request.jwt.claims in every request, and that
    // write must succeed; the value written is never shown.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"request.jwt.claims",
            c"The claims of the bound token, verified by jwt_rls (anything written here is ignored).",
            c"",
            &REQUEST_JWT_CLAIMS,
            GucContext::Userset,
            GucFlags::DISALLOW_IN_FILE | GucFlags::NO_SHOW_ALL,
            None,
            None,
            Some(show_request_claims),
        );
        for ((name, hook), storage) in CLAIM_SETTINGS.iter().zip(&CLAIM_STORAGE) {
            GucRegistry::define_string_guc_with_hooks(
                name,
                c"A claim of the bound token, verified by jwt_rls (anything written here is ignored).",
                c"",
                storage,
                GucContext::Userset,
                GucFlags::DISALLOW_IN_FILE | GucFlags::NO_SHOW_ALL,
                None,
                None,
                *hook,
            );
        }
    }
    for (name, storage) in PLAIN_REQUEST_SETTINGS.iter().zip(&PLAIN_STORAGE) {
        GucRegistry::define_string_guc(
            name,
            c"Set by PostgREST for each request; an ordinary setting.",
            c"",
            storage,
            GucContext::Userset,
            GucFlags::default(),
        );
    }
    // Every other request.* name (request.jwt.claim.org_id, ...) is an
    // error to set from now on, instead of a placeholder a policy could be
    // fooled by; placeholders made before this point are removed.
    settings::reserve_prefix(c"request");
}

extension_sql!(
    r#"
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
"#,
    name = "compat",
    requires = ["authenticate", "jwt_claim"]
);
