//! jwt_rls: verify a JWT inside PostgreSQL and hand its claims to
//! row-level-security policies.
//!
//! This crate is the thin shell around `jwt_rls_core`. Its folders, each
//! one concept, with dependencies pointing down this list only (checked by
//! `scripts/check-imports.py` in the test command; ARCHITECTURE.md walks a
//! token through them):
//! - `adoption/`: PostgREST/Supabase names for the claims, `isolate()` and
//!   `audit()`;
//! - `diagnostics`: `stats()`, `cache_stats()`, `build_info()`;
//! - `oauth/`: logging in with a token (PostgreSQL 18's OAuth validator),
//!   checked against a copy of one database's key store in shared memory;
//! - `binding/`: the bound token setting, the claims' SQL surface, roles;
//! - `citus/`: binding on every node of a Citus cluster, and sharing the
//!   key, revocation and session tables with every node;
//! - `dpop/`: DPoP proofs (RFC 9449) for tokens bound to a key, and the
//!   shared table that refuses their replay;
//! - `lifecycle/`: revocation, login sessions and refresh tokens;
//! - `verification`: a token against the keys and policy, with the caches;
//! - `keys/`: the key store, decryption and signing keys, the JWKS worker;
//! - `shared/`: the shared verification cache and the counters;
//! - `settings`: the administrator's settings (validation policy);
//! - `pg/`: Postgres glue (errors, fmgr, clock, catalog, shared memory
//!   regions).
//!
//! `shmem` (the shared memory layout) sits above them all: it asks each
//! part for its size and hands it its region.

#![warn(clippy::undocumented_unsafe_blocks)]

use pgrx::prelude::*;

mod adoption;
mod binding;
mod citus;
mod diagnostics;
mod dpop;
mod keys;
mod lifecycle;
mod oauth;
mod pg;
mod settings;
mod shared;
mod shmem;
mod verification;

pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Before anything is defined: which jwt_rls settings an unprivileged
    // role wrote before the library loaded (their configured values are lost).
    settings::note_untrusted_placeholders();
    // SAFETY: reads a flag Postgres sets while loading preloaded libraries.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        // The parts define the settings their sizes depend on first.
        shared::cache::init();
        keys::jwks_worker::init();
        dpop::replay::init();
        // Logging in with a token exists from PostgreSQL 18 on.
        #[cfg(feature = "pg18")]
        oauth::init();
        shmem::init();
    }
    // The token setting comes last: defining it checks a value stored
    // before the library loaded, against the policy and keys defined here.
    settings::init();
    pg::catalog::init();
    dpop::init();
    binding::token::init();
    binding::claims::init();
    adoption::compat::init();
    shared::counters::init();
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
REVOKE EXECUTE ON FUNCTION jwt_rls.start_session(text, jsonb, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.session_cnf(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.forget_successors() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.verify_dpop_proof(text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION jwt_rls.rotate_refresh_token(text, text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE jwt_rls.refresh_with_proof(text, text, text, text, text, text, uuid) FROM PUBLIC;
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
