//! jwt_rls: verify a JWT inside PostgreSQL and hand its claims to
//! row-level-security policies.
//!
//! This crate is the thin shell around `jwt_rls_core`. Its modules, each
//! one concept, with dependencies pointing down this list only:
//! - `compat`: PostgREST/Supabase names for the verified claims
//!   (`request.jwt.claims`, `auth.uid()`), opt-in;
//! - `claims`: the SQL surface for applications (bind, read claims);
//! - `diagnostics`: build and cache information;
//! - `counters`: binds, verifications, hits and refusals (`jwt_rls.stats()`);
//! - `shared_cache`: verifications shared by every backend;
//! - `jwks_worker`: keys that follow the provider (a background worker);
//! - `shmem`: the shared memory these live in (with shared_preload_libraries);
//! - `isolation`: `isolate()` and `audit()`, row level security helpers in SQL;
//! - `roles`: switching to the role a claim names (`jwt_rls.role_claim`);
//! - `state`: the bound token setting and what it verifies to;
//! - `keystore`: the key table, its DDL, loading and admin functions;
//! - `decryption`: decryption keys for encrypted tokens (JWE);
//! - `signing`: signing keys, `sign()` and the JWKS of what jwt_rls issues;
//! - `sessions`: login sessions with rotated refresh tokens and reuse
//!   detection;
//! - `revocation`: the revocation lists, their DDL, check and admin functions;
//! - `catalog`: reading the extension's tables as their owner, and noticing
//!   their changes;
//! - `settings`: the administrator's settings (validation policy);
//! - `errors`: core errors as Postgres errors;
//! - `clock`, `fmgr`: the statement clock and C-calling-convention glue.

#![warn(clippy::undocumented_unsafe_blocks)]

use pgrx::prelude::*;

mod catalog;
mod claims;
mod clock;
mod compat;
mod counters;
mod decryption;
mod diagnostics;
mod errors;
mod fmgr;
mod isolation;
mod jwks_worker;
mod keystore;
mod revocation;
mod roles;
mod sessions;
mod settings;
mod shared_cache;
mod shmem;
mod signing;
mod state;

pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Before anything is defined: which jwt_rls settings an unprivileged
    // role wrote before the library loaded (their configured values are lost).
    settings::note_untrusted_placeholders();
    // SAFETY: reads a flag Postgres sets while loading preloaded libraries.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        shmem::init();
        jwks_worker::init();
    }
    // The token setting comes last: defining it checks a value stored
    // before the library loaded, against the policy and keys defined here.
    settings::init();
    catalog::init();
    state::init();
    claims::init();
    compat::init();
    counters::init();
    settings::reserve_prefix(c"jwt_rls");
}

extension_sql!(
    r#"
-- Key administration is for whoever the superuser grants it to.
REVOKE EXECUTE ON FUNCTION jwt_rls.keys_changed() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.add_hmac_key(text, text, bytea, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.add_pem_key(text, text, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.import_jwks(jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.stats() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.reset_stats() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.add_decryption_key(text, text, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.add_decryption_secret(text, text, bytea, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.disable_key(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.enable_key(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.remove_key(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.table_changed() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.revoke_jti(text, timestamptz, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.revoke_subject(text, timestamptz, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.revoke_token(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.generate_signing_key(text, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.import_signing_key(text, text, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.import_signing_secret(text, text, bytea, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.sign(jsonb, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.random_token() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.start_session(text, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.rotate_refresh_token(text) FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE jwt_rls.refresh(text, text, text, uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.end_session(uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.end_sessions(text) FROM PUBLIC;
"#,
    name = "privileges",
    finalize
);

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
