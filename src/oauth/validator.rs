//! The OAuth validator callbacks (PostgreSQL 18's `libpq/oauth.h`):
//! `_PG_oauth_validator_module_init` hands PostgreSQL `validate`, which it
//! calls with the bearer token of a connection that authenticates with the
//! `oauth` method of pg_hba.
//!
//! What the client learns of a refusal is PostgreSQL's own message ("OAuth
//! bearer authentication failed for user ..."); the reason goes to the
//! server log only (LOG_SERVER_ONLY, PostgreSQL's COMMERROR), and names
//! claims and settings, never the token.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use jwt_rls_core::login::{Login, Refusal, Snapshot};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use super::snapshot::{self, Found};
use super::STALE_AFTER;
use crate::pg::clock::wall_seconds;
use crate::shared::counters::{self, Counter};

/// `ValidatorModuleState` of libpq/oauth.h.
#[repr(C)]
pub struct ValidatorModuleState {
    sversion: c_int,
    private_data: *mut c_void,
}

/// `ValidatorModuleResult` of libpq/oauth.h (PostgreSQL 19 appends
/// `error_detail`; the server allocates the struct zeroed, so the two
/// fields written here are the same on both).
#[repr(C)]
pub struct ValidatorModuleResult {
    authorized: bool,
    authn_id: *mut c_char,
}

type ValidateCb = unsafe extern "C-unwind" fn(
    *const ValidatorModuleState,
    *const c_char,
    *const c_char,
    *mut ValidatorModuleResult,
) -> bool;

/// `OAuthValidatorCallbacks` of libpq/oauth.h.
#[repr(C)]
pub struct OAuthValidatorCallbacks {
    magic: u32,
    startup_cb: Option<unsafe extern "C-unwind" fn(*mut ValidatorModuleState)>,
    shutdown_cb: Option<unsafe extern "C-unwind" fn(*mut ValidatorModuleState)>,
    validate_cb: Option<ValidateCb>,
}

/// PG_OAUTH_VALIDATOR_MAGIC.
const MAGIC: u32 = 0x2025_0220;

static CALLBACKS: OAuthValidatorCallbacks = OAuthValidatorCallbacks {
    magic: MAGIC,
    startup_cb: None,
    shutdown_cb: None,
    validate_cb: Some(validate),
};

/// Called by PostgreSQL when it loads the validator library.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn _PG_oauth_validator_module_init() -> *const OAuthValidatorCallbacks {
    &CALLBACKS
}

/// Why a login is refused, for the server log.
enum Why {
    Token(Refusal),
    /// The server cannot decide logins (setup, or a stopped worker).
    Unavailable(String),
    /// The role decision delegated to the validator refuses the role.
    Role(String),
}

fn log_refusal(why: &Why, role: &str) {
    let (message, detail, hint) = match why {
        Why::Token(r) => (
            "jwt_rls refused an OAuth login: the token may not log in",
            format!("{r}."),
            "The client needs a token that verifies under the key store of jwt_rls.oauth_database.",
        ),
        Why::Unavailable(d) => (
            "jwt_rls refused an OAuth login: no current key snapshot",
            d.clone(),
            "Put jwt_rls in shared_preload_libraries and set jwt_rls.oauth_database; see the server log of the \"jwt_rls OAuth key snapshot\" worker.",
        ),
        Why::Role(d) => (
            "jwt_rls refused an OAuth login: the token may not log in as this role",
            d.clone(),
            "With delegate_ident_mapping=1 the token's role claim must name the role connected as, a member of jwt_rls.oauth_role_group that is neither superuser nor BYPASSRLS.",
        ),
    };
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        message.to_string(),
        "jwt_rls::oauth",
    )
    .set_detail(format!(
        "{detail} Role: {}.",
        jwt_rls_core::error::shown(role)
    ))
    .set_hint(hint.to_string())
    .report(PgLogLevel::LOG_SERVER_ONLY);
}

/// The current snapshot, decoded, or why there is none.
fn current_snapshot(now: i64) -> Result<Snapshot, Why> {
    if !snapshot::available() {
        return Err(Why::Unavailable(
            "This server has no key snapshot (jwt_rls is not in shared_preload_libraries, or jwt_rls.oauth_database is empty).".into(),
        ));
    }
    match snapshot::read() {
        Found::Nothing => Err(Why::Unavailable(
            "The key snapshot worker has not written a snapshot yet.".into(),
        )),
        Found::TooLarge => Err(Why::Unavailable(format!(
            "The key store does not fit in jwt_rls.oauth_snapshot_size ({} kB).",
            snapshot::size_kb()
        ))),
        Found::Snapshot(_, checked_at) if now - checked_at > STALE_AFTER => {
            Err(Why::Unavailable(format!(
                "The key snapshot worker last looked at the key store {} seconds ago.",
                now - checked_at
            )))
        }
        Found::Snapshot(bytes, _) => Snapshot::decode(&bytes).ok_or_else(|| {
            Why::Unavailable("The key snapshot was written by another build of jwt_rls.".into())
        }),
    }
}

unsafe extern "C" {
    // src/oauth/hba.c: the fields of the pg_hba line that matched this
    // connection (MyProcPort->hba), read by C against the server's headers.
    fn jwt_rls_hba_oauth_issuer() -> *const c_char;
    fn jwt_rls_hba_oauth_scope() -> *const c_char;
    fn jwt_rls_hba_oauth_delegated() -> bool;
}

/// The pg_hba line's issuer, scope and whether it delegates the role
/// decision (delegate_ident_mapping=1).
fn hba_line() -> Option<(String, String, bool)> {
    let text = |p: *const c_char| {
        // SAFETY: the pg_hba line's strings are NUL-terminated or null, and
        // alive while the connection authenticates.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    // SAFETY: the shim only reads MyProcPort->hba, checking both for null.
    unsafe {
        Some((
            text(jwt_rls_hba_oauth_issuer())?,
            text(jwt_rls_hba_oauth_scope()).unwrap_or_default(),
            jwt_rls_hba_oauth_delegated(),
        ))
    }
}

fn role_oid(name: &str) -> Option<pg_sys::Oid> {
    let c = CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name; with missing_ok the lookup returns
    // InvalidOid instead of raising. pg_authid is a shared catalog, which
    // authentication already reads (passwords).
    let oid = unsafe { pg_sys::get_role_oid(c.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// With the role decision delegated: the token's role claim must name the
/// requested role, a member of `jwt_rls.oauth_role_group` (not the group
/// itself) that is neither superuser nor BYPASSRLS.
fn check_role(
    verified: &jwt_rls_core::Verified,
    role_claim: Option<&str>,
    role: &str,
) -> Result<(), Why> {
    let shown = jwt_rls_core::error::shown;
    let Some(claim) = role_claim else {
        return Err(Why::Role(
            "jwt_rls.role_claim is not set in jwt_rls.oauth_database, so no token names a role."
                .into(),
        ));
    };
    let Some(group) = super::role_group() else {
        return Err(Why::Role(
            "jwt_rls.oauth_role_group is not set: no role may be chosen by a token.".into(),
        ));
    };
    let claimed = verified.claim(claim);
    if claimed.as_deref() != Some(role) {
        return Err(Why::Role(format!(
            "The token's {} claim does not name the role connected as.",
            shown(claim)
        )));
    }
    let (Some(oid), Some(group_oid)) = (role_oid(role), role_oid(&group)) else {
        return Err(Why::Role(format!(
            "The role or jwt_rls.oauth_role_group ({}) does not exist.",
            shown(&group)
        )));
    };
    // SAFETY: existing role OIDs; these read pg_authid and pg_auth_members
    // (shared catalogs) through the syscache.
    let (superuser, bypassrls, member) = unsafe {
        (
            pg_sys::superuser_arg(oid),
            pg_sys::has_bypassrls_privilege(oid),
            pg_sys::is_member_of_role(oid, group_oid),
        )
    };
    if superuser || bypassrls {
        return Err(Why::Role(
            "The role is a superuser or has BYPASSRLS: row-level security would not apply.".into(),
        ));
    }
    if oid == group_oid || !member {
        return Err(Why::Role(format!(
            "The role is not a member of jwt_rls.oauth_role_group ({}).",
            shown(&group)
        )));
    }
    Ok(())
}

/// Binds the token as the session's, above the client's own connection
/// options (PGC_S_OVERRIDE): RESET and DISCARD ALL return to it, as to a
/// token given with `options=-c jwt_rls.token=...`. The check hook defers
/// its verification to the first read, in the database connected to.
fn bind_for_session(token: &CStr) {
    // SAFETY: both strings are NUL-terminated; jwt_rls.token is defined
    // (this library is loaded) and may be set by anyone. An error here
    // fails the login.
    unsafe {
        pg_sys::SetConfigOption(
            c"jwt_rls.token".as_ptr(),
            token.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn validate(
    _state: *const ValidatorModuleState,
    token: *const c_char,
    role: *const c_char,
    result: *mut ValidatorModuleResult,
) -> bool {
    pg_sys::check_for_interrupts!();
    // SAFETY: PostgreSQL passes NUL-terminated strings alive for the call
    // (the token checked to be b64token characters, so ASCII) and a
    // zeroed result it owns.
    let (token, role, result) =
        unsafe { (CStr::from_ptr(token), CStr::from_ptr(role), &mut *result) };
    let role_name = role.to_string_lossy();
    let now = wall_seconds();
    // An error carries the identity when the token verified (for the log).
    let outcome = (|| -> Result<String, (Why, Option<String>)> {
        let snapshot = current_snapshot(now).map_err(|w| (w, None))?;
        let (issuer, scopes, delegated) = hba_line().ok_or_else(|| {
            (
                Why::Unavailable("The pg_hba line names no issuer.".into()),
                None,
            )
        })?;
        let user_claim = super::user_claim();
        let login = Login {
            issuer: &issuer,
            scopes: &scopes,
            user_claim: &user_claim,
        };
        let text = token.to_str().map_err(|_| {
            (
                Why::Token(Refusal::Token(jwt_rls_core::Error::BadCharacter)),
                None,
            )
        })?;
        let prepared = snapshot.prepare();
        let admitted = prepared
            .admit(text, &login, now)
            .map_err(|r| (Why::Token(r), None))?;
        if delegated {
            check_role(
                &admitted.verified,
                prepared.role_claim.as_deref(),
                &role_name,
            )
            .map_err(|w| (w, Some(admitted.authn_id.clone())))?;
        }
        Ok(admitted.authn_id)
    })();
    match outcome {
        Ok(authn_id) => {
            bind_for_session(token);
            counters::add(Counter::OauthLogins);
            result.authn_id = palloc_str(&authn_id);
            result.authorized = true;
        }
        Err((why, authn_id)) => {
            log_refusal(&why, &role_name);
            counters::add(Counter::RefusedOauth);
            if let Some(id) = authn_id {
                result.authn_id = palloc_str(&id);
            }
            result.authorized = false;
        }
    }
    true
}

/// A palloc'd copy of `s` (PostgreSQL frees `authn_id` with pfree); NUL
/// bytes cannot occur (the identity is a JSON string without NUL, or a
/// number).
fn palloc_str(s: &str) -> *mut c_char {
    let c = CString::new(s.replace('\0', "")).unwrap_or_default();
    // SAFETY: pstrdup copies a NUL-terminated string into the current
    // memory context.
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}
