//! The administrator's settings (GUCs): the validation policy, the cache
//! size and the claim names of the typed helpers.
//!
//! They are superuser-only (PGC_SUSET) and can be set per database with
//! ALTER DATABASE ... SET. Every assignment bumps a generation counter, so
//! cached verifications never outlive a policy change.
//!
//! The one setting users set, `jwt_rls.token`, lives with the state it feeds
//! (`state.rs`); this module depends on nothing else in the crate.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};

use jwt_rls_core::Policy;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;

static ISSUER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static AUDIENCE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static ACCEPT_ANY_AUDIENCE: GucSetting<bool> = GucSetting::<bool>::new(false);
static REQUIRED_CLAIMS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static LEEWAY: GucSetting<i32> = GucSetting::<i32>::new(10);
static MAX_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(0);
static MAX_TOKEN_BYTES: GucSetting<i32> = GucSetting::<i32>::new(16 * 1024);
static CACHE_ENTRIES: GucSetting<i32> = GucSetting::<i32>::new(1000);
static DPOP_MAX_AGE: GucSetting<i32> = GucSetting::<i32>::new(60);
static DPOP_REQUIRE_PROOF: GucSetting<bool> = GucSetting::<bool>::new(true);
static DPOP_BASE_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static REQUIRE_AT_JWT: GucSetting<bool> = GucSetting::<bool>::new(false);
static SIGN_AT_JWT: GucSetting<bool> = GucSetting::<bool>::new(false);
static SIGN_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(900);
static SESSION_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(30 * 86400);
static SESSION_IDLE_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(7 * 86400);
static REFRESH_REUSE_GRACE: GucSetting<i32> = GucSetting::<i32>::new(0);
static ALLOW_SESSION_BINDING: GucSetting<bool> = GucSetting::<bool>::new(true);
static USER_ID_CLAIM: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"sub"));
static ROLE_CLAIM: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static TENANT_ID_CLAIM: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"tenant_id"));

thread_local! {
    /// The first jwt_rls setting found written, before the library loaded,
    /// by a role without the right to write it (a connection option, or
    /// SET before the first jwt_rls call). Postgres refuses that value when
    /// the setting is defined, but the placeholder had already replaced the
    /// configured value (postgresql.conf, ALTER DATABASE ... SET), so the
    /// setting falls back to its built-in default: jwt_rls.issuer to
    /// "any issuer". Such a session verifies nothing (`refuse_if_tampered`).
    static TAMPERED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The GUC records Postgres holds now (placeholders included).
fn guc_records() -> &'static [*mut pg_sys::config_generic] {
    // SAFETY: reads the backend's GUC table, which Postgres only changes
    // between calls into it; the slice is used before anything else runs.
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        let (vars, n) = (pg_sys::get_guc_variables(), pg_sys::GetNumConfigOptions());
        #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
        let (vars, n) = {
            let mut n: c_int = 0;
            (pg_sys::get_guc_variables(&mut n), n)
        };
        if vars.is_null() || n <= 0 {
            return &[];
        }
        std::slice::from_raw_parts(vars, n as usize)
    }
}

/// The superuser-only settings jwt_rls defines (not `jwt_rls.token`, which
/// anyone may set and which is verified when it is defined).
const GUARDED: [&str; 20] = [
    "jwt_rls.issuer",
    "jwt_rls.audience",
    "jwt_rls.accept_any_audience",
    "jwt_rls.required_claims",
    "jwt_rls.leeway",
    "jwt_rls.max_lifetime",
    "jwt_rls.max_token_bytes",
    "jwt_rls.cache_entries",
    "jwt_rls.dpop_max_age",
    "jwt_rls.dpop_require_proof",
    "jwt_rls.require_at_jwt",
    "jwt_rls.sign_lifetime",
    "jwt_rls.session_lifetime",
    "jwt_rls.session_idle_timeout",
    "jwt_rls.user_id_claim",
    "jwt_rls.role_claim",
    "jwt_rls.tenant_id_claim",
    "jwt_rls.counters",
    "jwt_rls.claims",
    "jwt_rls.allow_session_binding",
];

/// Notes placeholders of jwt_rls's superuser-only settings whose *reset*
/// value an unprivileged context wrote: a connection option (`-c`,
/// PGC_BACKEND) of a role that is not superuser and holds no SET grant on
/// the parameter. That value replaced the configured one as the
/// session's default, and Postgres refuses it when the setting is defined,
/// so the setting would fall back to its built-in default. (A plain SET
/// before the library loads only changes the current value: the reset
/// value, from postgresql.conf or ALTER DATABASE, survives and is applied;
/// it is not flagged, so a pooled connection cannot be poisoned for the
/// next client by one client's SET.) Called first in _PG_init, before any
/// setting is defined and replaces them.
pub fn note_untrusted_placeholders() {
    for &record in guc_records() {
        // SAFETY: each pointer of the GUC table is a valid record with a
        // NUL-terminated name.
        let (name, flags, context) = unsafe {
            (
                CStr::from_ptr((*record).name),
                (*record).flags,
                (*record).reset_scontext,
            )
        };
        // Who wrote the reset value: recorded from PostgreSQL 15 on, for
        // GRANT SET ON PARAMETER. Before 15 there is no such grant, and the
        // context alone says whether a superuser wrote it (PGC_SUSET or
        // PGC_SU_BACKEND, never flagged below).
        // SAFETY: as above.
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        let role = unsafe { (*record).reset_srole };
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        let role = pg_sys::InvalidOid;
        let placeholder = flags & pg_sys::GUC_CUSTOM_PLACEHOLDER as c_int != 0;
        let unprivileged = context == pg_sys::GucContext::PGC_USERSET
            || context == pg_sys::GucContext::PGC_BACKEND;
        let text = name.to_string_lossy().to_lowercase();
        if placeholder && unprivileged && GUARDED.contains(&text.as_str()) && !granted(name, role) {
            TAMPERED.with_borrow_mut(|t| {
                t.get_or_insert(text);
            });
        }
    }
}

/// Whether `role` may set parameter `name` (GRANT SET ON PARAMETER, from
/// PostgreSQL 15 on).
fn granted(name: &CStr, role: pg_sys::Oid) -> bool {
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    {
        // SAFETY: a NUL-terminated name and a role OID; the catalogs are
        // read only inside a transaction (outside one, nothing is granted).
        unsafe {
            pg_sys::IsTransactionState()
                && (pg_sys::superuser_arg(role)
                    || pg_sys::pg_parameter_aclcheck(
                        name.as_ptr(),
                        role,
                        pg_sys::ACL_SET as pg_sys::AclMode,
                    ) == pg_sys::AclResult::ACLCHECK_OK)
        }
    }
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    {
        let _ = (name, role);
        false
    }
}

/// Refuses to verify anything in a session whose jwt_rls settings were
/// written by a role without the right to (see `TAMPERED`): its policy is
/// not the administrator's. Only that session is affected.
pub fn refuse_if_tampered() {
    if let Some(name) = TAMPERED.with_borrow(|t| t.clone()) {
        crate::pg::errors::settings_tampered(&name);
    }
}

/// Bumped whenever a validation policy setting changes.
pub static POLICY_GENERATION: AtomicU64 = AtomicU64::new(0);

fn string_setting(setting: &GucSetting<Option<CString>>) -> String {
    setting
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list(setting: &GucSetting<Option<CString>>) -> Vec<String> {
    string_setting(setting)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The validation policy from the current settings.
pub fn policy() -> Policy {
    Policy {
        issuers: list(&ISSUER),
        audiences: list(&AUDIENCE),
        any_audience: ACCEPT_ANY_AUDIENCE.get(),
        leeway: i64::from(LEEWAY.get()),
        max_lifetime: i64::from(MAX_LIFETIME.get()),
        required: list(&REQUIRED_CLAIMS),
        max_bytes: MAX_TOKEN_BYTES.get() as usize,
        require_at_jwt: REQUIRE_AT_JWT.get(),
    }
}

/// Entries of the per-backend verification cache (0 turns it off).
pub fn cache_entries() -> usize {
    CACHE_ENTRIES.get().max(0) as usize
}

/// Seconds a DPoP proof's `iat` may lie in the past.
pub fn dpop_max_age() -> i64 {
    i64::from(DPOP_MAX_AGE.get())
}

/// Whether a token naming a DPoP key (`cnf.jkt`) is refused when bound
/// without a proof by that key.
pub fn dpop_require_proof() -> bool {
    DPOP_REQUIRE_PROOF.get()
}

/// The header `typ` of the tokens jwt_rls.sign() issues.
pub fn sign_typ() -> &'static str {
    if SIGN_AT_JWT.get() {
        "at+jwt"
    } else {
        "JWT"
    }
}

/// Seconds from `iat` to `exp` of a token jwt_rls.sign() issues.
pub fn sign_lifetime() -> i64 {
    i64::from(SIGN_LIFETIME.get())
}

/// Whether a token may be bound for the session with `SET` or
/// `set_config(..., false)` (off behind a transaction pooler).
pub fn allow_session_binding() -> bool {
    ALLOW_SESSION_BINDING.get()
}

/// The GUC record of the setting `name`, once defined.
pub fn guc_record(name: &CStr) -> Option<*mut pg_sys::config_generic> {
    guc_records().iter().copied().find(|&record| {
        // SAFETY: each record of the GUC table has a NUL-terminated name.
        !record.is_null() && unsafe { CStr::from_ptr((*record).name) } == name
    })
}

/// The claim that names the role authenticate() switches to; None: off.
pub fn role_claim() -> Option<String> {
    Some(string_setting(&ROLE_CLAIM)).filter(|c| !c.is_empty())
}

pub fn user_id_claim() -> String {
    string_setting(&USER_ID_CLAIM)
}

pub fn tenant_id_claim() -> String {
    string_setting(&TENANT_ID_CLAIM)
}

// The assign hooks only bump a counter: the settings' values are read when
// the policy is rebuilt (`policy()`), never here.
#[pg_guard]
unsafe extern "C-unwind" fn bump_policy_string(_value: *const c_char, _extra: *mut c_void) {
    POLICY_GENERATION.fetch_add(1, Ordering::Relaxed);
}

#[pg_guard]
unsafe extern "C-unwind" fn bump_policy_bool(_value: bool, _extra: *mut c_void) {
    POLICY_GENERATION.fetch_add(1, Ordering::Relaxed);
}

#[pg_guard]
unsafe extern "C-unwind" fn bump_policy_int(_value: c_int, _extra: *mut c_void) {
    POLICY_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// A superuser-only string setting that is part of the validation policy.
fn policy_string(
    name: &'static CStr,
    description: &'static CStr,
    setting: &'static GucSetting<Option<CString>>,
) {
    // SAFETY: called from _PG_init (the only time GUCs may be defined) with
    // 'static names and storage; the assign hook is a #[pg_guard] function.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            name,
            description,
            c"",
            setting,
            GucContext::Suset,
            GucFlags::default(),
            None,
            Some(bump_policy_string),
            None,
        )
    };
}

/// A superuser-only integer setting that is part of the validation policy.
fn policy_int(
    name: &'static CStr,
    description: &'static CStr,
    setting: &'static GucSetting<i32>,
    (min, max): (i32, i32),
    flags: GucFlags,
) {
    // SAFETY: as in policy_string: called from _PG_init with 'static names
    // and storage, and a #[pg_guard] assign hook.
    unsafe {
        GucRegistry::define_int_guc_with_hooks(
            name,
            description,
            c"",
            setting,
            min,
            max,
            GucContext::Suset,
            flags,
            None,
            Some(bump_policy_int),
            None,
        )
    };
}

/// Defines the administrator's settings. Called before the token setting
/// is defined, so that a token stored before the library loaded is checked
/// against the configured policy, not against defaults.
pub fn init() {
    policy_string(
        c"jwt_rls.issuer",
        c"Comma-separated accepted iss values; empty accepts any issuer.",
        &ISSUER,
    );
    policy_string(
        c"jwt_rls.audience",
        c"Comma-separated accepted aud values; empty refuses tokens that carry aud (see jwt_rls.accept_any_audience).",
        &AUDIENCE,
    );
    // SAFETY: as in policy_string: called from _PG_init with 'static names
    // and storage, and a #[pg_guard] assign hook.
    unsafe {
        GucRegistry::define_bool_guc_with_hooks(
            c"jwt_rls.accept_any_audience",
            c"With jwt_rls.audience empty, accept tokens that carry any aud (off: refuse them).",
            c"",
            &ACCEPT_ANY_AUDIENCE,
            GucContext::Suset,
            GucFlags::default(),
            None,
            Some(bump_policy_bool),
            None,
        )
    };
    policy_string(
        c"jwt_rls.required_claims",
        c"Comma-separated claims every token must carry (exp always is).",
        &REQUIRED_CLAIMS,
    );
    policy_int(
        c"jwt_rls.leeway",
        c"Clock skew allowed on exp, nbf and iat.",
        &LEEWAY,
        (0, 300),
        GucFlags::UNIT_S,
    );
    policy_int(
        c"jwt_rls.max_lifetime",
        c"Longest accepted exp - iat; 0 turns the check off.",
        &MAX_LIFETIME,
        (0, i32::MAX),
        GucFlags::UNIT_S,
    );
    policy_int(
        c"jwt_rls.max_token_bytes",
        c"Largest token accepted, checked before any decoding.",
        &MAX_TOKEN_BYTES,
        (256, 1024 * 1024),
        GucFlags::default(),
    );
    policy_int(
        c"jwt_rls.cache_entries",
        c"Verified tokens each backend keeps (0 turns the cache off).",
        &CACHE_ENTRIES,
        (0, 100_000),
        GucFlags::default(),
    );
    // Server-wide (postgresql.conf, ALTER SYSTEM; reload), not per database
    // or role: the replay table is shared by every backend, and an entry
    // must outlive its proof's window in every one of them.
    GucRegistry::define_int_guc(
        c"jwt_rls.dpop_max_age",
        c"How old a DPoP proof may be: seconds its iat may lie in the past (server-wide).",
        c"",
        &DPOP_MAX_AGE,
        1,
        3600,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    // SAFETY: as in policy_string: called from _PG_init with 'static names
    // and storage, and a #[pg_guard] assign hook.
    unsafe {
        GucRegistry::define_bool_guc_with_hooks(
            c"jwt_rls.dpop_require_proof",
            c"Refuse a token bound to a DPoP key (cnf.jkt) when it comes without a proof by that key.",
            c"",
            &DPOP_REQUIRE_PROOF,
            GucContext::Suset,
            GucFlags::default(),
            None,
            Some(bump_policy_bool),
            None,
        )
    };
    // SAFETY: as in policy_string: called from _PG_init with 'static names
    // and storage, and a #[pg_guard] assign hook.
    unsafe {
        GucRegistry::define_bool_guc_with_hooks(
            c"jwt_rls.require_at_jwt",
            c"Accept only OAuth access tokens: header typ at+jwt (RFC 9068); ID tokens and other JWTs are refused.",
            c"",
            &REQUIRE_AT_JWT,
            GucContext::Suset,
            GucFlags::default(),
            None,
            Some(bump_policy_bool),
            None,
        )
    };
    // Not part of the validation policy: read at commit (binding/token.rs).
    GucRegistry::define_bool_guc(
        c"jwt_rls.allow_session_binding",
        c"Allow binding a token for the session (SET jwt_rls.token, set_config(..., false)).",
        c"Turn off behind a transaction pooler: a session's token would stay on the server connection for its next client. Bindings per transaction, connection options and OAuth logins are not affected.",
        &ALLOW_SESSION_BINDING,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Not part of the validation policy: no generation bump.
    GucRegistry::define_bool_guc(
        c"jwt_rls.sign_at_jwt",
        c"jwt_rls.sign() (and sessions) issue access tokens with header typ at+jwt (RFC 9068) instead of JWT.",
        c"",
        &SIGN_AT_JWT,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Read by postgrest_pre_request() (SQL), to make the URL a proof names.
    GucRegistry::define_string_guc(
        c"jwt_rls.dpop_base_url",
        c"The URL clients call, up to where PostgREST's request.path begins, for DPoP proofs through postgrest_pre_request().",
        c"For example https://api.example.com, or https://project.supabase.co/rest/v1.",
        &DPOP_BASE_URL,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Not part of the validation policy: no generation bump.
    GucRegistry::define_int_guc(
        c"jwt_rls.sign_lifetime",
        c"Seconds from iat to exp of the tokens jwt_rls.sign() issues.",
        c"",
        &SIGN_LIFETIME,
        1,
        10 * 365 * 86400,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    // Read by jwt_rls.start_session() and jwt_rls.refresh().
    for (name, description, setting) in [
        (
            c"jwt_rls.session_lifetime",
            c"Longest a session can be refreshed, from its login.",
            &SESSION_LIFETIME,
        ),
        (
            c"jwt_rls.session_idle_timeout",
            c"A session not refreshed for this long cannot be refreshed.",
            &SESSION_IDLE_TIMEOUT,
        ),
    ] {
        GucRegistry::define_int_guc(
            name,
            description,
            c"",
            setting,
            60,
            i32::MAX,
            GucContext::Suset,
            GucFlags::UNIT_S,
        );
    }
    GucRegistry::define_int_guc(
        c"jwt_rls.refresh_reuse_grace",
        c"Seconds after a refresh during which the used refresh token, presented again, returns the same new pair instead of revoking its session (0: never).",
        c"For two tabs or a retry after a lost response; outside it, reuse revokes the session.",
        &REFRESH_REUSE_GRACE,
        0,
        300,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    for (name, description, setting) in [
        (
            c"jwt_rls.user_id_claim",
            c"The claim jwt_rls.user_id() returns.",
            &USER_ID_CLAIM,
        ),
        (
            c"jwt_rls.role_claim",
            c"The claim naming the role authenticate() switches to (empty: no switching).",
            &ROLE_CLAIM,
        ),
        (
            c"jwt_rls.tenant_id_claim",
            c"The claim jwt_rls.tenant_id() returns.",
            &TENANT_ID_CLAIM,
        ),
    ] {
        GucRegistry::define_string_guc(
            name,
            description,
            c"",
            setting,
            GucContext::Suset,
            GucFlags::default(),
        );
    }
}

/// `SET LOCAL name = value`, as the session would run it: the setting's
/// own checks apply, and a refused value raises its error.
pub fn set_local(name: &CStr, value: &CStr) {
    // SAFETY: both strings are NUL-terminated and outlive the call; with
    // elevel ERROR a refused value raises instead of returning.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            pg_sys::PGERROR as i32,
            false,
        );
    }
}

/// `SET LOCAL name = value` with a superuser's right to set it, for a
/// superuser-only setting that jwt_rls itself writes on the caller's behalf
/// (the caller cannot). The setting's own checks apply.
pub fn set_local_privileged(name: &CStr, value: &CStr) {
    // SAFETY: as in set_local; PGC_SUSET is the context whose right this
    // call exercises, which is what lets it write a superuser-only setting.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            pg_sys::PGERROR as i32,
            false,
        );
    }
}

/// Reserves a setting-name prefix (`jwt_rls`; `request` under
/// `jwt_rls.postgrest_compat`); called once its settings are defined.
/// Postgres matches only the first component of a name (`request` of
/// `request.jwt.claims`).
pub fn reserve_prefix(prefix: &'static CStr) {
    // After this, SET of an unknown name under the prefix is an error
    // instead of a silently created placeholder that could shadow a setting
    // (or, for request.*, be read by a policy as if it were a claim).
    // PostgreSQL 13 and 14 can only warn.
    // SAFETY: called from _PG_init with a 'static NUL-terminated prefix.
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    unsafe {
        pg_sys::MarkGUCPrefixReserved(prefix.as_ptr())
    };
    // SAFETY: as above.
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    unsafe {
        pg_sys::EmitWarningsOnPlaceholders(prefix.as_ptr())
    };
}
