//! The key store: verification keys (`store`: the `jwt_rls.keys` table, its
//! DDL, loading and admin functions), decryption keys for encrypted tokens
//! (`decryption`), signing keys with `sign()` and the JWKS of what jwt_rls
//! issues (`signing`), and keys that follow an OIDC provider (`jwks_worker`,
//! a background worker).
//!
//! Uses settings and `pg` (and, through `jwks_worker`, a region of shared
//! memory); never binding,
//! verification or lifecycle, which use it.

pub mod decryption;
pub mod jwks_worker;
pub mod signing;
pub mod store;
