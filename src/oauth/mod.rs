//! Logging in with a token: jwt_rls as PostgreSQL's OAuth validator
//! (PostgreSQL 18 and later: `oauth_validator_libraries = 'jwt_rls'`, a
//! pg_hba line `host ... oauth issuer=... scope=...`).
//!
//! A validator runs while the connection authenticates, before the backend
//! has chosen its database, so it cannot read tables. Hence three parts:
//! - `snapshot`: one database's keys, revocation lists and validation
//!   settings, copied into shared memory;
//! - `publisher`: the background worker that keeps that copy current (it
//!   looks every second, rewrites it when a key, revocation or setting
//!   changed, and stamps each look, so a copy a stopped worker left behind
//!   is refused);
//! - `validator`: the callbacks PostgreSQL calls, which check the token
//!   against the copy (`jwt_rls_core::login`) and, when it may log in, bind
//!   it as the session's token: as if the client had connected with
//!   `options=-c jwt_rls.token=...`, so every read verifies it again, in the
//!   database connected to, against its own tables.
//!
//! The key store that decides logins is server-wide, that of the database
//! named by `jwt_rls.oauth_database`: authentication precedes the choice
//! of database in PostgreSQL (pg_hba and roles are server-wide too), and
//! one store is one place to manage. A session in another database still
//! reads claims only if its own key store verifies the token.
//!
//! Uses `keys` and `lifecycle` (the rows to copy), `settings`, `shared`
//! (counters) and `pg`. Only `shmem` and `lib` use it.

// Before PostgreSQL 18 nothing calls a validator: the settings, the worker
// and the validator are not set up, and only the (empty) snapshot region
// is laid out.
#![cfg_attr(not(feature = "pg18"), allow(dead_code))]

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

pub mod publisher;
pub mod snapshot;
#[cfg(feature = "pg18")]
mod validator;

static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static USER_CLAIM: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"sub"));
static ROLE_GROUP: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Seconds after the worker's last look at which its copy is no longer
/// trusted: it looks every second, so this is a stopped or stuck worker.
pub const STALE_AFTER: i64 = 10;

/// The database whose key store decides logins, if one is named.
pub fn database() -> Option<String> {
    DATABASE
        .get()
        .map(|d| d.to_string_lossy().into_owned())
        .filter(|d| !d.is_empty())
}

/// The claim that names who logs in (`authn_id`).
pub fn user_claim() -> String {
    USER_CLAIM
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "sub".to_string())
}

/// The role whose members a token may log in as when pg_hba delegates the
/// role decision (`delegate_ident_mapping=1`); None: delegation refused.
pub fn role_group() -> Option<String> {
    ROLE_GROUP
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .filter(|c| !c.is_empty())
}

/// Defines the settings and registers the worker; called from _PG_init
/// while shared_preload_libraries load, before the layout is sized.
pub fn init() {
    GucRegistry::define_string_guc(
        c"jwt_rls.oauth_database",
        c"Database whose jwt_rls key store decides OAuth logins (empty: every OAuth login is refused).",
        c"Needs jwt_rls in shared_preload_libraries; a background worker copies the keys, revocation lists and settings of this database into shared memory.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"jwt_rls.oauth_user_claim",
        c"Claim of an OAuth login's token that names who logs in (the authenticated identity pg_ident maps).",
        c"",
        &USER_CLAIM,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"jwt_rls.oauth_role_group",
        c"Role whose members an OAuth token may log in as when pg_hba has delegate_ident_mapping=1 (empty: delegation refused).",
        c"",
        &ROLE_GROUP,
        GucContext::Sighup,
        GucFlags::default(),
    );
    snapshot::init();
    if database().is_some() {
        publisher::register();
    }
}
